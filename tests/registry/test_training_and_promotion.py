import threading
from itertools import pairwise

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from apps.core.errors import InvalidInput
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.governance.models import AuditEvent
from apps.governance.services import audit_verify
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, TrainingJob
from apps.registry.services import (
    model_alias_rollback,
    model_version_approve,
    model_version_promote,
    training_job_create,
    training_job_run,
)
from apps.registry.tasks import training_job_run as training_job_run_task
from tests.conftest import SMALL_PARAMS, train_version


def run_in_threads(*targets):
    """Start the targets together and wait; each thread closes its own database connection."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(target):
        try:
            barrier.wait(timeout=10)
            target()
        except Exception as exc:  # surfaced to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_training_registers_a_version_with_lineage(registered_model, dataset_version):
    version = train_version(registered_model, dataset_version)
    job = version.training_job
    assert (job.status, job.progress, version.version) == ("succeeded", 1.0, 1)
    assert job.started_at <= job.finished_at
    assert version.dataset_version == dataset_version
    assert version.labels == ["no", "yes"]
    assert set(version.metrics) == {"auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier", "rows"}
    assert version.metrics["rows"] == {"train": 192, "validation": 48, "test": 60, "dropped_without_target": 0}
    assert [item["name"] for item in version.signature["inputs"]] == ["income", "age", "city"]
    assert version.signature["inputs"][2]["categories"] == ["east", "north", "south"]
    assert version.artefact_path == f"models/{version.artefact_sha256}.ubj"
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions[-5:] == [
        "training_job.created",
        "training_job.started",
        "model_version.registered",
        "training_job.succeeded",
        "model_version.gates_evaluated",
    ]


def test_same_data_and_seed_give_the_same_artefact(registered_model, dataset_version):
    first = train_version(registered_model, dataset_version)
    second = train_version(registered_model, dataset_version)
    assert first.version != second.version
    assert first.artefact_sha256 == second.artefact_sha256


def test_a_task_delivered_twice_trains_once(registered_model, dataset_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job = training_job_create(
            registered_model=registered_model, dataset_version=dataset_version, params=SMALL_PARAMS
        )
    training_job_run_task.apply(args=[job.pk])
    training_job_run_task.apply(args=[job.pk])
    assert ModelVersion.objects.filter(registered_model=registered_model).count() == 1
    assert AuditEvent.objects.filter(action="training_job.started").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_register_at_most_one_version(csv_upload):
    from apps.registry.services import registered_model_create

    dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
    dataset_version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    model = registered_model_create(name="loan-risk")
    job = TrainingJob.objects.create(registered_model=model, dataset_version=dataset_version, params=SMALL_PARAMS)
    results = []
    errors = run_in_threads(*[lambda: results.append(training_job_run(job_id=job.pk))] * 2)
    assert errors == []
    assert sorted(result is None for result in results) == [False, True]
    assert ModelVersion.objects.count() == 1
    assert TrainingJob.objects.get(pk=job.pk).status == "succeeded"


def test_data_that_cannot_train_is_refused_when_the_job_is_submitted(registered_model, csv_upload):
    dataset = dataset_create(name="single-class", target_column="repaid", subject_key_column="customer_id")
    rows = "customer_id,income,repaid\n" + "".join(f"C{i},{i},yes\n" for i in range(50))
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(rows.encode()))
    with pytest.raises(InvalidInput) as refused:
        training_job_create(registered_model=registered_model, dataset_version=version, params=SMALL_PARAMS)
    assert refused.value.message == (
        "single-class v1 cannot train this model: The target column 'repaid' has a single class; "
        "classification needs two."
    )
    assert refused.value.extra == {
        "problems": ["The target column 'repaid' has a single class; classification needs two."]
    }
    assert not TrainingJob.objects.exists()
    assert ModelVersion.objects.count() == 0


def test_a_job_that_fails_at_run_time_says_why(registered_model, dataset_version):
    """A job whose data changed under it (here: its stored file no longer matches its checksum) fails with the
    reason, audited, and registers nothing."""
    from apps.core.artefacts import artefact_path

    job = training_job_create(registered_model=registered_model, dataset_version=dataset_version, params=SMALL_PARAMS)
    TrainingJob.objects.filter(pk=job.pk).update(status="queued")
    path = artefact_path(dataset_version.file_path)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    assert training_job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith(f"Artefact {dataset_version.file_path} does not match its recorded SHA-256")
    assert job.finished_at is not None
    assert ModelVersion.objects.count() == 0
    assert AuditEvent.objects.filter(action="training_job.failed").count() == 1


def test_promote_and_roll_back_keep_a_history(registered_model, dataset_version, users):
    v1, v2, v3 = (train_version(registered_model, dataset_version) for _ in range(3))
    for version in (v1, v2, v3):
        model_version_approve(version=version, actor=users["pm"])
        model_version_promote(version=version, actor=users["pm"])
    assert ModelAlias.objects.get(name="champion").version == v3
    assert model_alias_rollback(registered_model=registered_model, actor=users["pm"]).version == v2
    assert model_alias_rollback(registered_model=registered_model, actor=users["pm"]).version == v1
    history = list(
        AliasChange.objects.order_by("id").values_list("kind", "from_version__version", "to_version__version", "actor")
    )
    actor = f"user:{users['pm'].pk}"
    assert history == [
        ("promote", None, 1, actor),
        ("promote", 1, 2, actor),
        ("promote", 2, 3, actor),
        ("rollback", 3, 2, actor),
        ("rollback", 2, 1, actor),
    ]
    assert audit_verify().ok


def test_promoting_the_current_champion_changes_nothing(champion):
    before = AuditEvent.objects.count()
    model_version_promote(version=champion)
    assert AuditEvent.objects.count() == before
    assert AliasChange.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_leave_exactly_one_champion(csv_upload):
    from apps.registry.services import registered_model_create

    dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
    dataset_version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    model = registered_model_create(name="loan-risk")
    checker = get_user_model().objects.create_user("checker", is_staff=True)
    v1, v2 = (model_version_approve(version=train_version(model, dataset_version), actor=checker) for _ in range(2))
    for _ in range(3):
        errors = run_in_threads(lambda: model_version_promote(version=v1), lambda: model_version_promote(version=v2))
        assert errors == []
        assert ModelAlias.objects.filter(registered_model=model, name="champion").count() == 1
        changes = list(AliasChange.objects.order_by("id"))
        for previous, change in pairwise(changes):
            assert change.from_version_id == previous.to_version_id
        assert ModelAlias.objects.get(name="champion").version_id == changes[-1].to_version_id
    # One audit event per alias move, none for a promotion that changed nothing.
    assert AuditEvent.objects.filter(action="model.promoted").count() == AliasChange.objects.count()
    assert audit_verify().ok
