"""Data-subject requests: receipt to answer, deadlines, restriction, access, and the erasure cascade through the
dataset versions and the registry (flags, carried holdouts), resumed after a failure."""

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from apps.core.artefacts import ArtefactCorrupted, artefact_path
from apps.core.errors import Conflict, InvalidInput, Unavailable
from apps.core.personal_data import StepState, Subject, handler_get, subject_digest
from apps.data.models import DatasetVersion, DatasetVersionRewrite
from apps.data.selectors import dataset_version_table
from apps.governance import privacy
from apps.governance.models import AuditEvent, DataSubjectRequest, ErasureStep, SubjectRestriction
from apps.predictions.services import prediction_make
from apps.registry.models import ErasurePolicy, ModelVersion, TrainingJob
from apps.registry.services import model_version_holdout_rows
from tests.conftest import release, train_version, valid_row

SUBJECT = "C0007"


def received(kind: str, subject_id: str = SUBJECT, **fields) -> DataSubjectRequest:
    return privacy.subject_request_create(kind=kind, subject_id=subject_id, contact="p@example.org", **fields)[0]


def carried_out(kind: str, dpo, subject_id: str = SUBJECT) -> DataSubjectRequest:
    """Verify and carry out a request; an erasure is then run as the worker runs it once the transaction commits."""
    request = privacy.subject_request_verify(request=received(kind, subject_id), actor=dpo, method="ID card seen")
    privacy.subject_request_carry_out(request=request, actor=dpo)
    if kind == "erasure":
        privacy.erasure_run(request_id=request.pk)
    return DataSubjectRequest.objects.get(pk=request.pk)


def subject_rows(version: DatasetVersion, subject_id: str = SUBJECT) -> int:
    version.refresh_from_db()
    return dataset_version_table(version=version, columns=["customer_id"]).column(0).to_pylist().count(subject_id)


@pytest.mark.parametrize(
    ("start", "months", "due"),
    [
        (datetime(2026, 1, 31, 9, 30, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, 30, tzinfo=UTC)),
        (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2026, 11, 15, tzinfo=UTC), 2, datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2026, 12, 31, tzinfo=UTC), 3, datetime(2027, 3, 31, tzinfo=UTC)),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_months_last(start, months, due):
    assert privacy.add_months(start, months) == due


def test_a_request_is_received_with_a_one_month_deadline_and_a_private_link(db):
    moment = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    request, token = privacy.subject_request_create(
        kind="access", subject_id=" C0007 ", contact="p@example.org", received_at=moment
    )
    assert (request.subject_id, request.status, request.due_at) == (
        "C0007",
        "received",
        datetime(2026, 4, 30, 10, 0, tzinfo=UTC),
    )
    assert request.subject_digest == subject_digest("C0007")
    assert privacy.subject_request_by_link(token) == request
    assert privacy.subject_request_by_link("forged") is None
    event = AuditEvent.objects.get(action="subject_request.received")
    assert event.data["subject"] == f"subject:{request.subject_digest[:16]}"
    assert "C0007" not in json.dumps(event.data) and "example.org" not in json.dumps(event.data)


def test_bad_and_duplicate_requests_are_refused_and_change_nothing(db):
    with pytest.raises(InvalidInput) as bad:
        privacy.subject_request_create(kind="delete-me", subject_id="", contact="x" * 201)
    assert bad.value.extra["fields"] == {
        "kind": ["Choose one of: access, erasure, restriction, objection."],
        "subject_id": ["This field is required."],
        "contact": ["Ensure this value has at most 200 characters."],
    }
    first = received("erasure")
    with pytest.raises(Conflict) as duplicate:
        received("erasure")
    assert duplicate.value.message == (
        f"This person already has an open request of this kind (Erasure (Art. 17)): request {first.pk}, due "
        f"{first.due_at:%Y-%m-%d}."
    )
    assert DataSubjectRequest.objects.count() == 1
    assert received("access").kind == "access"  # another kind is a separate request


def test_only_a_handler_verifies_extends_once_and_refuses_with_a_reason(db, dpo):
    request = received("access")
    outsider = get_user_model().objects.create_user("outsider", password="pw", is_staff=True)
    with pytest.raises(PermissionDenied):
        privacy.subject_request_verify(request=request, actor=outsider, method="seen")
    with pytest.raises(InvalidInput):
        privacy.subject_request_verify(request=request, actor=dpo, method="  ")
    due = request.due_at
    with pytest.raises(InvalidInput):
        privacy.subject_request_extend(request=request, actor=dpo, months=3, reason="complex")
    extended = privacy.subject_request_extend(request=request, actor=dpo, months=2, reason="Many stores to search")
    assert extended.due_at == privacy.add_months(due, 2)
    with pytest.raises(Conflict):
        privacy.subject_request_extend(request=request, actor=dpo, months=1, reason="again")
    refused = privacy.subject_request_refuse(request=request, actor=dpo, reason="Identity could not be established")
    assert (refused.status, refused.outcome) == ("refused", "Identity could not be established")
    with pytest.raises(Conflict):
        privacy.subject_request_verify(request=refused, actor=dpo, method="late")


def test_a_restriction_refuses_decisions_about_that_person_until_lifted(champion, dpo):
    request = carried_out("restriction", dpo)
    assert request.status == "completed"
    with pytest.raises(Conflict) as refused:
        prediction_make(model_name="loan-risk", rows=[valid_row(customer_id="C0001"), valid_row(customer_id=SUBJECT)])
    assert refused.value.extra == {"errors": [{"row": 1, "field": "customer_id", "message": "restricted"}]}
    assert champion.predictions.count() == 0
    assert prediction_make(model_name="loan-risk", rows=[valid_row(customer_id="C0001")]).outputs
    with pytest.raises(Conflict):  # a second restriction while one is in force
        carried_out("objection", dpo)
    privacy.restriction_lift(request=request, actor=dpo, reason="Accuracy confirmed")
    assert prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)]).outputs
    assert SubjectRestriction.objects.get(request=request).lift_reason == "Accuracy confirmed"


def test_access_counts_what_is_held_and_bundles_it_as_json_and_csv(dataset_version, dpo):
    request = carried_out("access", dpo)
    assert request.receipt["held"]["data.dataset_version"] == 1
    bundle = zipfile.ZipFile(io.BytesIO(privacy.subject_export_bundle(request)))
    assert "data.json" in bundle.namelist() and "data.dataset_version.csv" in bundle.namelist()
    document = json.loads(bundle.read("data.json"))
    rows = document["stores"]["data.dataset_version"]["rows"]
    assert [(row["dataset"], row["version"], row["customer_id"]) for row in rows] == [("loans", 1, SUBJECT)]
    csv_lines = bundle.read("data.dataset_version.csv").decode().splitlines()
    assert csv_lines[0].startswith("dataset,version,customer_id,income,age,city,repaid")
    assert len(csv_lines) == 2


def test_access_to_an_unknown_subject_answers_that_nothing_is_held(db, dpo):
    request = carried_out("access", dpo, subject_id="NOBODY")
    assert (request.receipt, request.outcome) == ({"held": {}, "rows": 0}, "Faro holds no data about you.")


def test_erasure_rewrites_every_version_flags_models_and_carries_holdouts(registered_model, dataset_version, dpo):
    champion = release(train_version(registered_model, dataset_version))
    holdout_before = model_version_holdout_rows(champion)
    position = dataset_version_table(version=dataset_version, columns=["customer_id"]).column(0).to_pylist()
    position = position.index(SUBJECT)
    old_path, old_sha = dataset_version.file_path, dataset_version.sha256

    request = carried_out("erasure", dpo)

    dataset_version.refresh_from_db()
    assert (request.status, request.subject_id, request.contact) == ("completed", "", "")
    assert (dataset_version.row_count, dataset_version.erased_rows) == (299, 1)
    assert dataset_version.sha256 != old_sha and not artefact_path(old_path).exists()
    assert subject_rows(dataset_version) == 0
    assert "C0007" not in json.dumps(dataset_version.statistics)
    rewrite = DatasetVersionRewrite.objects.get(version=dataset_version)
    assert (rewrite.before, rewrite.after, rewrite.positions) == (old_sha, dataset_version.sha256, [position])
    champion.refresh_from_db()
    assert champion.erased_data_at is not None
    carried = model_version_holdout_rows(champion)
    expected = [row - (row > position) for row in holdout_before.tolist() if row != position]
    assert carried.tolist() == expected
    steps = {step.store: step for step in request.erasure_steps.all()}
    assert (steps["data.dataset_version"].count, steps["data.dataset_version"].before) == (1, old_sha)
    assert steps["data.dataset_version"].after == dataset_version.sha256
    stores = {entry["store"]: entry for entry in request.receipt["stores"]}
    assert stores["data.dataset_version"]["removed"] == 1 and request.receipt["removed"] >= 1
    journal = [json.loads(line) for line in privacy.journal_path().read_text().splitlines()]
    assert journal == [
        {"request": request.pk, "digest": subject_digest(SUBJECT), "completed_at": request.completed_at.isoformat()}
    ]
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"dataset_version.rows_erased", "model_version.erased_data_flagged", "subject_request.erased"} <= actions
    assert not AuditEvent.objects.filter(data__icontains=SUBJECT).exists()


def test_a_blocking_policy_refuses_to_serve_a_flagged_version(registered_model, dataset_version, dpo):
    registered_model.erasure_policy = ErasurePolicy.BLOCK
    registered_model.save()
    release(train_version(registered_model, dataset_version))
    carried_out("erasure", dpo)
    with pytest.raises(Unavailable) as blocked:
        prediction_make(model_name="loan-risk", rows=[valid_row()])
    assert blocked.value.message == (
        "loan-risk v1 is blocked: rows it was trained on were erased at a data subject's request, and the "
        "model's erasure policy refuses to serve it. Promote a version trained since."
    )


def test_a_retrain_policy_queues_the_champions_recipe_on_the_rewritten_data(registered_model, dataset_version, dpo):
    registered_model.erasure_policy = ErasurePolicy.RETRAIN
    registered_model.save()
    champion = release(train_version(registered_model, dataset_version))
    carried_out("erasure", dpo)
    retrained = TrainingJob.objects.exclude(model_version=champion).get()
    made_by = TrainingJob.objects.get(model_version=champion)
    assert (retrained.dataset_version_id, retrained.params) == (dataset_version.pk, made_by.params)
    if retrained.model_version is not None:  # eager Celery ran it on commit
        assert retrained.model_version.erased_data_at is None
        assert retrained.model_version.lineage["dataset"]["sha256"] == DatasetVersion.objects.get().sha256


def test_an_erasure_stopped_by_a_failing_store_resumes_where_it_stopped(dataset, csv_upload, dpo, settings):
    from apps.data.services import dataset_version_create_from_upload

    first = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    second = dataset_version_create_from_upload(
        dataset=dataset, upload=csv_upload(name="more.csv"), options={"mode": "append"}
    )
    second_file = artefact_path(second.file_path)
    original = second_file.read_bytes()
    second_file.chmod(0o644)
    second_file.write_bytes(original[:-10] + b"corrupted!")  # the storage fails under the second version

    request = privacy.subject_request_verify(request=received("erasure"), actor=dpo, method="ID card seen")
    privacy.subject_request_carry_out(request=request, actor=dpo)
    with pytest.raises(ArtefactCorrupted, match="does not match its recorded SHA-256"):
        privacy.erasure_run(request_id=request.pk)
    request.refresh_from_db()
    assert request.status == "in_progress" and request.subject_id == SUBJECT
    done = ErasureStep.objects.get(request=request, store="data.dataset_version", target=str(first.pk))
    pending = ErasureStep.objects.get(request=request, store="data.dataset_version", target=str(second.pk))
    assert (done.status, done.count, pending.status, pending.attempts) == ("done", 1, "pending", 1)
    assert subject_rows(first) == 0

    second_file.write_bytes(original)  # repaired
    settings.FARO_JOB_LEASE_SECONDS = 0.0
    assert privacy.erasures_resume() == [request.pk]  # queued: eager Celery runs it at once
    request.refresh_from_db()
    pending.refresh_from_db()
    done_again = ErasureStep.objects.get(pk=done.pk)
    assert (request.status, pending.status, pending.count, pending.attempts) == ("completed", "done", 2, 2)
    assert done_again.attempts == 1  # a done step is never run again
    assert subject_rows(second) == 0


def test_a_step_interrupted_after_its_commit_finishes_with_the_same_result(dataset_version):
    handler = handler_get("data.dataset_version")
    saved: dict = {}
    state = StepState(data={}, save=saved.update)
    first = handler.erase(Subject.of(SUBJECT), str(dataset_version.pk), state)
    old_path = saved["old_path"]
    artefact_path(dataset_version.file_path).parent.mkdir(parents=True, exist_ok=True)
    artefact_path(old_path).write_bytes(b"left behind by a crash")  # as if the process died before removing it
    again = handler.erase(Subject.of(SUBJECT), str(dataset_version.pk), StepState(data=dict(saved), save=saved.update))
    assert (
        (again.count, again.before, again.after)
        == (first.count, first.before, first.after)
        == (
            1,
            dataset_version.sha256,
            DatasetVersion.objects.get().sha256,
        )
    )
    assert not artefact_path(old_path).exists()


def test_gdpr_replay_erases_again_by_digest_after_a_restore(dataset, csv_upload, dpo):
    from apps.data.services import dataset_version_create_from_upload

    dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    carried_out("erasure", dpo)
    # A backup restored from before the erasure brings the rows back: here, the same upload ingested again.
    restored = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    assert subject_rows(restored) == 1
    assert privacy.gdpr_replay(dry_run=True).removed["data.dataset_version"] == 1
    assert subject_rows(restored) == 1
    replay = privacy.gdpr_replay()
    assert (replay.subjects, replay.removed["data.dataset_version"]) == (1, 1)
    assert subject_rows(restored) == 0
    assert AuditEvent.objects.filter(action="subject_request.replayed").count() == 1


def test_overdue_open_requests_are_listed(db):
    late = received("access", received_at=datetime.now(UTC) - timedelta(days=40))
    received("erasure")
    assert [request.pk for request in privacy.open_requests_due()] == [late.pk]


@pytest.mark.django_db(transaction=True)
def test_an_erasure_racing_a_training_job_leaves_no_unflagged_model_on_erased_rows(registered_model, dataset_version):
    import threading

    from django.db import connection

    from apps.registry.services import training_job_run
    from tests.conftest import SMALL_PARAMS

    dpo_user = get_user_model().objects.create_user("dpo-race", password="pw", is_staff=True)
    dpo_user.user_permissions.add(Permission.objects.get(codename="handle_subjectrequest"))
    dpo_user = get_user_model().objects.get(pk=dpo_user.pk)
    job = TrainingJob.objects.create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params={**SMALL_PARAMS, "n_estimators": 300, "early_stopping_rounds": 300},
    )

    def train() -> None:
        try:
            training_job_run(job_id=job.pk)
        finally:
            connection.close()  # the thread's own connection

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        carried_out("erasure", dpo_user)
    finally:
        trainer.join(timeout=120)
    assert not trainer.is_alive()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    version = ModelVersion.objects.get(pk=job.model_version_id)
    current = DatasetVersion.objects.get(pk=dataset_version.pk)
    assert subject_rows(current) == 0
    trained_on_old_rows = version.lineage["dataset"]["sha256"] != current.sha256
    assert (version.erased_data_at is not None) == trained_on_old_rows
    assert len(model_version_holdout_rows(version)) > 0


def test_deadlines_raise_and_resolve_privacy_alerts(db, dpo):
    from apps.monitoring.models import Alert
    from apps.monitoring.services import subject_request_alerts

    now = datetime.now(UTC)
    soon = received("access", received_at=now - timedelta(days=26))
    late = received("erasure", received_at=now - timedelta(days=40))
    received("restriction")  # due in a month: nothing yet
    assert subject_request_alerts(now=now) == 2
    alerts = {alert.key: alert for alert in Alert.objects.all()}
    assert set(alerts) == {f"dsr:{soon.pk}:due-soon", f"dsr:{late.pk}:overdue"}
    assert (alerts[f"dsr:{late.pk}:overdue"].severity, alerts[f"dsr:{soon.pk}:due-soon"].severity) == (
        "critical",
        "warning",
    )
    assert alerts[f"dsr:{late.pk}:overdue"].title == f"Erasure (Art. 17) request {late.pk} is overdue"
    assert subject_request_alerts(now=now) == 0  # a repeat opens nothing new
    privacy.subject_request_refuse(request=late, actor=dpo, reason="Identity could not be established")
    subject_request_alerts(now=now)
    assert Alert.objects.get(key=f"dsr:{late.pk}:overdue").status == "resolved"
    assert Alert.objects.get(key=f"dsr:{soon.pk}:due-soon").status == "open"


def test_the_model_card_says_when_training_rows_were_erased(registered_model, dataset_version, dpo, client):
    version = release(train_version(registered_model, dataset_version))
    carried_out("erasure", dpo)
    admin = get_user_model().objects.create_superuser("card-reader", password="pw")
    client.force_login(admin)
    page = client.get(f"/models/loan-risk/versions/{version.version}/card/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Rows it was trained on have been erased at data subjects' requests since" in text
    assert "the model's policy: Allow until the next retrain: keep serving, flagged." in text


def test_batch_scoring_leaves_a_restricted_persons_row_unscored(
    champion, dataset_version, dpo, django_capture_on_commit_callbacks
):
    from apps.predictions import batch_services
    from apps.predictions.batch import REFUSED_MESSAGE

    carried_out("restriction", dpo)
    with django_capture_on_commit_callbacks(execute=True):
        job = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.problem_count) == ("succeeded", 300, 1)
    assert job.problems == [{"row": 7, "column": "customer_id", "message": REFUSED_MESSAGE}]
    output = pq.read_table(artefact_path(job.output_path)).to_pylist()
    assert output[7]["customer_id"] == SUBJECT and output[7]["label"] is None
    assert output[8]["label"] in ("yes", "no")


def test_no_decision_is_made_about_a_person_while_their_erasure_is_in_progress(champion, dpo):
    request = privacy.subject_request_verify(request=received("erasure"), actor=dpo, method="ID card seen")
    privacy.subject_request_carry_out(request=request, actor=dpo)  # planned; the worker has not run it yet
    with pytest.raises(Conflict):
        prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)])
    privacy.erasure_run(request_id=request.pk)
    assert prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)]).outputs
