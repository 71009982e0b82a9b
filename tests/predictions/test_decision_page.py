"""The end users' decision page: a form generated from the champion's signature, a decision explained."""

import re

import pytest
from pytest_django.asserts import assertContains, assertInHTML, assertNotContains, assertTemplateUsed

from apps.features.transforms import humanise
from apps.predictions.models import PredictionRecord
from tests.conftest import release, train_version

URL = "/decide/loan-risk/"
APPROVED_FORM = {"income": "8900", "age": "41", "city": "north"}
DECLINED_FORM = {"income": "1200", "age": "41", "city": "east"}


def field_errors(html: str) -> dict[str, list[str]]:
    """Each field's error list as rendered: {field: [messages]}."""
    return {
        field: re.findall(r"<li>(.*?)</li>", items)
        for field, items in re.findall(r'<ul class="errorlist" id="id_(\w+)_error">(.*?)</ul>', html)
    }


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
    assertInHTML(
        '<input type="number" name="income" min="1028.72" step="any" required '
        'aria-describedby="id_income_helptext" id="id_income">',
        html,
    )
    assertInHTML(
        '<input type="number" name="age" min="18" step="1" required aria-describedby="id_age_helptext" id="id_age">',
        html,
    )
    assertInHTML('<div class="help">Seen in training: 1028.72 to 8990.34</div>', html)
    assertInHTML('<div class="help">Seen in training: 18 to 80</div>', html)
    assertInHTML('<label for="id_city">City</label>', html)
    assert "The decision is made by model version 1" in html
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
    assertInHTML(f'<p class="decision {css}" data-testid="decision">{decision}</p>', html)
    assertNotContains(response, "Declined" if decision == "Approved" else "Approved")

    [record] = PredictionRecord.objects.all()
    row = {"income": float(form["income"]), "age": int(form["age"]), "city": form["city"]}
    assert (record.channel, record.model_version_id, record.row, record.inputs) == ("page", champion.pk, 0, row)
    assert record.output["label"] == ("yes" if decision == "Approved" else "no")
    percent = round(record.output["probabilities"]["yes"] * 100)
    assert (percent > 50) == (decision == "Approved")
    assertInHTML(f'<strong data-testid="probability">{percent}%</strong>', html)
    assert f"reference {record.request_id}" in html

    # The page gives the same reasons, in the same order, as the API does for the same row.
    explained = api.call(
        "post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [row], "explain": True}
    ).json()["explanations"][0]
    assert explained["reasons"]
    assert reasons_shown(html) == [
        (
            "up" if reason["contribution"] > 0 else "down",
            humanise(reason["feature"]),
            str(reason["value"]),
            "in your favour" if reason["contribution"] > 0 else "against you",
        )
        for reason in explained["reasons"]
    ]


def test_the_income_reason_points_the_right_way(client, champion):
    approved = reasons_shown(client.post(URL, APPROVED_FORM).content.decode())
    declined = reasons_shown(client.post(URL, DECLINED_FORM).content.decode())
    assert ("up", "Income", "8900.0", "in your favour") in approved
    assert ("down", "Income", "1200.0", "against you") in declined


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
