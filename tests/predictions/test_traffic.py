"""Traffic policy (canary, shadows, sticky routing, automatic rollback), the decision log's contents,
idempotent request ids and feedback."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.errors import Conflict
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.events.models import OutboxEvent
from apps.governance.models import ApiToken, AuditEvent
from apps.governance.services import token_create
from apps.predictions.minimise import minimiser, pseudonym
from apps.predictions.models import PredictionRecord, ScoringFailure, TrafficPolicy
from apps.predictions.routing import BUCKETS, bucket, policy_cache
from apps.predictions.services import canaries_check, canary_judge, prediction_make
from apps.predictions.shadow import shadow_scorer
from apps.registry.services import model_version_reject, registered_model_create
from tests.conftest import release, train_version, valid_row

PREDICT = "/api/v1/models/loan-risk/predict"
TRAFFIC = "/api/v1/models/loan-risk/traffic"


@pytest.fixture(autouse=True)
def _fresh_policies():
    policy_cache.clear()
    yield
    policy_cache.clear()


@pytest.fixture
def versions(registered_model, dataset_version, champion):
    """v1 the champion, v2 approved (a possible canary), v3 pending (a possible shadow)."""
    second = release(train_version(registered_model, dataset_version, max_depth=2), alias="challenger")
    third = train_version(registered_model, dataset_version, max_depth=4)
    return champion, second, third


def patch(api, token, body):
    return api.call("patch", TRAFFIC, token, body)


def predict(api, token, rows, **extra):
    response = api.call("post", PREDICT, token, {"inputs": rows, **extra})
    assert response.status_code == 200, response.content
    return response


def served_version(response) -> int:
    return int(response["X-Model-Version"].split("/")[1])


# -- the policy -----------------------------------------------------------------------------------------


def test_a_model_without_a_policy_sends_everything_to_the_champion(api, tokens, versions):
    response = api.call("get", TRAFFIC, tokens["read"])
    assert response.status_code == 200
    assert response.json() == {
        "model": "loan-risk",
        "canary_version": None,
        "canary_percent": 0.0,
        "shadow_versions": [],
        "sticky_by": "subject",
        "max_error_rate_increase": 0.01,
        "max_p95_latency_increase": 0.5,
        "min_requests": 50,
        "window_minutes": 15,
        "revision": 0,
        "updated_at": None,
        "updated_by": "",
        "rolled_back_at": None,
        "rollback_reason": "",
    }
    assert {served_version(predict(api, tokens["predict"], [valid_row()])) for _ in range(5)} == {1}


def test_setting_a_canary_and_shadows_is_audited_and_raises_the_revision(api, tokens, versions):
    response = patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 25, "shadow_versions": [3]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["canary_version"], body["canary_percent"], body["shadow_versions"], body["revision"]) == (
        2,
        25.0,
        [3],
        1,
    )
    assert body["updated_by"].startswith("token:")
    event = AuditEvent.objects.filter(action="traffic_policy.changed").get()
    assert (event.object_type, event.data) == (
        "registry.registeredmodel",
        {
            "canary_version": {"from": None, "to": 2},
            "canary_percent": {"from": 0.0, "to": 25.0},
            "shadow_versions": {"from": [], "to": [3]},
        },
    )
    assert OutboxEvent.objects.filter(kind="traffic_policy.changed").count() == 1
    # Fields not sent keep their values.
    response = patch(api, tokens["admin"], {"sticky_by": "none"})
    assert (response.json()["canary_version"], response.json()["sticky_by"], response.json()["revision"]) == (
        2,
        "none",
        2,
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"canary_version": 3, "canary_percent": 10},
            {"canary_version": ["v3 is pending manual approval; a canary must be approved."]},
        ),
        ({"canary_version": 1}, {"canary_version": ["v1 is the champion."]}),
        ({"canary_version": 9}, {"canary_version": ["loan-risk has no version 9."]}),
        ({"canary_percent": 10}, {"canary_percent": ["A percentage needs a canary_version."]}),
        ({"canary_version": 2, "canary_percent": 150}, {"canary_percent": ["Must be between 0 and 100."]}),
        ({"canary_percent": "half"}, {"canary_percent": ["Must be a number."]}),
        ({"shadow_versions": [1, 7]}, {"shadow_versions": ["v1 is the champion.", "loan-risk has no version 7."]}),
        ({"shadow_versions": "3"}, {"shadow_versions": ["Must be a list of version numbers."]}),
        ({"canary_version": 2, "shadow_versions": [2]}, {"shadow_versions": ["v2 is the canary."]}),
        ({"sticky_by": "cookie"}, {"sticky_by": ["Must be one of: subject, none."]}),
        ({"min_requests": 0}, {"min_requests": ["Must be at least 1."]}),
        ({"colour": "red"}, {"colour": ["Unknown field."]}),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field_and_changes_nothing(api, tokens, versions, body, fields):
    response = patch(api, tokens["admin"], body)
    assert (response.status_code, response.json()) == (
        400,
        {"message": "Invalid traffic policy.", "extra": {"fields": fields}},
    )
    assert TrafficPolicy.objects.filter(revision__gt=0).count() == 0
    assert not AuditEvent.objects.filter(action="traffic_policy.changed").exists()


def test_a_rejected_version_cannot_shadow(api, tokens, versions, users):
    model_version_reject(version=versions[2], actor=users["pm"], note="Not good enough.")
    response = patch(api, tokens["admin"], {"shadow_versions": [3]})
    assert response.json()["extra"]["fields"] == {"shadow_versions": ["v3 was rejected."]}


def test_only_admin_tokens_change_the_policy(api, tokens, versions):
    for persona in ("predict", "read", "write"):
        response = patch(api, tokens[persona], {"canary_version": 2, "canary_percent": 5})
        assert (response.status_code, response.json()) == (
            403,
            {"message": "This token lacks the 'admin' scope.", "extra": {}},
        )
    assert api.call("get", "/api/v1/models/nope/traffic", tokens["read"]).status_code == 404


# -- routing --------------------------------------------------------------------------------------------


def test_a_full_canary_answers_default_traffic_and_named_versions_stay_direct(api, tokens, versions):
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 100})
    answers = [predict(api, tokens["predict"], [valid_row(customer_id=f"C{i}")]) for i in range(4)]
    assert [served_version(answer) for answer in answers] == [2, 2, 2, 2]
    named = predict(api, tokens["predict"], [valid_row()], version=1)
    assert served_version(named) == 1
    by_alias = predict(api, tokens["predict"], [valid_row()], alias="champion")
    assert served_version(by_alias) == 1
    routes = [
        PredictionRecord.objects.get(request_id=answer.json()["request_id"]).route
        for answer in [*answers, named, by_alias]
    ]
    assert routes == ["canary"] * 4 + ["direct", "direct"]


def test_sticky_routing_keeps_a_person_on_one_version_and_splits_by_the_percentage(api, tokens, versions):
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 30})
    subjects = [f"C{i:04d}" for i in range(120)]
    expected = {subject: 2 if bucket("loan-risk", subject) < 0.30 * BUCKETS else 1 for subject in subjects}
    first = {s: served_version(predict(api, tokens["predict"], [valid_row(customer_id=s)])) for s in subjects}
    assert first == expected
    again = {s: served_version(predict(api, tokens["predict"], [valid_row(customer_id=s)])) for s in subjects[:30]}
    assert again == {s: expected[s] for s in subjects[:30]}
    assert 20 <= list(expected.values()).count(2) <= 52  # about 30 % of 120, as the hash spreads them


def test_a_canary_that_cannot_load_is_counted_against_it_and_the_champion_answers(api, tokens, versions):
    canary = versions[1]
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 100})
    path = Path(settings.FARO_ARTEFACT_ROOT) / canary.artefact_path
    path.chmod(0o644)
    path.write_bytes(b"not a model")
    response = predict(api, tokens["predict"], [valid_row()])
    assert served_version(response) == 1
    assert PredictionRecord.objects.get(request_id=response.json()["request_id"]).route == "champion"
    failure = ScoringFailure.objects.get()
    assert (failure.model_version_id, failure.route) == (canary.pk, "canary")
    assert failure.error == f"Artefact {canary.artefact_path} does not match its recorded SHA-256"


# -- automatic rollback ---------------------------------------------------------------------------------


def log(version, route: str, count: int, latency_ms: float, *, at=None):
    records = PredictionRecord.objects.bulk_create(
        [
            PredictionRecord(
                request_id=uuid.uuid4(),
                model_version=version,
                route=route,
                channel="api",
                inputs={},
                output={},
                latency_ms=latency_ms,
            )
            for _ in range(count)
        ]
    )
    if at is not None:
        PredictionRecord.objects.filter(pk__in=[record.pk for record in records]).update(created_at=at)


def fail(version, route: str, count: int):
    ScoringFailure.objects.bulk_create(
        [ScoringFailure(model_version=version, route=route, error="x") for _ in range(count)]
    )


def test_a_canary_with_too_many_errors_is_rolled_back_and_audited(api, tokens, versions):
    champion, canary, _ = versions
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 10, "min_requests": 20})
    log(champion, "champion", 200, 3.0)
    fail(champion, "champion", 2)  # 2 / 202 = 0.99 %
    log(canary, "canary", 20, 3.0)
    fail(canary, "canary", 1)  # 1 / 21 = 4.76 %: more than 1 point worse
    policy = TrafficPolicy.objects.get()
    reason = "error rate 4.76% against the champion's 0.99% (margin 1.00%) over the last 15 min"
    assert canary_judge(policy) == reason

    assert canaries_check() == ["loan-risk"]
    policy.refresh_from_db()
    assert (policy.canary_version_id, policy.canary_percent, policy.revision, policy.rollback_reason) == (
        None,
        0.0,
        2,
        reason,
    )
    assert policy.rolled_back_at is not None
    event = AuditEvent.objects.filter(action="traffic_policy.canary_rolled_back").get()
    assert (event.actor, event.data) == ("system", {"canary_version": 2, "reason": reason})
    assert OutboxEvent.objects.filter(kind="traffic_policy.canary_rolled_back").count() == 1
    assert served_version(predict(api, tokens["predict"], [valid_row()])) == 1
    assert canaries_check() == []


def test_a_slow_canary_is_rolled_back(api, tokens, versions):
    champion, canary, _ = versions
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 10, "min_requests": 20})
    log(champion, "champion", 100, 4.0)
    log(canary, "canary", 19, 5.0)
    log(canary, "canary", 1, 50.0)
    policy = TrafficPolicy.objects.get()
    assert canary_judge(policy) is None  # p95 of the canary is 5.0 ms: within 50 % of 4.0 ms
    log(canary, "canary", 2, 50.0)
    assert canary_judge(policy) == (
        "p95 latency 50.0 ms against the champion's 4.0 ms (margin 50%) over the last 15 min"
    )


def test_a_canary_is_not_judged_on_too_few_requests_or_old_ones(api, tokens, versions):
    champion, canary, _ = versions
    patch(api, tokens["admin"], {"canary_version": 2, "canary_percent": 10, "min_requests": 20})
    log(champion, "champion", 100, 3.0)
    fail(canary, "canary", 5)
    log(canary, "canary", 14, 3.0)
    assert canary_judge(TrafficPolicy.objects.get()) is None  # 19 requests
    log(canary, "canary", 30, 3.0, at=timezone.now() - timedelta(minutes=16))
    assert canaries_check() == []


# -- shadows --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_shadow_versions_score_off_the_request_path_and_are_never_returned(api, tokens, versions):
    patch(api, tokens["admin"], {"shadow_versions": [2, 3]})
    rows = [valid_row(customer_id="C0001"), valid_row(income=1200.0, city="east")]
    response = predict(api, tokens["predict"], rows)
    assert served_version(response) == 1
    assert shadow_scorer.drain(timeout=30)
    request_id = response.json()["request_id"]
    logged = PredictionRecord.objects.filter(request_id=request_id).select_related("model_version")
    by_route = sorted((r.route, r.model_version.version, r.row, r.subject_id) for r in logged)
    assert by_route == [
        ("champion", 1, 0, "C0001"),
        ("champion", 1, 1, ""),
        ("shadow", 2, 0, "C0001"),
        ("shadow", 2, 1, ""),
        ("shadow", 3, 0, "C0001"),
        ("shadow", 3, 1, ""),
    ]
    # What the shadows decided equals what each would answer when asked directly.
    for number in (2, 3):
        direct = predict(api, tokens["predict"], rows, version=number).json()["outputs"]
        shadowed = [r.output for r in sorted(logged, key=lambda r: r.row) if r.model_version.version == number]
        assert shadowed == direct


# -- the decision log -----------------------------------------------------------------------------------


def test_the_log_records_route_client_latency_and_the_explanation(api, tokens, champion):
    response = predict(api, tokens["predict"], [valid_row()], explain=True)
    record = PredictionRecord.objects.get(request_id=response.json()["request_id"])
    client = f"token:{ApiToken.objects.get(name='predict-client').pk}"
    assert (record.route, record.channel, record.client) == ("champion", "api", client)
    assert record.explanation == response.json()["explanations"][0]
    assert record.latency_ms > 0


def test_personal_inputs_are_pseudonymised_and_special_categories_dropped(db, csv_upload, settings):
    settings.FARO_PSEUDONYM_KEY = "k" * 32
    dataset = dataset_create(
        name="tagged",
        target_column="repaid",
        subject_key_column="customer_id",
        purpose="Credit decisions",
        legal_basis="b",
        retention_days=365,
        column_tags={"customer_id": ["personal"], "age": ["personal"], "city": ["special_category"]},
    )
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    model = registered_model_create(name="tagged-risk", task_type="classification", favourable_label="yes")
    release(train_version(model, version))
    result = prediction_make(model_name="tagged-risk", rows=[valid_row(customer_id="C0042")])
    record = PredictionRecord.objects.get(request_id=result.request_id)
    key = b"k" * 32
    assert (record.subject_id, record.inputs) == ("C0042", {"income": 5200.5, "age": pseudonym(key, "age", 41)})
    assert record.inputs["age"] == pseudonym(key, "age", 41) != pseudonym(key, "income", 41)
    assert record.inputs["age"].startswith("psn:") and len(record.inputs["age"]) == 20


def test_the_minimiser_keeps_untagged_columns_and_missing_values():
    minimise = minimiser(column_tags={"a": ["personal"], "b": ["protected"]}, subject_key=None, key=b"x")
    assert minimise({"a": None, "b": 3, "c": "z"}) == {"a": None, "b": 3, "c": "z"}
    assert minimise({"a": "Ann"}) == {"a": pseudonym(b"x", "a", "Ann")}
    assert minimiser(column_tags={}, subject_key=None, key=b"x")({"a": 1}) == {"a": 1}


def test_a_request_id_already_logged_returns_the_logged_decision(champion):
    request_id = uuid.uuid4()
    first = prediction_make(model_name="loan-risk", rows=[valid_row(), valid_row(age=70)], request_id=request_id)
    again = prediction_make(model_name="loan-risk", rows=[valid_row(income=1.0)], request_id=request_id)
    assert (first.replayed, again.replayed) == (False, True)
    assert (again.request_id, again.outputs, again.model.version) == (str(request_id), first.outputs, 1)
    assert PredictionRecord.objects.filter(request_id=request_id).count() == 2
    other = registered_model_create(name="other-model", task_type="classification")
    with pytest.raises(Conflict) as refused:
        prediction_make(model_name=other.name, rows=[valid_row()], request_id=request_id)
    assert refused.value.message == f"Request id {request_id} was already used for a decision of another model."


# -- feedback -------------------------------------------------------------------------------------------


def feedback(api, token, request_id, body):
    return api.call("post", f"/api/v1/predictions/{request_id}/feedback", token, body)


def test_feedback_attaches_the_true_outcome_to_each_row(api, tokens, champion):
    request_id = predict(api, tokens["predict"], [valid_row(), valid_row(age=70)]).json()["request_id"]
    response = feedback(api, tokens["predict"], request_id, {"actuals": ["yes", "no"]})
    assert response.status_code == 200, response.content
    assert (response.json()["request_id"], response.json()["rows"]) == (request_id, 2)
    records = PredictionRecord.objects.filter(request_id=request_id).order_by("row")
    assert [record.actual for record in records] == ["yes", "no"]
    assert all(record.actual_at is not None for record in records)
    event = AuditEvent.objects.filter(action="prediction.feedback").get()
    assert event.data == {"request_id": request_id, "rows": 2}
    # A correction replaces it.
    assert feedback(api, tokens["write"], request_id, {"actuals": ["no", "no"]}).status_code == 200
    assert [record.actual for record in PredictionRecord.objects.filter(request_id=request_id).order_by("row")] == [
        "no",
        "no",
    ]


def test_bad_feedback_is_refused_naming_the_problem(api, tokens, champion):
    request_id = predict(api, tokens["predict"], [valid_row()]).json()["request_id"]
    cases = [
        ({"actuals": ["yes", "no"]}, {"fields": {"actuals": ["Expected 1 value(s), got 2."]}}),
        (
            {"actuals": ["maybe"]},
            {"errors": [{"row": 0, "field": "actuals", "message": "'maybe' is not a label; allowed: 'no', 'yes'"}]},
        ),
        ({"label": "yes"}, {"fields": {"actuals": ["A list is required; no other field is accepted."]}}),
    ]
    for body, extra in cases:
        response = feedback(api, tokens["predict"], request_id, body)
        assert (response.status_code, response.json()["extra"]) == (400, extra)
    assert PredictionRecord.objects.get(request_id=request_id).actual is None
    unknown = uuid.uuid4()
    response = feedback(api, tokens["predict"], unknown, {"actuals": ["yes"]})
    assert (response.status_code, response.json()) == (
        404,
        {"message": f"No decision with request id {unknown}.", "extra": {}},
    )


def test_a_client_gives_feedback_only_on_its_own_decisions(api, tokens, champion):
    request_id = predict(api, tokens["predict"], [valid_row()]).json()["request_id"]
    other = token_create(name="another-client", scopes=["predict"])[1]
    response = feedback(api, other, request_id, {"actuals": ["yes"]})
    assert (response.status_code, response.json()["message"]) == (404, f"No decision with request id {request_id}.")
    assert feedback(api, tokens["read"], request_id, {"actuals": ["yes"]}).status_code == 403


# -- the console ----------------------------------------------------------------------------------------


def test_the_console_sets_a_canary_through_the_service_and_shows_refusals_on_the_field(client, versions):
    from django.contrib.auth import get_user_model

    _, canary, pending = versions
    admin = get_user_model().objects.create_superuser("root", password="pw")
    client.force_login(admin)
    form = {
        "registered_model": canary.registered_model_id,
        "canary_version": pending.pk,
        "canary_percent": "10",
        "sticky_by": "subject",
        "max_error_rate_increase": "0.01",
        "max_p95_latency_increase": "0.5",
        "min_requests": "50",
        "window_minutes": "15",
    }
    response = client.post("/admin/predictions/trafficpolicy/add/", form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "canary_version": ["v3 is pending manual approval; a canary must be approved."]
    }
    assert not TrafficPolicy.objects.exists()

    response = client.post("/admin/predictions/trafficpolicy/add/", {**form, "canary_version": canary.pk})
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = TrafficPolicy.objects.get()
    assert (policy.canary_version_id, policy.canary_percent, policy.revision, policy.updated_by) == (
        canary.pk,
        10.0,
        1,
        f"user:{admin.pk}",
    )
    assert AuditEvent.objects.filter(action="traffic_policy.changed").count() == 1
