import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.conf import settings

from apps.core.errors import InvalidInput
from apps.data.models import DatasetVersion
from apps.data.selectors import dataset_version_table
from apps.data.services import dataset_version_create_from_upload
from apps.governance.models import AuditEvent
from tests.conftest import generated_csv


def stored_dataset_files() -> set[str]:
    folder = Path(settings.FARO_ARTEFACT_ROOT) / "datasets"
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def test_upload_becomes_an_immutable_parquet_version(dataset, csv_upload):
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    path = Path(settings.FARO_ARTEFACT_ROOT) / version.file_path
    assert version.file_path == f"datasets/{version.sha256}.parquet"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256
    assert version.original_sha256 == hashlib.sha256(generated_csv()).hexdigest()
    assert (version.number, version.row_count, version.original_name) == (1, 300, "loans.csv")
    assert version.schema == [
        {"name": "customer_id", "type": "string", "nullable": False},
        {"name": "income", "type": "float", "nullable": False},
        {"name": "age", "type": "integer", "nullable": False},
        {"name": "city", "type": "string", "nullable": False},
        {"name": "repaid", "type": "string", "nullable": False},
    ]
    assert pq.read_metadata(path).row_group(0).column(0).compression == "ZSTD"
    assert version.statistics["city"]["distinct"] == 3
    assert version.statistics["age"]["min"] >= 18 and version.statistics["age"]["max"] <= 80
    assert dataset_version_table(version=version).num_rows == 300
    assert AuditEvent.objects.filter(action="dataset_version.created").count() == 1


def test_second_upload_is_version_two(dataset, csv_upload):
    first = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    second = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(generated_csv(seed=8)))
    assert (first.number, second.number) == (1, 2)
    assert first.sha256 != second.sha256


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "a.csv", "The file is empty."),
        (b"customer_id,income,repaid\n", "a.csv", "The file has a header but no data rows."),
        (b"customer_id,income,income,repaid\nC1,1,2,yes\n", "a.csv", "The header row has problems."),
        (b"customer_id,,repaid\nC1,1,yes\n", "a.csv", "The header row has problems."),
        (b"customer_id,income,repaid\nC1,1,yes\nC2,2\n", "a.csv", "The CSV could not be parsed"),
        (b"customer_id,income\nC1,1\n", "a.csv", "The file does not match the dataset's declaration."),
        (b"customer_id,income,repaid\n,1,yes\n", "a.csv", "The file does not match the dataset's declaration."),
        (b"customer_id,income,repaid\nC1,\xff\xfe,yes\n", "a.csv", "The file is not UTF-8"),
        (b"customer_id,income,repaid\nC1,1,yes\n", "a.parquet", "a.parquet is not a .csv file"),
    ],
)
def test_bad_uploads_leave_no_version_and_no_file(dataset, csv_upload, content, name, message):
    files_before = stored_dataset_files()
    with pytest.raises(InvalidInput) as raised:
        dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(content, name=name))
    assert raised.value.message.startswith(message)
    assert DatasetVersion.objects.count() == 0
    assert stored_dataset_files() == files_before
    assert not any(name.startswith(".incoming") for name in stored_dataset_files())


def test_problems_name_the_row_and_column(dataset, csv_upload):
    with pytest.raises(InvalidInput) as raised:
        dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(b"customer_id,income,income\nC1,1,2\n"))
    assert raised.value.extra == {
        "problems": [{"row": 1, "column": 3, "message": "duplicate column name 'income' (also column 2)"}]
    }
    with pytest.raises(InvalidInput) as raised:
        dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(b"customer_id,income\nC1,1\n"))
    assert raised.value.extra == {
        "problems": [{"column": "repaid", "message": "the dataset's target column 'repaid' is not in the file"}]
    }


def test_the_demo_data_ingests_with_its_subject_key(db, demo_csv, csv_upload):
    from apps.data.services import dataset_create

    dataset = dataset_create(name="german-credit", target_column="creditability", subject_key_column="applicant_id")
    version = dataset_version_create_from_upload(
        dataset=dataset, upload=csv_upload(demo_csv.read_bytes(), name="german_credit.csv")
    )
    assert version.row_count == 1000
    assert version.statistics["applicant_id"]["distinct"] == 1000
    assert version.statistics["creditability"]["top"] == [
        {"value": "good", "count": 700},
        {"value": "bad", "count": 300},
    ]
