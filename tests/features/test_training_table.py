import pytest
from django.core.management import CommandError, call_command

from apps.data.models import DatasetVersion
from apps.data.selectors import dataset_version_table
from apps.data.services import dataset_create, dataset_version_create_from_upload

LABELS = (
    b"customer_id,decided_at,repaid\nC1,2024-03-01T12:00:00,yes\nC2,2024-03-01T12:00:00,no\nC1,2024-01-01T00:00:00,no\n"
)
# The trap: each "outcome_score" is written one second after the decision it would reveal.
FEATURES = (
    b"customer_id,updated_at,balance,outcome_score\n"
    b"C1,2024-02-01T00:00:00,100.0,0\n"
    b"C1,2024-03-01T12:00:01,999.0,1\n"
    b"C2,2024-01-15T00:00:00,50.0,0\n"
    b"C2,2024-03-01T12:00:01,0.0,-1\n"
)


@pytest.fixture
def versions(db, csv_upload):
    labels = dataset_create(name="decisions", target_column="repaid", subject_key_column="customer_id")
    features = dataset_create(name="balances", subject_key_column="customer_id")
    into = dataset_create(name="training", target_column="repaid", subject_key_column="customer_id")
    return (
        dataset_version_create_from_upload(dataset=labels, upload=csv_upload(LABELS, name="labels.csv")),
        dataset_version_create_from_upload(dataset=features, upload=csv_upload(FEATURES, name="features.csv")),
        into,
    )


def test_the_training_table_holds_only_values_known_at_each_decision(versions, capsys):
    call_command(
        "training_table_build",
        "--labels",
        "decisions",
        "--features",
        "balances:1",
        "--entity",
        "customer_id",
        "--label-time",
        "decided_at",
        "--feature-time",
        "updated_at",
        "--into",
        "training",
    )
    version = DatasetVersion.objects.get(dataset__name="training")
    assert capsys.readouterr().out == f"training v1: 3 rows, SHA-256 {version.sha256}\n"
    rows = dataset_version_table(version=version).to_pylist()
    assert [(row["customer_id"], row["repaid"], row["balance"], row["outcome_score"]) for row in rows] == [
        ("C1", "yes", 100.0, 0),
        ("C2", "no", 50.0, 0),
        ("C1", "no", None, None),  # before any feature row: nothing was known yet
    ]


def test_a_ttl_drops_stale_values(versions):
    call_command(
        "training_table_build",
        "--labels",
        "decisions",
        "--features",
        "balances",
        "--entity",
        "customer_id",
        "--label-time",
        "decided_at",
        "--feature-time",
        "updated_at",
        "--into",
        "training",
        "--ttl-seconds",
        str(35 * 24 * 3600),
    )
    rows = dataset_version_table(version=DatasetVersion.objects.get(dataset__name="training")).to_pylist()
    assert [row["balance"] for row in rows] == [100.0, None, None]  # C2's value was 46 days old


def test_a_wrong_column_is_named(versions):
    with pytest.raises(CommandError, match="The training table cannot be built"):
        call_command(
            "training_table_build",
            "--labels",
            "decisions",
            "--features",
            "balances",
            "--entity",
            "customer_id",
            "--label-time",
            "nope",
            "--feature-time",
            "updated_at",
            "--into",
            "training",
        )
    assert not DatasetVersion.objects.filter(dataset__name="training").exists()
