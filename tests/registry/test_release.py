"""Release governance: gates with stored evidence, maker-checker approval, rejection, aliases, events, and
"which version was champion at time T"."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput
from apps.events.models import OutboxEvent
from apps.governance.models import AuditEvent
from apps.governance.services import token_create
from apps.registry.models import AliasChange, ModelVersion
from apps.registry.selectors import alias_at
from apps.registry.services import (
    model_alias_rollback,
    model_version_approve,
    model_version_gates_evaluate,
    model_version_promote,
    model_version_reject,
    registered_model_update,
    training_job_create,
    training_job_run,
)
from tests.conftest import SMALL_PARAMS, release, train_version

GATES = ["quality", "champion", "fairness", "data_checks", "onnx_parity"]


def trained_by(user, registered_model, dataset_version, **params):
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params={**SMALL_PARAMS, **params},
        actor=user,
    )
    return training_job_run(job_id=job.pk) or ModelVersion.objects.get(training_job=job)


def test_a_new_version_is_pending_with_gate_evidence_onnx_and_lineage(registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    version.refresh_from_db()
    assert version.status == "pending_manual_approval"
    assert version.maker == f"user:{users['ds'].pk}"
    report = version.gate_report
    assert [gate["name"] for gate in report["gates"]] == GATES
    assert report["passed"] is True
    assert report["metric"] == "auc"
    assert report["score"] == pytest.approx(version.metrics["auc"], abs=1e-12)
    assert report["holdout_rows"] == version.metrics["rows"]["test"] == 60
    assert report["champion"] is None
    assert version.onnx_parity["passed"] is True
    assert version.onnx_parity["rows"] == 60
    assert version.onnx_path == f"models/{version.onnx_sha256}.onnx"
    assert set(version.lineage) >= {"code_version", "libraries", "dataset", "rows", "training_job"}
    assert version.lineage["dataset"]["sha256"] == dataset_version.sha256
    assert set(version.evaluation) >= {"metrics", "confusion_matrix", "roc_curve", "pr_curve", "importance", "latency"}
    assert list(OutboxEvent.objects.order_by("id").values_list("kind", flat=True)) == ["model_version.ready"]


def test_the_maker_cannot_approve_and_someone_else_can(registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    with pytest.raises(Conflict) as refused:
        model_version_approve(version=version, actor=users["ds"])
    assert refused.value.message == (
        f"{version} was trained at your request; someone else must approve it (maker-checker)."
    )
    version.refresh_from_db()
    assert version.status == "pending_manual_approval"

    approved = model_version_approve(version=version, actor=users["pm"], note="Looks right.")
    assert (approved.status, approved.decided_by, approved.decision_note) == ("approved", users["pm"], "Looks right.")
    event = AuditEvent.objects.filter(action="model_version.approved").get()
    assert event.actor == f"user:{users['pm'].pk}"
    assert event.data == {"gates_passed": True, "model": "loan-risk", "override_reason": "", "version": 1}
    assert list(OutboxEvent.objects.order_by("id").values_list("kind", flat=True)) == [
        "model_version.ready",
        "model_version.approved",
    ]
    with pytest.raises(Conflict, match="is not pending approval"):
        model_version_approve(version=version, actor=users["pm"])


def test_a_token_counts_as_the_user_who_created_it(registered_model, dataset_version, users):
    token, _ = token_create(name="ds-laptop", scopes=["write"], created_by=users["ds"])
    version = trained_by(token, registered_model, dataset_version)
    assert version.maker == f"user:{users['ds'].pk}"
    with pytest.raises(Conflict, match="maker-checker"):
        model_version_approve(version=version, actor=users["ds"])


def test_reject_needs_a_reason_and_a_rejected_version_takes_no_alias(registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    with pytest.raises(InvalidInput, match="Say why"):
        model_version_reject(version=version, actor=users["pm"], note="  ")
    rejected = model_version_reject(version=version, actor=users["pm"], note="Trained on last year's data.")
    assert (rejected.status, rejected.decision_note) == ("rejected", "Trained on last year's data.")
    for alias in ("champion", "challenger", "shadow"):
        with pytest.raises(Conflict, match="was rejected; it cannot hold an alias"):
            model_version_promote(version=version, alias=alias, actor=users["pm"])
    assert not AliasChange.objects.exists()
    assert OutboxEvent.objects.filter(kind="model_version.rejected").count() == 1


def test_champion_needs_approval_but_other_aliases_do_not(registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    with pytest.raises(Conflict, match="only an approved version can be champion"):
        model_version_promote(version=version, actor=users["pm"])
    shadow = model_version_promote(version=version, alias="shadow-eu", actor=users["pm"])
    assert (shadow.name, shadow.version_id) == ("shadow-eu", version.pk)
    with pytest.raises(InvalidInput, match="not a valid alias name"):
        model_version_promote(version=version, alias="Bad Alias!", actor=users["pm"])


def test_failing_gates_need_a_written_override(registered_model, dataset_version, users):
    registered_model_update(registered_model=registered_model, quality_minimum=0.9999, actor=users["pm"])
    version = trained_by(users["ds"], registered_model, dataset_version)
    report = ModelVersion.objects.get(pk=version.pk).gate_report
    assert report["passed"] is False
    quality = report["gates"][0]
    assert (quality["name"], quality["passed"]) == ("quality", False)
    assert quality["detail"] == f"auc = {report['score']:.4f}; the SLA asks for at least 0.9999."
    with pytest.raises(Conflict) as refused:
        model_version_approve(version=version, actor=users["pm"])
    assert refused.value.message == f"{version} fails its release gates (quality); approving it needs a written reason."
    approved = model_version_approve(version=version, actor=users["pm"], note="Pilot for 2 weeks, watched daily.")
    assert AuditEvent.objects.get(action="model_version.approved").data["override_reason"] == (
        "Pilot for 2 weeks, watched daily."
    )
    alias = model_version_promote(version=approved, actor=users["pm"])
    assert alias.version_id == version.pk


def test_the_champion_gate_compares_on_the_same_rows(registered_model, dataset_version, users):
    champion = release(train_version(registered_model, dataset_version))
    registered_model_update(registered_model=registered_model, max_relative_drop=0.0, actor=users["pm"])
    weaker = trained_by(users["ds"], registered_model, dataset_version, n_estimators=1, max_depth=1)
    report = ModelVersion.objects.get(pk=weaker.pk).gate_report
    gate = next(gate for gate in report["gates"] if gate["name"] == "champion")
    assert report["champion"]["version"] == champion.version
    assert report["champion"]["score"] == pytest.approx(champion.metrics["auc"], abs=1e-12)  # same split, same rows
    assert report["score"] < report["champion"]["score"]
    assert gate["passed"] is False
    assert gate["detail"] == (
        f"auc {report['score']:.4f} against champion v1's {report['champion']['score']:.4f} on the same 60 rows; "
        f"allowed: ≥ {report['champion']['score']:.4f} (0.0% relative)."
    )
    with pytest.raises(Conflict, match=r"fails its release gates \(champion\)"):
        model_version_approve(version=weaker, actor=users["pm"])


def test_gates_are_measured_again_when_the_champion_changed(registered_model, dataset_version, users):
    first = trained_by(users["ds"], registered_model, dataset_version)
    second = trained_by(users["ds"], registered_model, dataset_version, max_depth=2)
    assert ModelVersion.objects.get(pk=second.pk).gate_report["champion"] is None
    model_version_approve(version=first, actor=users["pm"])
    model_version_promote(version=first, actor=users["pm"])
    model_version_approve(version=second, actor=users["pm"])
    model_version_promote(version=second, actor=users["pm"])
    second.refresh_from_db()
    assert second.gate_report["champion"]["version"] == 1
    assert AuditEvent.objects.filter(action="model_version.gates_evaluated").count() == 3


def test_rollback_and_the_champion_at_any_time(registered_model, dataset_version, users):
    first = release(train_version(registered_model, dataset_version))
    second = release(train_version(registered_model, dataset_version, max_depth=2))
    model_alias_rollback(registered_model=registered_model, actor=users["pm"])
    changes = list(AliasChange.objects.order_by("at", "id"))
    assert [(c.kind, c.to_version.version) for c in changes] == [("promote", 1), ("promote", 2), ("rollback", 1)]
    before = changes[0].at - timedelta(microseconds=1)
    assert alias_at(registered_model=registered_model, alias="champion", at=before) is None
    assert alias_at(registered_model=registered_model, alias="champion", at=changes[0].at).to_version == first
    assert alias_at(registered_model=registered_model, alias="champion", at=changes[1].at).to_version == second
    assert alias_at(registered_model=registered_model, alias="champion", at=timezone.now()).to_version == first
    kinds = list(
        OutboxEvent.objects.filter(kind__startswith="model_version.p").order_by("id").values_list("kind", flat=True)
    )
    assert kinds == ["model_version.promoted", "model_version.promoted"]
    rolled = OutboxEvent.objects.get(kind="model_version.rolled_back")
    assert rolled.payload == {"alias": "champion", "model": "loan-risk", "previous_version": 2, "version": 1}


def test_gates_can_be_evaluated_again_on_request(registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    report = model_version_gates_evaluate(version=version)
    assert report["passed"] is True
    assert ModelVersion.objects.get(pk=version.pk).gate_report == report


# -- the API ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_token(db, users):
    users["pm"].user_permissions.add(Permission.objects.get(codename="approve_modelversion"))
    return token_create(name="pm-console", scopes=["admin"], created_by=users["pm"])[1]


def test_api_approve_reject_and_alias_at(api, tokens, admin_token, registered_model, dataset_version, users):
    version = trained_by(users["ds"], registered_model, dataset_version)
    base = "/api/v1/models/loan-risk"
    denied = api.call("post", f"{base}/versions/1/approve", tokens["write"], {})
    assert denied.status_code == 403
    approved = api.call("post", f"{base}/versions/1/approve", admin_token, {"note": "ok"})
    assert approved.status_code == 200, approved.content
    assert (approved.json()["status"], approved.json()["decision_note"]) == ("approved", "ok")
    promoted = api.call("put", f"{base}/aliases/champion", admin_token, {"version": 1})
    assert promoted.json() == {"model": "loan-risk", "alias": "champion", "version": 1}
    at = AliasChange.objects.get().at
    answer = api.call("get", f"{base}/aliases/champion/at?at={at.isoformat().replace('+00:00', 'Z')}", tokens["read"])
    assert answer.status_code == 200
    assert (answer.json()["version"], answer.json()["change"]) == (1, "promote")
    earlier = (at - timedelta(seconds=1)).isoformat()
    assert api.call("get", f"{base}/aliases/champion/at", tokens["read"]).status_code == 400
    empty = api.call("get", f"{base}/aliases/champion/at?at={earlier.replace('+', '%2B')}", tokens["read"])
    assert (empty.status_code, empty.json()["version"]) == (200, None)
    bad = api.call("get", f"{base}/aliases/champion/at?at=yesterday", tokens["read"])
    assert bad.status_code == 400
    assert bad.json()["extra"]["fields"] == {"at": ["An ISO 8601 time with an offset."]}

    second = trained_by(users["ds"], registered_model, dataset_version, max_depth=2)
    no_note = api.call("post", f"{base}/versions/{second.version}/reject", admin_token, {})
    assert no_note.status_code == 400
    rejected = api.call("post", f"{base}/versions/{second.version}/reject", admin_token, {"note": "Too deep."})
    assert rejected.json()["status"] == "rejected"
    again = api.call("post", f"{base}/versions/{second.version}/approve", admin_token, {})
    assert again.status_code == 409
    assert again.json()["message"] == f"{second} is not pending approval (it is rejected)."
    assert version.pk != second.pk


def test_api_compare_and_onnx_download(api, tokens, registered_model, dataset_version):
    first = train_version(registered_model, dataset_version)
    second = train_version(registered_model, dataset_version, max_depth=2)
    compared = api.call("get", "/api/v1/models/loan-risk/compare?versions=1,2", tokens["read"])
    assert compared.status_code == 200
    body = compared.json()
    assert [item["version"] for item in body["versions"]] == [1, 2]
    auc = next(metric for metric in body["metrics"] if metric["name"] == "auc")
    assert auc["values"] == [first.metrics["auc"], second.metrics["auc"]]
    assert auc["best"] == max(auc["values"])
    fields = [item["field"] for item in body["lineage_differences"]]
    assert "params.max_depth" in fields and "artefact_sha256" in fields
    assert "dataset" not in fields
    assert api.call("get", "/api/v1/models/loan-risk/compare?versions=1", tokens["read"]).status_code == 400
    assert api.call("get", "/api/v1/models/loan-risk/compare?versions=1,9", tokens["read"]).status_code == 404
    onnx = api.call("get", "/api/v1/models/loan-risk/versions/1/onnx", tokens["read"])
    assert onnx.status_code == 200
    import hashlib

    assert hashlib.sha256(onnx.content).hexdigest() == first.onnx_sha256 == onnx["X-Content-SHA256"]
