import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from prometheus_client import REGISTRY

from apps.core.errors import InvalidInput
from apps.data.models import DatasetVersion, IngestJob
from apps.data.selectors import dataset_version_table
from apps.data.services import (
    dataset_check_create,
    dataset_create,
    dataset_version_create_from_upload,
    dataset_version_export,
    ingest_job_create,
)
from apps.governance.models import AuditEvent
from tests.conftest import generated_csv


def stored_files(kind: str = "datasets") -> set[str]:
    folder = Path(settings.FARO_ARTEFACT_ROOT) / kind
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def ingest(dataset, csv_upload, content: bytes, name: str = "loans.csv", **options) -> DatasetVersion:
    return dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(content, name=name), options=options)


def test_upload_becomes_an_immutable_parquet_version(dataset, csv_upload):
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    path = Path(settings.FARO_ARTEFACT_ROOT) / version.file_path
    assert version.file_path == f"datasets/{version.sha256}.parquet"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256
    assert version.original_sha256 == hashlib.sha256(generated_csv()).hexdigest()
    assert (version.number, version.row_count, version.original_name, version.parent, version.mode) == (
        1,
        300,
        "loans.csv",
        None,
        "replace",
    )
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
    assert sum(version.statistics["age"]["histogram"]["counts"]) == 300
    assert version.validation == {
        "schema_changes": None,
        "checks": [],
        "source": {"format": "csv", "delimiter": ",", "encoding": "utf-8"},
    }
    assert dataset_version_table(version=version).num_rows == 300
    assert AuditEvent.objects.filter(action="dataset_version.created").count() == 1
    assert stored_files("uploads") == set()


def test_the_same_upload_gives_the_same_bytes(dataset, csv_upload):
    first = ingest(dataset, csv_upload, generated_csv())
    second = ingest(dataset, csv_upload, generated_csv())
    assert (first.number, second.number) == (1, 2)
    assert first.sha256 == second.sha256
    assert second.parent == first


def test_append_adds_rows_to_the_parent(dataset, csv_upload):
    first = ingest(dataset, csv_upload, generated_csv(rows=100))
    more = b"customer_id,income,age,city,repaid\nC9000,5000.5,30,north,yes\nC9001,1200.0,51,east,no\n"
    second = ingest(dataset, csv_upload, more, mode="append")
    assert (second.parent, second.mode, second.row_count) == (first, "append", 102)
    table = dataset_version_table(version=second)
    assert table.column("customer_id").to_pylist()[-2:] == ["C9000", "C9001"]
    assert (
        table.column("customer_id").to_pylist()[:100]
        == dataset_version_table(version=first).column("customer_id").to_pylist()
    )


def test_append_needs_the_parent_schema(dataset, csv_upload):
    ingest(dataset, csv_upload, generated_csv(rows=50))
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, b"customer_id,income,age,repaid\nC1,1.5,x,yes\n", mode="append")
    assert raised.value.message == "An appended file needs the parent version's columns and types."
    assert raised.value.extra["problems"] == [
        {"row": None, "column": "city", "message": "is missing; the parent version has it"},
        {"row": None, "column": "age", "message": "is string; the parent version's is integer"},
    ]
    assert DatasetVersion.objects.count() == 1


def test_a_breaking_schema_change_needs_acceptance(dataset, csv_upload):
    ingest(dataset, csv_upload, generated_csv(rows=50))
    changed = b"customer_id,income,age,repaid,score\nC1,1.5,young,yes,3\nC2,2.5,old,no,4\n"
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, changed)
    assert raised.value.extra["schema_changes"] == {
        "added": ["score"],
        "removed": ["city"],
        "retyped": [{"name": "age", "from": "integer", "to": "string"}],
        "breaking": True,
    }
    assert raised.value.extra["problems"] == [
        {"row": None, "column": "city", "message": "was removed"},
        {"row": None, "column": "age", "message": "changed type from integer to string"},
    ]
    assert DatasetVersion.objects.count() == 1
    accepted = ingest(dataset, csv_upload, changed, accept_schema_change=True)
    assert accepted.validation["schema_changes"]["breaking"] is True
    added_only = ingest(
        dataset,
        csv_upload,
        changed.replace(b",score", b",score,extra").replace(b",3\n", b",3,1\n").replace(b",4\n", b",4,1\n"),
    )
    assert added_only.validation["schema_changes"] == {
        "added": ["extra"],
        "removed": [],
        "retyped": [],
        "breaking": False,
    }


@pytest.mark.parametrize(
    ("content", "name", "options", "schema_types", "source"),
    [
        (
            b"customer_id;income;repaid\nC1;1,5;yes\nC2;2;no\n",
            "a.csv",
            {},
            ["string", "string", "string"],
            {"format": "csv", "delimiter": ";", "encoding": "utf-8"},
        ),
        (
            b"customer_id\tincome\trepaid\nC1\t1.5\tyes\n",
            "a.tsv",
            {},
            ["string", "float", "string"],
            {"format": "csv", "delimiter": "\t", "encoding": "utf-8"},
        ),
        (
            "customer_id,city,repaid\nC1,Zürich,yes\n".encode("latin-1"),
            "a.csv",
            {"encoding": "latin-1"},
            ["string", "string", "string"],
            {"format": "csv", "delimiter": ",", "encoding": "latin-1"},
        ),
        (
            b"\xef\xbb\xbfcustomer_id,income,repaid\nC1,3,yes\n",
            "a.csv",
            {},
            ["string", "integer", "string"],
            {"format": "csv", "delimiter": ",", "encoding": "utf-8"},
        ),
        (
            b'{"customer_id": "C1", "income": 2.5, "repaid": "yes"}\n'
            b'{"customer_id": "C2", "income": 1, "repaid": "no"}\n',
            "a.jsonl",
            {},
            ["string", "float", "string"],
            {"format": "jsonl"},
        ),
    ],
)
def test_formats_delimiters_and_encodings(db, csv_upload, content, name, options, schema_types, source):
    dataset = dataset_create(name="mixed", target_column="repaid", subject_key_column="customer_id")
    version = ingest(dataset, csv_upload, content, name=name, **options)
    assert [column["type"] for column in version.schema] == schema_types
    assert version.validation["source"] == source


def test_parquet_uploads_are_read_too(db, csv_upload):
    dataset = dataset_create(name="pq", target_column="repaid")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2, 3], "repaid": ["yes", "no", "yes"]}), buffer, row_group_size=2)
    version = ingest(dataset, csv_upload, buffer.getvalue(), name="upload.parquet")
    assert (version.row_count, version.source_format) == (3, "parquet")
    assert dataset_version_table(version=version).column("x").to_pylist() == [1, 2, 3]


def test_later_rows_widen_a_column_type(dataset, csv_upload):
    rows = b"".join(b"C%d,%d,30,north,yes\n" % (i, i) for i in range(200_000))
    content = b"customer_id,income,age,city,repaid\n" + rows + b"C-last,12.75,30,north,no\n"
    version = ingest(dataset, csv_upload, content)
    assert version.schema[1] == {"name": "income", "type": "float", "nullable": False}
    assert dataset_version_table(version=version).column("income").to_pylist()[-1] == 12.75


HEADER = b"customer_id,income,repaid\n"


@pytest.mark.parametrize(
    ("content", "name", "message", "problems"),
    [
        (b"", "a.csv", "The file is empty.", []),
        (HEADER, "a.csv", "The file has a header but no data rows.", []),
        (
            b"customer_id,income,income,repaid\nC1,1,2,yes\n",
            "a.csv",
            "The header row has problems.",
            [{"row": 1, "column": 3, "message": "duplicate column name 'income' (also column 2)"}],
        ),
        (
            b"customer_id,,repaid\nC1,1,yes\n",
            "a.csv",
            "The header row has problems.",
            [{"row": 1, "column": 2, "message": "empty column name"}],
        ),
        (
            "customer_id,größe,repaid\nC1,1,yes\n".encode(),
            "a.csv",
            "The header row has problems.",
            [{"row": 1, "column": 2, "message": "column name 'größe' has characters outside printable ASCII"}],
        ),
        (
            HEADER + b"C1,1,yes\nC2,2\nC3,3,no,extra\n",
            "a.csv",
            "The CSV could not be parsed: CSV parse error: Expected 3 columns, got 2: C2,2",
            [
                {"row": 3, "column": None, "message": "has 2 fields; the header has 3"},
                {"row": 4, "column": None, "message": "has 4 fields; the header has 3"},
            ],
        ),
        (
            HEADER + b'C1,"1,yes\nC2,2,no\n',
            "a.csv",
            "A quoted field is never closed.",
            [{"row": 2, "column": None, "message": "cannot be read (unexpected end of data); is a quote left open?"}],
        ),
        (
            HEADER + b"C1,\xff\xfe,yes\n",
            "a.csv",
            "The file is not UTF-8; declare its encoding (for example latin-1).",
            [{"row": 2, "column": None, "message": "invalid UTF-8 byte at offset 29"}],
        ),
        (b"PAR1" + b"x" * 100, "a.csv", "a.csv is a Parquet file, not CSV; name it .parquet.", []),
        (HEADER + b"C1,1,yes\n", "a.parquet", "a.parquet is not a Parquet file (it lacks the PAR1 signature).", []),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a.csv", "a.csv is a binary file, not CSV text.", []),
        (
            HEADER + b"C1,1,yes\n",
            "a.xlsx",
            "Cannot tell the format of 'a.xlsx': name it .csv, .parquet or .jsonl, or declare it.",
            [],
        ),
    ],
)
def test_bad_uploads_name_the_problem_and_leave_nothing(dataset, csv_upload, content, name, message, problems):
    files_before = stored_files()
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, content, name=name)
    assert raised.value.message == message
    assert raised.value.extra.get("problems", []) == problems
    assert DatasetVersion.objects.count() == 0
    assert stored_files() == files_before
    assert stored_files("uploads") == set()


def test_a_huge_single_field_is_refused_with_its_row(dataset, csv_upload, monkeypatch):
    import apps.data.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "READ_BLOCK_SIZE", 16 * 1024)  # both limits scaled down for speed
    monkeypatch.setattr(ingest_module, "MAX_ROW_BYTES", 64 * 1024)
    content = HEADER + b"C1,1,yes\n" + b"C2,1," + b"y" * (200 * 1024) + b"\nC3,2,no\n"
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, content)
    assert raised.value.message == "A row or field is larger than 64 KB, the most a row may hold."
    assert raised.value.extra["problems"][0]["row"] == 3
    assert DatasetVersion.objects.count() == 0


def test_a_truncated_parquet_upload_is_refused(db, csv_upload):
    dataset = dataset_create(name="pq", target_column="repaid")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(1000)), "repaid": ["yes"] * 1000}), buffer)
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, buffer.getvalue()[:-100], name="cut.parquet")
    assert raised.value.message.startswith("The Parquet file is truncated or damaged")
    assert DatasetVersion.objects.count() == 0


def test_declared_columns_must_be_present(dataset, csv_upload):
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, b"customer_id,income\nC1,1\n")
    assert raised.value.extra == {
        "problems": [
            {"row": None, "column": "repaid", "message": "the dataset's target column 'repaid' is not in the file"}
        ]
    }
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, b"customer_id,income,repaid\n,1,yes\nC2,2,no\n")
    assert raised.value.extra == {
        "problems": [{"row": None, "column": "customer_id", "message": "1 rows have no subject key"}]
    }


def test_blocking_checks_reject_and_warnings_are_recorded(dataset, csv_upload):
    dataset_check_create(dataset=dataset, kind="range", column="age", params={"min": 18, "max": 120})
    dataset_check_create(dataset=dataset, kind="unique", column="customer_id", severity="warning")

    def failures(check: str, severity: str) -> float:
        value = REGISTRY.get_sample_value("faro_data_check_failures_total", {"check": check, "severity": severity})
        return value or 0.0

    before = (failures("range", "blocking"), failures("unique", "warning"))
    good = ingest(dataset, csv_upload, generated_csv(rows=30))
    assert [(item["kind"], item["passed"]) for item in good.validation["checks"]] == [("range", True), ("unique", True)]
    bad = b"customer_id,income,age,city,repaid\nC1,1.5,17,north,yes\nC1,2.5,40,east,no\nC3,3.5,130,east,no\n"
    with pytest.raises(InvalidInput) as raised:
        ingest(dataset, csv_upload, bad)
    assert raised.value.message == "1 blocking check(s) failed."
    [problem] = raised.value.extra["problems"]
    assert (problem["column"], problem["rows"], problem["count"]) == ("age", [1, 3], 2)
    assert DatasetVersion.objects.count() == 1
    warned = ingest(dataset, csv_upload, bad.replace(b",17,", b",20,").replace(b",130,", b",60,"))
    unique = warned.validation["checks"][1]
    assert (unique["passed"], unique["severity"], unique["failing_rows"]) == (False, "warning", [2])
    # the rejected upload failed the range and the unique check; the accepted one the unique check
    assert (failures("range", "blocking"), failures("unique", "warning")) == (before[0] + 1, before[1] + 2)


def test_a_dataset_with_personal_columns_needs_purpose_basis_and_retention(db):
    with pytest.raises(InvalidInput) as raised:
        dataset_create(name="people", column_tags={"age": ["personal", "protected"]})
    assert raised.value.extra["fields"] == {
        "purpose": ["A dataset with personal columns needs a purpose."],
        "legal_basis": ["A dataset with personal columns needs a legal basis."],
        "retention_days": ["A dataset with personal columns needs a retention period."],
    }
    with pytest.raises(InvalidInput) as raised:
        dataset_create(name="people", column_tags={"age": ["secret"]})
    assert "column_tags" in raised.value.extra["fields"]
    dataset = dataset_create(
        name="people", column_tags={"age": ["personal"]}, purpose="credit scoring", legal_basis="b", retention_days=365
    )
    assert dataset.personal_columns == ["age"]


def test_csv_export_neutralises_formulas_and_is_audited(db, csv_upload, users):
    dataset = dataset_create(name="cells", target_column="repaid")
    content = b"note,repaid\n=1+1,yes\n+SUM(A1),no\n-2,yes\n@cmd,no\nplain,yes\n"
    version = ingest(dataset, csv_upload, content)
    rows, content_type = dataset_version_export(version=version, fmt="csv", actor=users["ds"])
    assert content_type == "text/csv"
    assert b"".join(rows).decode() == "note,repaid\n'=1+1,yes\n'+SUM(A1),no\n'-2,yes\n'@cmd,no\nplain,yes\n"
    path, _ = dataset_version_export(version=version, fmt="parquet", actor=users["ds"])
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == version.sha256
    assert AuditEvent.objects.filter(action="dataset_version.downloaded", actor=f"user:{users['ds'].pk}").count() == 2


def test_ingest_jobs_run_once_and_clean_up(dataset, csv_upload, django_capture_on_commit_callbacks):
    from apps.data.services import ingest_job_run

    with django_capture_on_commit_callbacks(execute=True):
        job = ingest_job_create(dataset=dataset, upload=csv_upload(), options={"mode": "replace"})
    job.refresh_from_db()
    assert (job.status, job.progress, job.dataset_version.number, job.staged_path) == ("succeeded", 1.0, 1, "")
    assert ingest_job_run(job_id=job.pk) is None  # a second delivery does nothing
    assert DatasetVersion.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        failed = ingest_job_create(dataset=dataset, upload=csv_upload(HEADER))
    failed.refresh_from_db()
    assert (failed.status, failed.error, failed.dataset_version) == (
        "failed",
        "The file has a header but no data rows.",
        None,
    )
    assert stored_files("uploads") == set()
    with pytest.raises(InvalidInput, match="damaged or truncated"):
        ingest_job_create(dataset=dataset, upload=csv_upload(), expected_sha256="0" * 64)
    assert IngestJob.objects.count() == 2


def test_dataset_verify_finds_mismatches_missing_and_orphan_files(dataset, csv_upload, capsys):
    version = ingest(dataset, csv_upload, generated_csv())
    call_command("dataset_verify", "--rematerialise")
    assert capsys.readouterr().out.strip() == "Dataset storage intact: 1 version(s) verified."
    path = Path(settings.FARO_ARTEFACT_ROOT) / version.file_path
    orphan = Path(settings.FARO_ARTEFACT_ROOT) / "datasets" / ("f" * 64 + ".parquet")
    orphan.write_bytes(b"stray")
    path.chmod(0o644)
    original = path.read_bytes()
    path.write_bytes(original + b"tampered")
    with pytest.raises(CommandError, match=r"2 problem\(s\) in dataset storage."):
        call_command("dataset_verify")
    assert capsys.readouterr().out.splitlines() == [
        f"MISMATCH loans v1 ({version.file_path})",
        f"ORPHAN datasets/{'f' * 64}.parquet",
    ]
    path.unlink()
    orphan.unlink()
    with pytest.raises(CommandError, match=r"1 problem\(s\)"):
        call_command("dataset_verify")
    assert capsys.readouterr().out.splitlines() == [f"MISSING loans v1 ({version.file_path})"]
    path.write_bytes(original)


def test_the_demo_data_ingests_with_its_subject_key(db, demo_csv, csv_upload):
    dataset = dataset_create(name="german-credit", target_column="creditability", subject_key_column="applicant_id")
    version = ingest(dataset, csv_upload, demo_csv.read_bytes(), name="german_credit.csv")
    assert version.row_count == 1000
    assert version.statistics["applicant_id"]["distinct"] == 1000
    assert version.statistics["creditability"]["top"] == [
        {"value": "good", "count": 700},
        {"value": "bad", "count": 300},
    ]
    assert json.loads(json.dumps(version.statistics)) == version.statistics


def test_upload_options_are_parsed_strictly():
    from apps.data.services import parse_ingest_options

    assert parse_ingest_options({"delimiter": "tab", "accept_schema_change": "on"}) == {
        "mode": "replace",
        "format": None,
        "delimiter": "\t",
        "encoding": None,
        "accept_schema_change": True,
    }
    with pytest.raises(InvalidInput) as raised:
        parse_ingest_options({"accept_schema_change": "maybe", "mode": "sideways", "encoding": "klingon"})
    assert raised.value.extra == {
        "fields": {
            "mode": ["Choose one of: replace, append."],
            "encoding": ["Unknown encoding 'klingon'."],
            "accept_schema_change": ["Give true or false."],
        }
    }


def test_a_file_of_blank_lines_is_empty(dataset, csv_upload):
    with pytest.raises(InvalidInput, match=r"^The file is empty\.$"):
        ingest(dataset, csv_upload, b"\n\n  \n")


def test_a_row_longer_than_a_reading_block_is_read_again_with_larger_blocks(dataset, csv_upload, monkeypatch):
    import apps.data.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "READ_BLOCK_SIZE", 16 * 1024)
    monkeypatch.setattr(ingest_module, "MAX_ROW_BYTES", 64 * 1024)
    long_value = "y" * (30 * 1024)
    content = HEADER + b"C1,1,yes\n" + f"C2,2,{long_value}\n".encode() + b"C3,3,no\n"
    version = ingest(dataset, csv_upload, content)
    assert version.row_count == 3
    assert dataset_version_table(version=version).column("repaid").to_pylist()[1] == long_value
