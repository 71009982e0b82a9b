"""The personal-data handlers of the online store, the decision log, batch outputs, review cases and earlier
data-subject requests: what each finds and exports about a subject, that erasure removes exactly the subject's data
(by key, and by digest alone as `gdpr_replay` does), and that a step run again reports the same result."""

import datetime as dt
import hashlib
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.artefacts import artefact_path, sha256_file
from apps.core.personal_data import StepResult, StepState, Subject, handler_get, handlers, rows_digest
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.features import online
from apps.features.models import OnlineFeatureRow
from apps.governance import privacy
from apps.governance.models import AuditEvent, DataSubjectRequest, ReviewRequest
from apps.governance.services import review_request_create, review_request_decide, review_request_take
from apps.predictions import batch_services
from apps.predictions.models import BatchScoringJob, PredictionRecord
from apps.predictions.services import feedback_record, prediction_make
from apps.predictions.shadow import ShadowRequest, shadow_score
from tests.conftest import generated_csv, train_version, valid_row
from tests.features.test_online_store import _redis_url, generated_rows

SUBJECT, OTHER = "C0007", "C0008"
AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
EMPTY = rows_digest([])


class Ledger:
    """One ledger step's saved state, kept as privacy._step_run keeps it: what `save` stored, a re-run finds."""

    def __init__(self) -> None:
        self.data: dict = {}

    def state(self) -> StepState:
        return StepState(data=dict(self.data), save=self._save)

    def _save(self, data: dict) -> None:
        self.data = dict(data)


def replay_state() -> StepState:
    """What gdpr_replay passes: nothing saved, nothing kept."""
    return StepState(data={}, save=lambda data: None)


def by_digest(subject_id: str = SUBJECT) -> Subject:
    return Subject(digest=Subject.of(subject_id).digest)


def test_every_store_is_registered_in_order():
    assert [(h.store, h.order) for h in handlers() if h.order >= 20] == [
        ("features.online", 20),
        ("predictions.decision_log", 30),
        ("predictions.batch_output", 40),
        ("governance.review_case", 50),
        ("governance.subject_request", 90),
    ]


# -- the online store -------------------------------------------------------------------------------------


@pytest.fixture(params=["database", "redis"])
def online_version(request, settings, db):
    """A dataset of its own (so no other run's Redis keys meet it), in the store the settings name."""
    settings.FARO_ONLINE_STORE = request.param
    if request.param == "redis":
        settings.REDIS_URL = _redis_url(settings)
    dataset = dataset_create(
        name=f"erase-{uuid.uuid4().hex[:10]}", target_column="repaid", subject_key_column="customer_id"
    )
    upload = SimpleUploadedFile("loans.csv", generated_csv(), content_type="text/csv")
    yield dataset_version_create_from_upload(dataset=dataset, upload=upload)
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=f"{online.REDIS_PREFIX}:{dataset.name}:*", count=1000))
        if keys:
            client.delete(*keys)


def materialised(version) -> None:
    online.materialise(
        path=artefact_path(version.file_path),
        dataset=version.dataset,
        dataset_version=version,
        key_column="customer_id",
        timestamp_column="",
        store=online.store_for_settings(),
        materialised_at=AT,
    )


def test_online_features_are_exported_and_erased_by_key_and_by_digest(online_version, settings):
    dataset, store = online_version.dataset, online.store_for_settings()
    dataset_create(name=f"keyless-{uuid.uuid4().hex[:8]}", target_column="repaid")  # no subject key: no target
    materialised(online_version)
    everyone = sorted(generated_rows())
    assert sorted(set(store.entity_ids(dataset))) == everyone
    held = 1
    if settings.FARO_ONLINE_STORE == "redis":  # rows left in the table from before a switch to Redis are found too
        online.DatabaseStore().write(
            dataset=dataset,
            dataset_version=online_version,
            rows=[online.EntityRow(SUBJECT, {"customer_id": SUBJECT, "income": 1.0}, None)],
            materialised_at=AT,
        )
        held = 2
    handler, subject, target = handler_get("features.online"), Subject.of(SUBJECT), str(dataset.pk)
    assert handler.targets(subject) == [target]

    exported = handler.export(subject)
    expected = {
        "dataset": dataset.name,
        "store": settings.FARO_ONLINE_STORE,
        "entity_id": SUBJECT,
        "values": generated_rows()[SUBJECT],
        "event_time": None,
        "materialised_at": AT.isoformat(),
    }
    assert exported[-1] == expected and len(exported) == held
    assert handler.export(by_digest()) == exported

    ledger = Ledger()
    result = handler.erase(subject, target, ledger.state())
    assert result == StepResult(
        count=held, before=rows_digest([SUBJECT]), after=EMPTY, detail={"dataset": dataset.name}
    )
    assert store.get_many(dataset, [SUBJECT, OTHER]).keys() == {OTHER}
    assert sorted(set(store.entity_ids(dataset))) == [key for key in everyone if key != SUBJECT]
    assert not OnlineFeatureRow.objects.filter(entity_id=SUBJECT).exists()
    assert handler.export(subject) == []
    assert handler.erase(subject, target, ledger.state()) == result  # a re-run reports what the step did
    assert handler.erase(subject, target, replay_state()) == StepResult(
        count=0, before=EMPTY, after=EMPTY, detail={"dataset": dataset.name}
    )

    materialised(online_version)  # a restore brought the entity back: the digest alone finds it
    assert handler.erase(by_digest(), target, replay_state()) == StepResult(
        count=1, before=rows_digest([SUBJECT]), after=EMPTY, detail={"dataset": dataset.name}
    )
    assert sorted(set(store.entity_ids(dataset))) == [key for key in everyone if key != SUBJECT]


# -- the decision log ------------------------------------------------------------------------------------


def decision_keys(records) -> list[str]:
    return [f"{r.request_id}#{r.row}#{r.model_version_id}" for r in records]


def test_decisions_on_every_route_with_their_feedback_are_exported_and_erased(
    champion, registered_model, dataset_version
):
    rows = [valid_row(customer_id=SUBJECT), valid_row(customer_id=OTHER, city="east")]
    first = prediction_make(model_name="loan-risk", rows=rows, explain=True)
    shadow = train_version(registered_model, dataset_version, max_depth=2)
    shadow_score(
        ShadowRequest(
            model_name="loan-risk",
            versions=(shadow.version,),
            request_id=uuid.UUID(first.request_id),
            rows=rows,
            subject_ids=[SUBJECT, OTHER],
            channel="api",
            client="token:1",
        )
    )
    second = prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT, income=1200.0)])
    feedback_record(request_id=uuid.UUID(second.request_id), actuals=["no"], actor=None)
    prediction_make(model_name="loan-risk", rows=[valid_row()])  # nobody's
    mine = list(PredictionRecord.objects.filter(subject_id=SUBJECT).order_by("created_at", "request_id", "row"))
    assert [(r.route, r.model_version_id) for r in mine] == [
        ("champion", champion.pk),
        ("shadow", shadow.pk),
        ("champion", champion.pk),
    ]
    handler, subject = handler_get("predictions.decision_log"), Subject.of(SUBJECT)
    assert handler.targets(subject) == ["all"]

    exported = handler.export(subject)
    assert [(row["request_id"], row["route"], row["model_version"], row["actual"]) for row in exported] == [
        (first.request_id, "champion", champion.version, None),
        (first.request_id, "shadow", shadow.version, None),
        (second.request_id, "champion", champion.version, "no"),
    ]
    record = mine[2]
    assert exported[2] == {
        "request_id": second.request_id,
        "row": 0,
        "created_at": record.created_at.isoformat(),
        "model": "loan-risk",
        "model_version": champion.version,
        "route": "champion",
        "channel": "api",
        "inputs": record.inputs,
        "output": second.outputs[0],
        "explanation": None,
        "actual": "no",
        "actual_at": record.actual_at.isoformat(),
    }
    assert exported[0]["explanation"] == mine[0].explanation and exported[0]["explanation"]
    assert handler.export(by_digest()) == exported

    ledger = Ledger()
    result = handler.erase(subject, "all", ledger.state())
    assert result == StepResult(
        count=3, before=rows_digest(decision_keys(mine)), after=EMPTY, detail={"decisions": 3, "with_feedback": 1}
    )
    assert sorted(PredictionRecord.objects.values_list("subject_id", "route")) == [
        ("", "champion"),
        (OTHER, "champion"),
        (OTHER, "shadow"),
    ]
    assert handler.export(subject) == []
    assert handler.erase(subject, "all", ledger.state()) == result
    assert handler.erase(subject, "all", replay_state()) == StepResult(
        count=0, before=EMPTY, after=EMPTY, detail={"decisions": 0, "with_feedback": 0}
    )

    again = prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)])  # back from a backup
    key = f"{again.request_id}#0#{champion.pk}"
    assert handler.erase(by_digest(), "all", replay_state()) == StepResult(
        count=1, before=rows_digest([key]), after=EMPTY, detail={"decisions": 1, "with_feedback": 0}
    )
    assert PredictionRecord.objects.count() == 3


# -- batch outputs ----------------------------------------------------------------------------------------


def run_job(capture, **kwargs) -> BatchScoringJob:
    with capture(execute=True):
        job = batch_services.batch_job_create(**kwargs)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


def output_table(job: BatchScoringJob) -> pa.Table:
    path = artefact_path(job.output_path)
    if job.output_format == "parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"customer_id": pa.string()}))


def without(table: pa.Table, subject_id: str) -> pa.Table:
    return table.filter(pc.invert(pc.equal(table.column(0), subject_id)))


def upload(content: bytes, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_batch_outputs_are_rewritten_without_the_subject(
    champion, dataset_version, django_capture_on_commit_callbacks, output_format
):
    capture = django_capture_on_commit_callbacks
    job = run_job(capture, model_version=champion, dataset_version=dataset_version, output_format=output_format)
    twin = run_job(capture, model_version=champion, dataset_version=dataset_version, output_format=output_format)
    numbered = run_job(  # its input lacks the subject key: rows are numbered, and nobody is found in it
        capture,
        model_version=champion,
        upload=upload(b"income,age,city\n5200.5,41,north\n"),
        output_format=output_format,
    )
    assert twin.output_path == job.output_path  # the same bytes, stored once
    old_path, old_sha = job.output_path, job.output_sha256
    original = output_table(job)
    original_bytes = artefact_path(old_path).read_bytes()
    handler, subject = handler_get("predictions.batch_output"), Subject.of(SUBJECT)
    assert handler.targets(subject) == [str(job.pk), str(twin.pk)]

    mine = original.filter(pc.equal(original.column(0), SUBJECT)).to_pylist()
    assert len(mine) == 1
    exported = handler.export(subject)
    assert exported == [
        {
            "job": each.pk,
            "model": "loan-risk",
            "model_version": champion.version,
            "finished_at": each.finished_at.isoformat(),
            **mine[0],
        }
        for each in (job, twin)
    ]
    assert handler.export(by_digest()) == exported

    ledger = Ledger()
    result = handler.erase(subject, str(job.pk), ledger.state())
    job.refresh_from_db()
    assert result == StepResult(
        count=1, before=old_sha, after=job.output_sha256, detail={"job": job.pk, "rows": 1, "problems_changed": 0}
    )
    assert job.output_sha256 == sha256_file(artefact_path(job.output_path)) != old_sha
    assert (job.rows_total, job.rows_done, job.problem_count) == (299, 299, 0)
    assert output_table(job).equals(without(original, SUBJECT))
    if output_format == "csv":  # every other record is kept byte for byte
        lines = original_bytes.decode().splitlines(keepends=True)
        assert artefact_path(job.output_path).read_text() == "".join(x for x in lines if f'"{SUBJECT}"' not in x)
    assert artefact_path(old_path).exists()  # the twin job still has it
    path, _name, _type = batch_services.batch_job_download(job=job)
    assert path == artefact_path(job.output_path)
    assert handler.erase(subject, str(job.pk), ledger.state()) == result
    assert handler.erase(subject, str(job.pk), replay_state()) == StepResult(
        count=0, before=job.output_sha256, after=job.output_sha256, detail={"job": job.pk}
    )

    by_key = handler.erase(by_digest(), str(twin.pk), replay_state())
    twin.refresh_from_db()
    assert by_key == StepResult(
        count=1, before=old_sha, after=job.output_sha256, detail={"job": twin.pk, "rows": 1, "problems_changed": 0}
    )
    assert (twin.output_path, twin.rows_done) == (job.output_path, 299)
    assert not artefact_path(old_path).exists()  # no job has it any more
    assert handler.export(subject) == []
    numbered_before = numbered.output_sha256
    numbered.refresh_from_db()
    assert numbered.output_sha256 == numbered_before
    erased = AuditEvent.objects.filter(action="batch_job.rows_erased").order_by("seq")
    assert [(e.object_id, e.data["before"], e.data["after"]) for e in erased] == [
        (str(job.pk), old_sha, job.output_sha256),
        (str(twin.pk), old_sha, job.output_sha256),
    ]
    assert not AuditEvent.objects.filter(data__icontains=SUBJECT).exists()


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_a_subjects_problem_rows_and_spreadsheet_quoted_keys_are_erased(
    champion, django_capture_on_commit_callbacks, output_format
):
    content = b"customer_id,income,age,city\nC0007,abc,41,north\n@C8,5000,30,south\nC0009,6000,50,east\n"
    job = run_job(
        django_capture_on_commit_callbacks, model_version=champion, upload=upload(content), output_format=output_format
    )
    assert (job.problems, job.problem_count) == (
        [{"row": 0, "column": "income", "message": "must be a finite number, not 'abc'"}],
        1,
    )
    handler = handler_get("predictions.batch_output")
    assert handler.targets(Subject.of(SUBJECT)) == [str(job.pk)]
    quoted = "'@C8" if output_format == "csv" else "@C8"  # CSV text that a spreadsheet would run gets a quote
    assert [row["customer_id"] for row in handler.export(Subject.of("@C8"))] == [quoted]
    assert handler.export(by_digest("@C8")) == handler.export(Subject.of("@C8"))

    first = handler.erase(Subject.of(SUBJECT), str(job.pk), Ledger().state())
    job.refresh_from_db()
    assert (first.count, first.detail) == (1, {"job": job.pk, "rows": 1, "problems_changed": 1})
    assert (job.problems, job.problem_count, job.rows_done) == ([], 0, 2)
    second = handler.erase(by_digest("@C8"), str(job.pk), replay_state())
    job.refresh_from_db()
    assert (second.count, second.before, second.after) == (1, first.after, job.output_sha256)
    assert output_table(job).column(0).to_pylist() == ["C0009"]
    assert job.rows_done == 1


def test_an_upload_left_behind_by_an_ended_job_is_removed(champion, django_capture_on_commit_callbacks):
    content = b"customer_id,income,age,city\nC0007,5200.5,41,north\n"
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, upload=upload(content))
    left = artefact_path(job.input_path)
    assert not left.exists()  # uploads are removed when their job ends
    left.write_bytes(content)  # ... unless the worker stopped in between
    handler, subject, target = handler_get("predictions.batch_output"), Subject.of(SUBJECT), f"input:{job.pk}"
    assert handler.targets(subject) == [str(job.pk), target]

    ledger = Ledger()
    result = handler.erase(subject, target, ledger.state())
    assert result == StepResult(
        count=1,
        before=hashlib.sha256(content).hexdigest(),
        after="",
        detail={"job": job.pk, "leftover_upload_removed": True},
    )
    assert not left.exists()
    assert handler.erase(subject, target, ledger.state()) == result
    assert handler.erase(subject, target, replay_state()).count == 0
    assert handler.targets(subject) == [str(job.pk)]


# -- review cases ------------------------------------------------------------------------------------------


def reviewer():
    user = get_user_model().objects.create_user("reviewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="review_decision"))
    return get_user_model().objects.get(pk=user.pk)


def case(subject_id: str, *, reason: str = "", contact: str = "") -> ReviewRequest:
    return review_request_create(
        request_id=uuid.uuid4(),
        model_name="loan-risk",
        model_version=1,
        subject_id=subject_id,
        reason=reason,
        contact=contact,
        decision={"output": {"label": "no"}, "inputs": {"city": "north"}},
    )[0]


def test_review_cases_are_exported_and_deleted(db):
    decided = case(SUBJECT, reason="My income is higher now.", contact="ann@example.org")
    user = reviewer()
    review_request_take(review=decided, actor=user)
    decided = review_request_decide(review=decided, actor=user, outcome="upheld", note="Checked again.")
    open_case = case(SUBJECT)
    others = case(OTHER, contact="bob@example.org")
    handler, subject = handler_get("governance.review_case"), Subject.of(SUBJECT)
    assert handler.targets(subject) == ["all"]

    exported = handler.export(subject)
    assert exported[0] == {
        "request_id": str(decided.request_id),
        "model": "loan-risk",
        "model_version": 1,
        "status": "upheld",
        "reason": "My income is higher now.",
        "contact": "ann@example.org",
        "asked_at": decided.created_at.isoformat(),
        "taken_at": decided.taken_at.isoformat(),
        "decided_at": decided.decided_at.isoformat(),
        "outcome_note": "Checked again.",
        "changed_outcome": "",
        "decision": {"output": {"label": "no"}, "inputs": {"city": "north"}},
    }
    assert [row["request_id"] for row in exported] == [str(decided.request_id), str(open_case.request_id)]
    assert handler.export(by_digest()) == exported

    ledger = Ledger()
    result = handler.erase(subject, "all", ledger.state())
    assert result == StepResult(
        count=2,
        before=rows_digest([str(decided.request_id), str(open_case.request_id)]),
        after=EMPTY,
        detail={"cases": 2},
    )
    assert list(ReviewRequest.objects.values_list("pk", flat=True)) == [others.pk]
    assert handler.erase(subject, "all", ledger.state()) == result
    assert handler.erase(subject, "all", replay_state()).count == 0

    restored = case(SUBJECT)
    assert handler.erase(by_digest(), "all", replay_state()) == StepResult(
        count=1, before=rows_digest([str(restored.request_id)]), after=EMPTY, detail={"cases": 1}
    )
    assert list(ReviewRequest.objects.values_list("pk", flat=True)) == [others.pk]


# -- earlier data-subject requests ------------------------------------------------------------------------


def received(kind: str, subject_id: str = SUBJECT) -> DataSubjectRequest:
    return privacy.subject_request_create(
        kind=kind, subject_id=subject_id, contact=f"{subject_id}@example.org", details="Please."
    )[0]


def verified(kind: str, dpo, subject_id: str = SUBJECT) -> DataSubjectRequest:
    return privacy.subject_request_verify(request=received(kind, subject_id), actor=dpo, method="ID card seen")


def held(pk: int) -> tuple[str, str, str]:
    return DataSubjectRequest.objects.filter(pk=pk).values_list("subject_id", "contact", "details").get()


def test_closed_requests_are_exported_and_forget_the_key_and_contact(dpo):
    access = privacy.subject_request_carry_out(request=verified("access", dpo), actor=dpo)
    objection = privacy.subject_request_refuse(request=received("objection"), actor=dpo, reason="Not the person.")
    erasure = privacy.subject_request_carry_out(request=verified("erasure", dpo), actor=dpo)  # being carried out
    restriction = received("restriction")  # open: still being answered
    others = privacy.subject_request_carry_out(request=verified("access", dpo, OTHER), actor=dpo)
    assert erasure.status == "in_progress"
    handler, subject = handler_get("governance.subject_request"), Subject.of(SUBJECT)
    assert handler.targets(subject) == ["all"]

    exported = handler.export(subject)
    assert exported == [
        {
            "request": request.pk,
            "kind": request.kind,
            "status": request.status,
            "received_at": request.received_at.isoformat(),
            "due_at": request.due_at.isoformat(),
            "completed_at": request.completed_at.isoformat(),
            "outcome": request.outcome,
        }
        for request in (access, objection)
    ]
    assert exported[1]["outcome"] == "Not the person."
    assert handler.export(by_digest()) == exported

    ledger = Ledger()
    result = handler.erase(subject, "all", ledger.state())
    assert result == StepResult(
        count=2, before=rows_digest([access.pk, objection.pk]), after=EMPTY, detail={"requests": 2}
    )
    assert held(access.pk) == held(objection.pk) == ("", "", "")
    assert held(erasure.pk) == held(restriction.pk) == (SUBJECT, f"{SUBJECT}@example.org", "Please.")
    assert held(others.pk) == (OTHER, f"{OTHER}@example.org", "Please.")
    assert handler.export(subject) == exported  # what was asked and answered stays; the key and contact go
    assert handler.erase(subject, "all", ledger.state()) == result
    assert handler.erase(subject, "all", replay_state()).count == 0

    privacy.subject_request_refuse(request=restriction, actor=dpo, reason="Withdrawn.")
    assert handler.erase(by_digest(), "all", replay_state()) == StepResult(
        count=1, before=rows_digest([restriction.pk]), after=EMPTY, detail={"requests": 1}
    )
    assert held(restriction.pk) == ("", "", "")
    assert held(erasure.pk)[0] == SUBJECT


# -- all of them, through an erasure request ---------------------------------------------------------------


def test_an_erasure_request_reaches_every_store(
    champion, dataset_version, settings, dpo, django_capture_on_commit_callbacks
):
    settings.FARO_ONLINE_STORE = "database"  # "loans" in a shared Redis could be another run's
    materialised(dataset_version)
    decision = prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)])
    prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=OTHER)])
    review_request_create(
        request_id=decision.request_id, model_name="loan-risk", model_version=1, subject_id=SUBJECT, decision={}
    )
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, dataset_version=dataset_version)
    earlier = privacy.subject_request_carry_out(request=verified("access", dpo), actor=dpo)

    request = privacy.subject_request_carry_out(request=verified("erasure", dpo), actor=dpo)
    privacy.erasure_run(request_id=request.pk)
    request.refresh_from_db()

    assert request.status == "completed"
    removed = {(entry["store"], entry["target"]): entry["removed"] for entry in request.receipt["stores"]}
    assert {key: count for key, count in removed.items() if count} == {
        ("data.dataset_version", str(dataset_version.pk)): 1,
        ("features.online", str(dataset_version.dataset_id)): 1,
        ("predictions.decision_log", "all"): 1,
        ("predictions.batch_output", str(job.pk)): 1,
        ("governance.review_case", "all"): 1,
        ("governance.subject_request", "all"): 1,
    }
    subject = Subject.of(SUBJECT)
    left = {h.store: h.export(subject) for h in handlers() if h.store != "governance.subject_request"}
    assert left == {store: [] for store in left}
    assert held(earlier.pk) == held(request.pk) == ("", "", "")
    assert PredictionRecord.objects.get().subject_id == OTHER
    assert online.DatabaseStore().get_many(dataset_version.dataset, [SUBJECT, OTHER]).keys() == {OTHER}
