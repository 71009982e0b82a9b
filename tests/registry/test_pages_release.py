"""The release pages: a version's evidence and decisions, aliases over time, comparisons, the model card,
and training jobs followed live."""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.core.charts import fmt_number
from apps.data.services import dataset_create, dataset_update, dataset_version_create_from_upload
from apps.features.services import feature_set_create
from apps.governance.models import AuditEvent
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, TrainingJob
from apps.registry.services import (
    model_version_approve,
    model_version_promote,
    registered_model_create,
    training_job_cancel,
    training_job_create,
    training_job_run,
)
from apps.registry.training import PARAM_DOCS
from tests.conftest import SMALL_PARAMS

FEATURES_WITHOUT_AGE = [
    {"name": "income", "transform": "standardise", "source": "income", "description": "Income"},
    {"name": "city", "transform": "one_hot", "source": "city"},
]


def _page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _messages(page: str) -> list[str]:
    return re.findall(r'<ul class="messages"><li class="[^"]*">(.*?)</li>', page)


def _version_url(version: ModelVersion, view: str = "version-detail") -> str:
    return reverse(f"registry:{view}", args=[version.registered_model.name, version.version])


def _trained(registered_model, dataset_version, maker, feature_set_version=None, **params) -> ModelVersion:
    """A version trained through the real services at `maker`'s request, as the worker would."""
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params={**SMALL_PARAMS, **params},
        feature_set_version=feature_set_version,
        actor=maker,
    )
    version = training_job_run(job_id=job.pk) or TrainingJob.objects.get(pk=job.pk).model_version
    assert version is not None, TrainingJob.objects.get(pk=job.pk).error
    return ModelVersion.objects.get(pk=version.pk)


@pytest.fixture
def people(users):
    """The data scientist who trains (a maker), a product manager who approves (a checker), both allowed to
    approve, and a staff viewer who may not."""
    permission = Permission.objects.get(codename="approve_modelversion", content_type__app_label="registry")
    users["ds"].user_permissions.add(permission)
    users["pm"].user_permissions.add(permission)
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    User = get_user_model()
    return {
        "maker": User.objects.get(pk=users["ds"].pk),
        "checker": User.objects.get(pk=users["pm"].pk),
        "viewer": viewer,
    }


@pytest.fixture
def version(registered_model, dataset_version, people) -> ModelVersion:
    return _trained(registered_model, dataset_version, people["maker"])


# -- the version page ------------------------------------------------------------------------------


def test_the_version_page_shows_status_gates_metrics_signature_and_lineage(client, people, version):
    client.force_login(people["checker"])
    page = _page(client.get(_version_url(version)))
    assert (
        '<span class="status-badge pending_manual_approval" data-testid="version-status">Pending manual approval</span>'
        in page
    )
    assert "<dt>Maker</dt><dd>ds</dd>" in page
    assert f"<dt>auc</dt><dd>{fmt_number(version.metrics['auc'])}</dd>" in page
    gates = [gate["name"] for gate in version.gate_report["gates"]]
    assert gates == ["quality", "champion", "fairness", "data_checks", "onnx_parity"]
    shown = re.findall(r'<tr><td><code>(\w+)</code></td><td><span class="result-badge (passed|failed)">', page)
    assert shown == [(gate["name"], "passed" if gate["passed"] else "failed") for gate in version.gate_report["gates"]]
    inputs = re.findall(r'<td class="num">(\d+)</td><td><code>(\w+)</code></td><td>(\w+)</td><td>([^<]*)</td>', page)
    assert inputs == [
        (
            "1",
            "income",
            "number",
            f"{fmt_number(version.signature['inputs'][0]['minimum'])} to "
            f"{fmt_number(version.signature['inputs'][0]['maximum'])}",
        ),
        (
            "2",
            "age",
            "integer",
            f"{version.signature['inputs'][1]['minimum']:g} to {version.signature['inputs'][1]['maximum']:g}",
        ),
        ("3", "city", "category", "east, north, south"),
    ]
    job = version.training_job
    assert f'<a href="/training/{job.pk}/">#{job.pk}</a>' in page
    assert '<a href="/api/v1/models/loan-risk/versions/1/onnx" download>' in page
    assert f"<code>{version.onnx_sha256}</code>" in page
    assert '<a class="button secondary" href="/models/loan-risk/versions/1/card/">Model card</a>' in page
    assert 'action="/models/loan-risk/versions/1/approve/"' in page
    assert 'action="/models/loan-risk/versions/1/reject/"' in page
    assert page.count('action="/models/loan-risk/versions/1/promote/"') == 3
    assert '<section class="evaluation"' in page
    assert f"{fmt_number(version.evaluation['latency']['p95_us'])} µs" in page

    client.force_login(people["viewer"])
    page = _page(client.get(_version_url(version)))
    assert "/approve/" not in page and "/reject/" not in page
    assert "Pending approval by someone allowed to approve model versions." in page


def test_the_maker_may_not_approve_their_own_version(client, people, registered_model, version):
    registered_model.owner = people["maker"]  # past the owner rule, maker-checker still refuses
    registered_model.save()
    client.force_login(people["maker"])
    page = _page(client.post(_version_url(version, "version-approve"), {"note": ""}, follow=True))
    assert _messages(page) == [
        "loan-risk v1 was trained at your request; someone else must approve it (maker-checker)."
    ]
    version.refresh_from_db()
    assert (version.status, version.decided_by) == ("pending_manual_approval", None)
    assert not AuditEvent.objects.filter(action="model_version.approved").exists()


def test_a_staff_member_without_the_permission_may_not_decide(client, people, version):
    client.force_login(people["viewer"])
    for view in ("version-approve", "version-reject"):
        response = client.post(_version_url(version, view), {"note": "looks fine"})
        assert response.status_code == 403  # the console's permission, as in the console and the API
    version.refresh_from_db()
    assert (version.status, version.decided_by, version.decision_note) == ("pending_manual_approval", None, "")
    assert not AuditEvent.objects.filter(action__in=["model_version.approved", "model_version.rejected"]).exists()


def test_another_permitted_person_approves(client, people, version):
    client.force_login(people["checker"])
    response = client.post(_version_url(version, "version-approve"), {"note": "Checked the evidence."})
    assert response.status_code == 302
    assert response["Location"] == _version_url(version)
    page = _page(client.get(response["Location"]))
    assert _messages(page) == ["loan-risk v1 approved."]
    assert '<span class="status-badge approved" data-testid="version-status">Approved</span>' in page
    assert "<strong>Note:</strong> Checked the evidence." in page
    version.refresh_from_db()
    assert (version.status, version.decided_by, version.decision_note) == (
        "approved",
        people["checker"],
        "Checked the evidence.",
    )


def test_rejecting_needs_a_note(client, people, version):
    client.force_login(people["checker"])
    page = _page(client.post(_version_url(version, "version-reject"), {"note": "  "}, follow=True))
    assert _messages(page) == ["Say why the version is rejected."]
    version.refresh_from_db()
    assert version.status == "pending_manual_approval"

    page = _page(client.post(_version_url(version, "version-reject"), {"note": "Trained on stale data."}, follow=True))
    assert _messages(page) == ["loan-risk v1 rejected."]
    assert '<span class="status-badge rejected" data-testid="version-status">Rejected</span>' in page
    assert "/promote/" not in page
    version.refresh_from_db()
    assert (version.status, version.decision_note) == ("rejected", "Trained on stale data.")


def test_promote_to_aliases_and_roll_back_from_the_pages(client, people, registered_model, dataset_version):
    v1 = _trained(registered_model, dataset_version, people["maker"])
    v2 = _trained(registered_model, dataset_version, people["maker"])  # the same model: its gates pass
    client.force_login(people["checker"])

    page = _page(client.post(_version_url(v1, "version-promote"), {"alias": "champion"}, follow=True))
    assert _messages(page) == ["loan-risk v1 is pending manual approval; only an approved version can be champion."]
    assert not ModelAlias.objects.exists()

    for version in (v1, v2):
        model_version_approve(version=version, actor=people["checker"])
    for version, alias in ((v1, "champion"), (v2, "challenger"), (v2, "champion"), (v1, "shadow-a")):
        page = _page(client.post(_version_url(version, "version-promote"), {"alias": alias}, follow=True))
        assert _messages(page) == [f"loan-risk v{version.version} is now {alias}."]
    page = _page(client.post(_version_url(v1, "version-promote"), {"alias": "Not An Alias"}, follow=True))
    assert _messages(page)[0].startswith("Alias: An alias is 1-32 lowercase letters")
    aliases = dict(ModelAlias.objects.values_list("name", "version__version"))
    assert aliases == {"champion": 2, "challenger": 2, "shadow-a": 1}

    page = _page(client.get(reverse("registry:model-detail", args=["loan-risk"])))
    assert 'action="/models/loan-risk/aliases/champion/rollback/"' in page
    page = _page(client.post(reverse("registry:alias-rollback", args=["loan-risk", "champion"]), follow=True))
    assert _messages(page) == ["loan-risk: champion is now v1."]
    assert ModelAlias.objects.get(name="champion").version == v1
    page = _page(client.post(reverse("registry:alias-rollback", args=["loan-risk", "champion"]), follow=True))
    assert _messages(page) == ["loan-risk@champion has no previous version to roll back to."]
    assert ModelAlias.objects.get(name="champion").version == v1
    assert list(AliasChange.objects.filter(alias="champion").order_by("id").values_list("kind", flat=True)) == [
        "promote",
        "promote",
        "rollback",
    ]


# -- the model page ----------------------------------------------------------------------------------


def test_the_model_page_lists_versions_settings_and_history(client, people, registered_model, dataset_version):
    v1 = _trained(registered_model, dataset_version, people["maker"])
    model_version_approve(version=v1, actor=people["checker"])
    model_version_promote(version=v1, actor=people["checker"])
    v2 = _trained(registered_model, dataset_version, people["maker"], max_depth=2)
    client.force_login(people["viewer"])
    page = _page(client.get(reverse("registry:model-detail", args=["loan-risk"])))
    assert "<div><dt>Owner</dt><dd>nobody</dd></div>" in page
    assert "<div><dt>Task</dt><dd>Classification</dd></div>" in page
    assert "<div><dt>Largest drop against the champion</dt><dd>1 %</dd></div>" in page
    assert (
        '<tr><td>Disparate impact ratio, at least</td><td class="num">0.8</td><td class="help">default</td></tr>'
        in page
    )
    assert f'href="/admin/registry/registeredmodel/{registered_model.pk}/change/"' in page
    rows = re.findall(
        r'<a href="/models/loan-risk/versions/(\d+)/">v\d+</a></td>\s*'
        r'<td><span class="status-badge \w+">([^<]+)</span>',
        page,
    )
    assert rows == [("2", "Pending manual approval"), ("1", "Approved")]
    assert f'<td class="num">auc {fmt_number(v1.metrics["auc"])}</td>' in page
    assert f'<td class="num">auc {fmt_number(v2.metrics["auc"])}</td>' in page
    assert '<span class="alias">champion</span>' in page
    assert page.count('<input type="checkbox" name="versions"') == 2
    assert '<form method="get" action="/models/loan-risk/compare/"' in page
    assert "<td>Promote</td>\n      <td>—</td><td>v1</td><td>pm</td>" in page


def test_which_version_an_alias_pointed_at_a_given_time(client, people, registered_model, dataset_version, settings):
    settings.TIME_ZONE = "Europe/Berlin"  # a datetime-local is read in the server's time zone
    v1 = _trained(registered_model, dataset_version, people["maker"])
    v2 = _trained(registered_model, dataset_version, people["maker"])  # the same model: its gates pass
    for version in (v1, v2):
        model_version_approve(version=version, actor=people["checker"])
        model_version_promote(version=version, actor=people["checker"])
    first, second = AliasChange.objects.order_by("id")
    AliasChange.objects.filter(pk=first.pk).update(at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    AliasChange.objects.filter(pk=second.pk).update(at=datetime(2026, 1, 2, 10, 0, tzinfo=UTC))
    first.refresh_from_db()
    second.refresh_from_db()
    client.force_login(people["viewer"])
    url = reverse("registry:model-detail", args=["loan-risk"])

    def answer(local: str) -> str:
        page = _page(client.get(url, {"alias_at": "champion", "at": local}))
        return re.search(r'<p class="alias-answer" role="status">(.*?)</p>', page, re.S).group(1)

    # 10:00 UTC is 11:00 in Berlin
    assert "<strong>no version yet</strong>" in answer("2026-01-01T10:59")
    assert ">v1</strong></a>" in answer("2026-01-01T11:00")
    assert "since 2026-01-01 11:00:00 CET: promote by pm" in answer("2026-01-02T10:59:59")
    assert ">v2</strong></a>" in answer("2026-01-02T11:00")
    assert "<strong>no version yet</strong>" in answer(second.at.astimezone(UTC).strftime("2026-01-01T00:00"))
    page = _page(client.get(url, {"alias_at": "challenger", "at": "2026-06-01T00:00"}))
    assert "<strong>challenger</strong> was\n    <strong>no version yet</strong>" in page
    response = client.get(url, {"alias_at": "champion", "at": "yesterday"})
    assert response.status_code == 400
    assert "Enter a valid date/time." in response.content.decode()


# -- comparing versions ------------------------------------------------------------------------------


def test_compare_two_versions(client, people, registered_model, dataset_version):
    v1 = _trained(registered_model, dataset_version, people["maker"])
    v2 = _trained(registered_model, dataset_version, people["maker"], max_depth=2)
    client.force_login(people["viewer"])
    url = reverse("registry:compare", args=["loan-risk"])
    page = _page(client.get(url, {"versions": ["1", "2"]}))
    main = re.compile(r"<main>.*</main>", re.S)
    assert main.search(page).group(0) == main.search(_page(client.get(url, {"versions": "1,2"}))).group(0)
    assert (
        '<a href="/models/loan-risk/versions/1/">v1</a></th>'
        '<th scope="col" class="num"><a href="/models/loan-risk/versions/2/">v2</a>' in page
    )
    best = max(v1.metrics["auc"], v2.metrics["auc"])
    cells = re.search(r"AUC \(area under the ROC curve\) <code>auc</code></th>(.*?)</tr>", page).group(1)
    expected = [
        f'<td class="num best"><strong>★ {fmt_number(value)}</strong></td>'
        if value == best
        else f'<td class="num">{fmt_number(value)}</td>'
        for value in (v1.metrics["auc"], v2.metrics["auc"])
    ]
    assert cells == "".join(expected)
    roc = re.search(r'<svg class="chart line compare-roc".*?</svg>', page, re.S).group(0)
    assert roc.count("<polyline") == 3  # v1, v2 and chance
    assert ">v1</text>" in roc and ">v2</text>" in roc and ">Chance</text>" in roc
    differences = re.search(r'<table class="card compare lineage-differences">.*?</table>', page, re.S).group(0)
    assert (
        '<tr><th scope="row"><code>params.max_depth</code></th><td class="wrap">3</td><td class="wrap">2</td></tr>'
        in differences
    )
    assert "<code>dataset</code>" not in differences


def test_compare_needs_two_known_versions(client, people, version):
    client.force_login(people["viewer"])
    url = reverse("registry:compare", args=["loan-risk"])
    for query in ({"versions": "1"}, {}, {"versions": "1,x"}, {"versions": ["1", "1"]}):
        response = client.get(url, query)
        assert response.status_code == 400
        assert "Choose at least two versions to compare, e.g. ?versions=1&amp;versions=2." in response.content.decode()
    assert client.get(url, {"versions": "1,9"}).status_code == 404
    assert client.get(reverse("registry:compare", args=["no-such-model"]), {"versions": "1,2"}).status_code == 404


# -- the model card --------------------------------------------------------------------------------


def test_the_model_card_says_in_plain_words_what_the_model_does(
    client, people, dataset, dataset_version, registered_model
):
    dataset_update(
        dataset=dataset,
        column_tags={"age": ["personal", "protected"], "city": ["personal"]},
        purpose="Decide on loan applications.",
        legal_basis="b",
        retention_days=365,
    )
    feature_set = feature_set_create(name="loan-features", dataset=dataset, definition=FEATURES_WITHOUT_AGE)
    version = _trained(
        registered_model, dataset_version, people["maker"], feature_set_version=feature_set.versions.get()
    )
    model_version_approve(version=version, actor=people["checker"], note="Fine.")
    version.refresh_from_db()
    client.force_login(people["viewer"])
    page = _page(client.get(_version_url(version, "version-card")))

    rows, auc, accuracy = version.evaluation["rows"], version.metrics["auc"], version.metrics["accuracy"]
    assert (
        f"On {rows} cases it had not seen, it ranked a random case whose outcome was “yes” above a random case "
        f"whose outcome was “no” {round(auc * 100)} % of the time (AUC {auc:.2f})."
    ) in page
    assert (
        f"On the same cases, it predicted the actual repaid correctly {round(accuracy * 100)} % of the time "
        f"({round(accuracy * rows)} of {rows}) (accuracy {accuracy:.2f})."
    ) in page
    assert "For each case it predicts <strong>repaid</strong>: “yes” or “no”. The favourable outcome is “yes”." in page
    assert "<strong>Purpose:</strong> Decide on loan applications." in page
    assert "(b) contract" in page
    assert f"version 1: {dataset_version.row_count} rows." in page
    importance = version.evaluation["importance"]
    total = sum(row["mean_abs_shap"] for row in importance)
    top = importance[0]
    assert (
        f"<li><strong>{top['feature']}</strong>: {round(top['mean_abs_shap'] / total * 100)} % of the total</li>"
        in page
    )
    assert "It does not use these personal or protected columns of the data: age." in page
    assert "It does use these personal or protected columns: city." in page
    assert (
        "<strong>city</strong>: trained only on the values east, north, south; any other value counts as unknown."
        in page
    )
    fairness = version.evaluation["fairness"]
    assert set(fairness) == {"age"}
    report = fairness["age"]
    reference = next(group for group in report["groups"] if group["group"] == report["reference_group"])
    assert (
        f"<strong>age:</strong> The model gave “yes” to {round(reference['selection_rate'] * 100)} % of the group "
        f"{reference['group']}" in page.replace("&lt;", "<").replace("&ge;", "≥")
    )
    assert f"Approved for use by pm on {version.decided_at:%-d %B %Y}." in page
    assert f"<dt>Artefact SHA-256</dt><dd><code>{version.artefact_sha256}</code></dd>" in page
    assert f"<dt>Data SHA-256</dt><dd><code>{dataset_version.sha256}</code>" in page


def test_the_card_states_a_pending_release_and_a_regression_in_words(client, people, csv_upload):
    incomes = dataset_create(name="incomes", target_column="income", subject_key_column="customer_id")
    dataset_version = dataset_version_create_from_upload(dataset=incomes, upload=csv_upload())
    registered = registered_model_create(name="income-estimate", task_type="regression")
    version = _trained(registered, dataset_version, people["maker"])
    client.force_login(people["viewer"])
    page = _page(client.get(_version_url(version, "version-card")))
    metrics, rows = version.metrics, version.evaluation["rows"]
    assert "Pending approval: not yet approved for use." in page
    assert "It estimates <strong>income</strong>, a number, for each case it is given." in page
    assert (
        f"On {rows} cases it had not seen, its estimates of income were off by {fmt_number(metrics['mae'])} on "
        f"average (mean absolute error)."
    ) in page
    assert f"its typical error was {fmt_number(metrics['rmse'])} (root mean squared error" in page
    r2 = metrics["r2"]
    if r2 >= 0:
        assert f"It explains {round(r2 * 100)} % of the differences in income between cases (R² {r2:.2f})" in page
    else:
        assert f"It predicts income worse than always guessing the average would (R² {r2:.2f})." in page
    assert "No column of the data is marked as a protected attribute" in page
    # The form tokens are random and may spell anything; the card's own text must not name AUC.
    assert "AUC" not in re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", page)


# -- access --------------------------------------------------------------------------------------------


def test_the_release_pages_need_staff(client, users, people, version):
    client.force_login(users["end_user"])
    for url in (
        reverse("registry:model-detail", args=["loan-risk"]),
        _version_url(version),
        _version_url(version, "version-card"),
        reverse("registry:compare", args=["loan-risk"]) + "?versions=1,2",
        reverse("registry:training-detail", args=[version.training_job.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    for view in ("version-approve", "version-promote"):
        response = client.post(_version_url(version, view), {"note": "x", "alias": "champion"})
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    version.refresh_from_db()
    assert version.status == "pending_manual_approval"
    assert not ModelAlias.objects.exists()


# -- training ----------------------------------------------------------------------------------------


def test_the_training_page_follows_a_queued_job_and_cancels_it(
    client, users, registered_model, dataset_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = training_job_create(registered_model=registered_model, dataset_version=dataset_version, actor=users["ds"])
    client.force_login(users["ds"])
    url = reverse("registry:training-detail", args=[job.pk])
    page = _page(client.get(url))
    assert '<span class="status queued" data-testid="status">Queued</span>' in page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert '<script src="/static/js/training.js" defer></script>' in page
    assert f'data-status-url="/api/v1/training-jobs/{job.pk}"' in page
    assert 'role="progressbar" aria-label="Training" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"' in page
    assert f'<form method="post" action="/training/{job.pk}/cancel/" id="cancel-form"' in page
    status = client.get(f"/api/v1/training-jobs/{job.pk}")  # what the page's script polls, with the session
    assert (status.status_code, status.json()["status"], status.json()["progress"]) == (200, "queued", 0.0)

    response = client.post(reverse("registry:training-cancel", args=[job.pk]))
    assert (response.status_code, response["Location"]) == (302, url)
    job.refresh_from_db()
    assert job.status == "cancelled"
    page = _page(client.get(url))
    assert _messages(page) == [f"Training job #{job.pk} cancelled."]
    assert '<span class="status cancelled" data-testid="status">Cancelled</span>' in page
    assert "cancel-form" not in page and "<noscript>" not in page and "training.js" not in page

    page = _page(client.post(reverse("registry:training-cancel", args=[job.pk]), follow=True))
    assert _messages(page) == [f"Training job {job.pk} has already ended (cancelled)."]


def test_the_training_page_shows_a_requested_cancel_and_search_trials(
    client, users, registered_model, dataset_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job = training_job_create(
            registered_model=registered_model, dataset_version=dataset_version, params={"search_trials": 3}
        )
    trials = [
        {
            "number": 0,
            "params": {"max_depth": 4, "learning_rate": 0.05},
            "score": 0.81234,
            "state": "complete",
            "best_iteration": 17,
        },
        {
            "number": 1,
            "params": {"max_depth": 2, "learning_rate": 0.2},
            "score": None,
            "state": "running",
            "best_iteration": None,
        },
    ]
    TrainingJob.objects.filter(pk=job.pk).update(status="running", progress=0.4, attempts=1, trials=trials)
    training_job_cancel(job=job, actor=users["ds"])
    client.force_login(users["ds"])
    page = _page(client.get(reverse("registry:training-detail", args=[job.pk])))
    assert '<span class="status running" data-testid="status">Running</span>' in page
    assert '<span data-field="percent">40 %</span>' in page
    assert '<span data-field="attempts">1</span>' in page
    assert '<span data-field="cancel" class="cancel-state">· cancel requested' in page
    assert "cancel-form" not in page
    assert '3 trials asked for; <span data-field="trial-count">2</span> finished.' in page
    assert (
        '<tr><td class="num">0</td><td><code>learning_rate=0.05</code> <code>max_depth=4</code> </td>'
        '<td class="num">0.8123</td><td>complete</td><td class="num">17</td></tr>'
    ) in page
    assert '<td class="num">—</td><td>running</td><td class="num">—</td>' in page


def test_the_training_form_sends_only_the_parameters_set(
    client, users, dataset_version, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    page = _page(client.get(reverse("registry:training-new")))
    assert PARAM_DOCS["search_trials"] in page
    assert 'placeholder="Default: 200"' in page
    response = client.post(
        reverse("registry:training-new"),
        {"model": "page-model", "dataset": "loans", "holdout": "time", "class_weight": "balanced"},
    )
    assert response.status_code == 400
    assert "A holdout by time needs the column that orders the rows." in response.content.decode()
    assert not TrainingJob.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("registry:training-new"),
            {
                "model": "page-model",
                "dataset": "loans",
                "holdout": "random",
                "class_weight": "balanced",
                "seed": "7",
                "search_trials": "0",
                "early_stopping_rounds": "",
                "n_estimators": "",
            },
        )
    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("registry:training-detail", args=[job.pk])
    assert AuditEvent.objects.get(action="training_job.created").data["params"] == job.params
    assert (job.params["holdout"], job.params["class_weight"], job.params["seed"], job.params["search_trials"]) == (
        "random",
        "balanced",
        7,
        0,
    )
    assert (job.params["n_estimators"], job.params["early_stopping_rounds"]) == (200, 20)
