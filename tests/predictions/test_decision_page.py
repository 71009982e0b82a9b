"""The end users' decision page: a form generated from the champion's signature, a decision explained."""

import re

import pytest
from pytest_django.asserts import assertContains, assertInHTML, assertNotContains, assertTemplateUsed

from apps.features.services import feature_set_create
from apps.features.transforms import humanise
from apps.predictions.forms import decision_form_class
from apps.predictions.models import PredictionRecord
from apps.registry.models import TrainingJob
from apps.registry.services import training_job_create, training_job_run
from tests.conftest import SMALL_PARAMS, release, train_version

URL = "/decide/loan-risk/"
APPROVED_FORM = {"income": "8900", "age": "41", "city": "north"}
DECLINED_FORM = {"income": "1200", "age": "41", "city": "east"}


def field_errors(html: str) -> dict[str, list[str]]:
    """Each field's error list as rendered: {field: [messages]}."""
    return {
        field: re.findall(r"<li>(.*?)</li>", items)
        for field, items in re.findall(r'<ul class="errorlist" id="id_(\w+)_error">(.*?)</ul>', html)
    }


def summary_links(html: str) -> list[tuple[str, str]]:
    """The error summary's entries: (the field id linked to, the text)."""
    summary = re.search(r'<div class="error-summary" id="error-summary" tabindex="-1" autofocus .*?</div>', html, re.S)
    return re.findall(r'<li><a href="#(\w+)">(.*?)</a></li>', summary.group(0)) if summary else []


def reasons_shown(html: str) -> list[tuple[str, str, str, str]]:
    return re.findall(
        r'<li class="reason (up|down)"><strong>(.*?)</strong> \((.*?)\) counted (in your favour|against you)\.</li>',
        html,
    )


def test_the_form_is_generated_from_the_signature(client, champion):
    inputs = {item["name"]: item for item in champion.signature["inputs"]}
    assert (inputs["income"]["minimum"], inputs["income"]["maximum"]) == (1028.72, 8990.34)
    assert (inputs["age"]["minimum"], inputs["age"]["maximum"]) == (18, 80)

    response = client.get(URL)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assertTemplateUsed(response, "predictions/decision_form.html")
    html = response.content.decode()
    assertInHTML(
        """<select name="city" required id="id_city">
             <option value="" selected>— choose —</option>
             <option value="east">east</option>
             <option value="north">north</option>
             <option value="south">south</option>
           </select>""",
        html,
    )
    # The training range is a hint, not a limit: no min/max, which browsers would call "invalid".
    assertInHTML(
        '<input type="number" name="income" step="any" required aria-describedby="id_income_helptext" id="id_income">',
        html,
    )
    assertInHTML(
        '<input type="number" name="age" step="1" required aria-describedby="id_age_helptext" id="id_age">', html
    )
    assertInHTML(
        '<p class="help" id="id_income_helptext">The model learned from values between 1028.72 and 8990.34.</p>', html
    )
    assertInHTML('<p class="help" id="id_age_helptext">The model learned from values between 18 and 80.</p>', html)
    assertInHTML('<label for="id_income">Income</label>', html)
    assertInHTML('<label for="id_age">Age</label>', html)
    assertInHTML('<label for="id_city">City</label>', html)
    assert "The decision is made by model version 1" in html
    assert "<title>Apply: loan-risk · Faro</title>" in html
    assert 'id="error-summary"' not in html
    assert "aria-invalid" not in html
    assert re.findall(r'<(?:input type="number"|select) name="(\w+)"', html) == [
        "income",
        "age",
        "city",
    ]
    assert PredictionRecord.objects.count() == 0


def test_the_form_follows_the_champion(client, champion, registered_model, dataset_version):
    second = train_version(registered_model, dataset_version, max_depth=2)
    release(second)
    response = client.get(URL)
    assertContains(response, "The decision is made by model version 2")


@pytest.mark.parametrize(
    ("form", "decision", "css"),
    [(APPROVED_FORM, "Approved", "approved"), (DECLINED_FORM, "Declined", "declined")],
)
def test_a_valid_application_gets_a_decision_explained(client, api, tokens, champion, form, decision, css):
    response = client.post(URL, form)

    assert response.status_code == 200, response.content
    assertTemplateUsed(response, "predictions/decision_result.html")
    html = response.content.decode()
    assertInHTML(f'<p class="decision {css}" id="decision-outcome" data-testid="decision">{decision}</p>', html)
    assert f"<title>{decision}: your decision · Faro</title>" in html
    assert '<section class="card" role="status" aria-labelledby="decision-outcome">' in html
    assertNotContains(response, "Declined" if decision == "Approved" else "Approved")

    [record] = PredictionRecord.objects.all()
    row = {"income": float(form["income"]), "age": int(form["age"]), "city": form["city"]}
    assert (record.channel, record.model_version_id, record.row, record.inputs) == ("page", champion.pk, 0, row)
    assert record.output["label"] == ("yes" if decision == "Approved" else "no")
    percent = round(record.output["probabilities"]["yes"] * 100)
    assert (percent > 50) == (decision == "Approved")
    # The probability is text; the bar is decoration, hidden from screen readers.
    assertInHTML(f'<p>Estimated chance of approval: <strong data-testid="probability">{percent}%</strong></p>', html)
    assertInHTML(f'<div class="bar" aria-hidden="true"><span class="w-{percent}"></span></div>', html)
    assertInHTML(f'<span data-testid="reference">{record.request_id}</span>', html)

    # The page gives the same reasons, in the same order, as the API does for the same row.
    explained = api.call(
        "post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [row], "explain": True}
    ).json()["explanations"][0]
    assert explained["reasons"]
    as_typed = {"income": form["income"], "age": form["age"], "city": form["city"]}  # 8900.0 reads "8900"
    assert reasons_shown(html) == [
        (
            "up" if reason["contribution"] > 0 else "down",
            humanise(reason["feature"]),
            as_typed[reason["feature"]],
            "in your favour" if reason["contribution"] > 0 else "against you",
        )
        for reason in explained["reasons"]
    ]

    # ... and offers a human review of this very decision.
    review_url = f"/decide/loan-risk/review/{record.request_id}/"
    form_html = re.search(
        r'<form method="post" action="(.*?)" novalidate data-testid="review-form">(.*?)</form>', html, re.S
    )
    assert form_html.group(1) == review_url
    assert 'name="csrfmiddlewaretoken"' in form_html.group(2)
    assertInHTML('<h2 id="review-heading" class="card-title">Ask a person to review this decision</h2>', html)
    assertInHTML('<label for="id_reason">What should the reviewer know? (optional)</label>', html)
    assertInHTML('<label for="id_contact">Email address or phone number (optional)</label>', html)
    assertInHTML(
        '<textarea name="reason" cols="40" rows="4" maxlength="2000" aria-describedby="id_reason_helptext" '
        'id="id_reason"></textarea>',
        html,
    )
    assertInHTML(
        '<input type="text" name="contact" maxlength="200" aria-describedby="id_contact_helptext" id="id_contact">',
        html,
    )


def test_the_income_reason_points_the_right_way(client, champion):
    approved = reasons_shown(client.post(URL, APPROVED_FORM).content.decode())
    declined = reasons_shown(client.post(URL, DECLINED_FORM).content.decode())
    assert ("up", "Income", "8900", "in your favour") in approved
    assert ("down", "Income", "1200", "against you") in declined


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        pytest.param({"age": "41", "city": "north"}, {"income": ["This field is required."]}, id="missing-income"),
        pytest.param({}, {name: ["This field is required."] for name in ("income", "age", "city")}, id="empty"),
        pytest.param({**APPROVED_FORM, "income": "lots"}, {"income": ["Enter a number."]}, id="non-numeric"),
        pytest.param({**APPROVED_FORM, "income": "1e999"}, {"income": ["Enter a number."]}, id="infinite-income"),
        pytest.param({**APPROVED_FORM, "income": "NaN"}, {"income": ["Enter a number."]}, id="nan-income"),
        pytest.param({**APPROVED_FORM, "age": "1e999"}, {"age": ["Enter a whole number."]}, id="infinite-age"),
        pytest.param({**APPROVED_FORM, "age": "41.5"}, {"age": ["Enter a whole number."]}, id="fractional-age"),
        pytest.param(
            {**APPROVED_FORM, "city": "west"},
            {"city": ["Select a valid choice. west is not one of the available choices."]},
            id="unknown-category",
        ),
        pytest.param(
            {"income": "x", "age": "y", "city": "z"},
            {
                "income": ["Enter a number."],
                "age": ["Enter a whole number."],
                "city": ["Select a valid choice. z is not one of the available choices."],
            },
            id="everything-wrong",
        ),
    ],
)
def test_an_invalid_application_is_shown_again_with_its_errors(client, champion, form, errors):
    response = client.post(URL, form)

    assert response.status_code == 400
    assertTemplateUsed(response, "predictions/decision_form.html")
    html = response.content.decode()
    assert field_errors(html) == errors
    assert "<title>Error: Apply: loan-risk · Faro</title>" in html
    # The summary on top lists every problem, in the form's order, each linked to its field ...
    order = ["income", "age", "city"]
    assert summary_links(html) == [
        (f"id_{name}", f"{humanise(name)}: {message}")
        for name in sorted(errors, key=order.index)
        for message in errors[name]
    ]
    count = len(errors)
    title = "There is a problem with your answers" if count == 1 else f"There are problems with {count} answers"
    assertInHTML(f'<h2 id="error-summary-title">{title}</h2>', html)
    # ... and each field says it is invalid, described by its help text and its error.
    for name in order:
        tag = re.search(rf"<(?:input|select) [^>]*name=\"{name}\"[^>]*>", html).group(0)
        if name in errors:
            assert 'aria-invalid="true"' in tag, tag
            helptext = f"id_{name}_helptext " if name != "city" else ""
            assert f'aria-describedby="{helptext}id_{name}_error"' in tag, tag
        else:
            assert "aria-invalid" not in tag, tag
    assert 'data-testid="decision"' not in html
    for name, value in form.items():
        if name != "city":
            assert f'name="{name}" value="{value}"' in html, name
    assert PredictionRecord.objects.count() == 0


def test_an_unknown_model_is_a_404_page(client, champion):
    response = client.get("/decide/nope/")
    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assertTemplateUsed(response, "error.html")
    assertInHTML("<h1>404</h1>", response.content.decode())
    assertNotContains(response, "Traceback", status_code=404)
    assert client.post("/decide/nope/", APPROVED_FORM).status_code == 404
    assert PredictionRecord.objects.count() == 0


def test_a_model_without_a_champion_is_a_404_page(client, registered_model, dataset_version):
    train_version(registered_model, dataset_version)
    response = client.get(URL)
    assert response.status_code == 404
    assertTemplateUsed(response, "error.html")


def test_the_home_page_lists_the_champion(client, champion):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assertInHTML("<h2>loan-risk</h2>", html)
    assertInHTML(f'<a class="button" href="{URL}">Start</a>', html)
    assertNotContains(response, "No model is being served yet.")


def test_the_home_page_without_a_champion(client, registered_model, dataset_version):
    train_version(registered_model, dataset_version)
    response = client.get("/")
    assert response.status_code == 200
    assertContains(response, "No model is being served yet.")
    assertNotContains(response, URL)


# -- help texts from a feature set, and the other kinds of input --------------------------------------------

DESCRIBED_FEATURES = [
    {"name": "income_std", "transform": "standardise", "source": "income", "description": "Monthly income, in euros"},
    {"name": "age", "transform": "passthrough", "source": "age", "description": "Age"},  # repeats the label
    {"name": "city", "transform": "one_hot", "source": "city", "description": "Where you live."},
    {"name": "income_per_age", "transform": "ratio", "sources": ["income", "age"], "description": "Income per year"},
]


def test_a_feature_sets_descriptions_are_the_help_texts(client, dataset, dataset_version, registered_model):
    feature_set = feature_set_create(name="loan-features", dataset=dataset, definition=DESCRIBED_FEATURES)
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params=SMALL_PARAMS,
        feature_set_version=feature_set.versions.get(),
    )
    release(training_job_run(job_id=job.pk) or TrainingJob.objects.get(pk=job.pk).model_version)

    html = client.get(URL).content.decode()

    assertInHTML(
        '<p class="help" id="id_income_helptext">Monthly income, in euros. '
        "The model learned from values between 1028.72 and 8990.34.</p>",
        html,
    )
    assertInHTML('<p class="help" id="id_age_helptext">The model learned from values between 18 and 80.</p>', html)
    assertInHTML('<p class="help" id="id_city_helptext">Where you live.</p>', html)
    assertInHTML(
        '<select name="city" required aria-describedby="id_city_helptext" id="id_city">'
        '<option value="" selected>— choose —</option><option value="east">east</option>'
        '<option value="north">north</option><option value="south">south</option></select>',
        html,
    )
    # The reasons speak of the features by their descriptions.
    result = client.post(URL, APPROVED_FORM).content.decode()
    labels = {label for _, label, _, _ in reasons_shown(result)}
    assert labels <= {"Monthly income, in euros", "Age", "Where you live.", "Income per year"}
    assert "Monthly income, in euros" in labels


SIGNATURE = [
    {"name": "member", "type": "boolean", "nullable": False},
    {"name": "joined_at", "type": "datetime", "nullable": True},
    {"name": "region", "type": "category", "categories": ["a", "b"], "nullable": True},
    {"name": "score", "type": "number", "minimum": -2.5, "maximum": 7.0, "nullable": True},
    {"name": "children", "type": "integer", "minimum": 0, "maximum": 4, "nullable": False},
]


def test_every_kind_of_input_becomes_the_value_the_model_takes():
    form_class = decision_form_class(SIGNATURE, {"member": "Member of the club"})
    form = form_class(
        {"member": "false", "joined_at": "2024-05-31T12:00", "region": "b", "score": "-9.25", "children": "7"}
    )
    assert form.is_valid(), form.errors
    # Out of the training range (score below -2.5, children above 4) is accepted, as the API accepts it.
    assert form.cleaned_data == {
        "member": False,
        "joined_at": "2024-05-31T12:00",
        "region": "b",
        "score": -9.25,
        "children": 7,
    }
    # Inputs with missing values in training may be left empty: they are sent as missing (null), not "".
    form = form_class({"member": "true", "joined_at": "", "region": "", "score": "", "children": "0"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"member": True, "joined_at": None, "region": None, "score": None, "children": 0}

    form = form_class({"member": "", "joined_at": "31/05/2024", "region": "c", "score": "x", "children": ""})
    assert not form.is_valid()
    assert form.errors == {
        "member": ["This field is required."],
        "joined_at": ["Enter a date and time, e.g. 2024-05-31T12:00."],
        "region": ["Select a valid choice. c is not one of the available choices."],
        "score": ["Enter a number."],
        "children": ["This field is required."],
    }
    assert [(name, field.label, field.required, field.help_text) for name, field in form.fields.items()] == [
        ("member", "Member", True, "Member of the club."),
        ("joined_at", "Joined at (optional)", False, ""),
        ("region", "Region (optional)", False, ""),
        ("score", "Score (optional)", False, "The model learned from values between -2.5 and 7."),
        ("children", "Children", True, "The model learned from values between 0 and 4."),
    ]
    assert form.fields["member"].choices == [("", "— choose —"), ("true", "Yes"), ("false", "No")]
    assert form.fields["region"].choices == [("", "— not known —"), ("a", "a"), ("b", "b")]
    assertInHTML(
        '<input type="datetime-local" name="joined_at" value="31/05/2024" aria-invalid="true" '
        'aria-describedby="id_joined_at_error" '
        'id="id_joined_at">',
        str(form["joined_at"]),
    )
