"""The datasets API: create, upload versions as CSV, read them back; refusals leave neither a row nor a file."""

import csv
import hashlib
import io
import statistics
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.data.models import Dataset, DatasetVersion
from tests.conftest import generated_csv

HEADER = b"customer_id,income,age,city,repaid\n"
LOANS = {
    "name": "loans",
    "description": "Generated loans",
    "target_column": "repaid",
    "subject_key_column": "customer_id",
}
SCHEMA = [
    {"name": "customer_id", "type": "string", "nullable": False},
    {"name": "income", "type": "float", "nullable": False},
    {"name": "age", "type": "integer", "nullable": False},
    {"name": "city", "type": "string", "nullable": False},
    {"name": "repaid", "type": "string", "nullable": False},
]


def artefact_files() -> set[Path]:
    """Every file under the artefact root's datasets folder, including temporary ones."""
    folder = Path(settings.FARO_ARTEFACT_ROOT) / "datasets"
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def upload(api, token, content=None, *, filename="loans.csv", dataset="loans"):
    data = {} if content is False else {"file": SimpleUploadedFile(filename, content, content_type="text/csv")}
    return api.post(f"/api/v1/datasets/{dataset}/versions", data, HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def loans(api, tokens):
    response = api.call("post", "/api/v1/datasets", tokens["write"], LOANS)
    assert response.status_code == 201, response.content
    return response.json()


def expected_statistics() -> dict:
    """The generated table's statistics, worked out here from the CSV text."""
    rows = list(csv.DictReader(io.StringIO(generated_csv().decode())))
    income = [float(row["income"]) for row in rows]
    age = [int(row["age"]) for row in rows]
    return {
        "customer_id": {
            "type": "string",
            "count": 300,
            "missing": 0,
            "distinct": 300,
            "top": [{"value": f"C{index:04d}", "count": 1} for index in range(5)],
        },
        "income": {
            "type": "float",
            "count": 300,
            "missing": 0,
            "distinct": 300,
            "min": 1022.97,
            "max": 8990.34,
            "mean": pytest.approx(statistics.fmean(income), rel=1e-12),
            "std": pytest.approx(statistics.pstdev(income), rel=1e-12),
        },
        "age": {
            "type": "integer",
            "count": 300,
            "missing": 0,
            "distinct": 63,
            "min": 18,
            "max": 80,
            "mean": pytest.approx(statistics.fmean(age), rel=1e-12),
            "std": pytest.approx(statistics.pstdev(age), rel=1e-12),
        },
        "city": {
            "type": "string",
            "count": 300,
            "missing": 0,
            "distinct": 3,
            "top": [{"value": "north", "count": 109}, {"value": "south", "count": 102}, {"value": "east", "count": 89}],
        },
        "repaid": {
            "type": "string",
            "count": 300,
            "missing": 0,
            "distinct": 2,
            "top": [{"value": "no", "count": 150}, {"value": "yes", "count": 150}],
        },
    }


# -- creating datasets -----------------------------------------------------------------------------


def test_create_a_dataset(api, tokens):
    response = api.call("post", "/api/v1/datasets", tokens["write"], LOANS)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {*LOANS, "created_at", "latest_version"}
    assert {key: body[key] for key in LOANS} == LOANS
    assert body["latest_version"] is None
    dataset = Dataset.objects.get()
    assert (dataset.name, dataset.target_column, dataset.subject_key_column) == ("loans", "repaid", "customer_id")


def test_a_duplicate_name_is_409(api, tokens, loans):
    response = api.call("post", "/api/v1/datasets", tokens["write"], {"name": "loans", "target_column": "other"})
    assert response.status_code == 409
    assert response.json() == {
        "message": "A dataset named 'loans' already exists.",
        "extra": {"fields": {"name": ["A dataset with this name already exists."]}},
    }
    assert Dataset.objects.get().target_column == "repaid"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"name": "Bad Name"},
            {
                "message": "The dataset is not valid.",
                "extra": {"fields": {"name": ["Use lower-case letters, digits and hyphens."]}},
            },
            id="bad-name",
        ),
        pytest.param(
            {"description": "no name"},
            {"message": "Invalid input.", "extra": {"fields": {"name": ["This field is required."]}}},
            id="no-name",
        ),
    ],
)
def test_an_invalid_dataset_is_400(api, tokens, body, expected):
    response = api.call("post", "/api/v1/datasets", tokens["write"], body)
    assert (response.status_code, response.json()) == (400, expected)
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("persona", ["read", "predict"])
def test_creating_needs_the_write_scope(api, tokens, persona):
    response = api.call("post", "/api/v1/datasets", tokens[persona], LOANS)
    assert (response.status_code, response.json()) == (
        403,
        {"message": "This token lacks the 'write' scope.", "extra": {}},
    )
    assert not Dataset.objects.exists()


def test_creating_needs_a_token(api, db):
    response = api.call("post", "/api/v1/datasets", None, LOANS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert not Dataset.objects.exists()


# -- uploading versions ----------------------------------------------------------------------------


def test_upload_a_csv_version(api, tokens, loans):
    response = upload(api, tokens["write"], generated_csv())
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "dataset",
        "number",
        "sha256",
        "original_name",
        "original_sha256",
        "row_count",
        "schema",
        "statistics",
        "created_at",
    }
    assert (body["dataset"], body["number"], body["row_count"]) == ("loans", 1, 300)
    assert body["original_name"] == "loans.csv"
    assert body["original_sha256"] == hashlib.sha256(generated_csv()).hexdigest()
    assert body["schema"] == SCHEMA
    assert body["statistics"] == expected_statistics()
    # The stored Parquet file is named by, and hashes to, the reported SHA-256.
    stored = Path(settings.FARO_ARTEFACT_ROOT) / "datasets" / f"{body['sha256']}.parquet"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == body["sha256"]
    version = DatasetVersion.objects.get()
    assert (version.file_path, version.sha256) == (f"datasets/{body['sha256']}.parquet", body["sha256"])


def test_a_second_upload_is_version_two(api, tokens, loans):
    first = upload(api, tokens["write"], generated_csv()).json()
    second = upload(api, tokens["write"], generated_csv(rows=120, seed=3), filename="more.csv")
    assert second.status_code == 201, second.content
    body = second.json()
    assert (body["number"], body["row_count"], body["original_name"]) == (2, 120, "more.csv")
    assert body["sha256"] != first["sha256"]
    detail = api.call("get", "/api/v1/datasets/loans", tokens["read"]).json()
    assert detail["latest_version"] == 2


def test_the_same_file_twice_is_stored_once(api, tokens, loans):
    first = upload(api, tokens["write"], generated_csv()).json()
    files = artefact_files()
    second = upload(api, tokens["write"], generated_csv()).json()
    assert (first["number"], second["number"]) == (1, 2)
    assert first["sha256"] == second["sha256"]
    assert artefact_files() == files


PROBLEM_UPLOADS = [
    pytest.param(
        False,
        "loans.csv",
        {
            "message": "Attach the CSV as the multipart field 'file'.",
            "extra": {"fields": {"file": ["This field is required."]}},
        },
        id="no-file",
    ),
    pytest.param(
        generated_csv(),
        "loans.xlsx",
        {
            "message": "loans.xlsx is not a .csv file; upload a CSV with a header row.",
            "extra": {"fields": {"file": ["Expected a .csv file."]}},
        },
        id="not-csv",
    ),
    pytest.param(b"", "loans.csv", {"message": "The file is empty.", "extra": {"problems": []}}, id="empty"),
    pytest.param(b"\n\n  \n", "loans.csv", {"message": "The file is empty.", "extra": {"problems": []}}, id="blank"),
    pytest.param(
        HEADER,
        "loans.csv",
        {"message": "The file has a header but no data rows.", "extra": {"problems": []}},
        id="header-only",
    ),
    pytest.param(
        b"customer_id,income,income,city,repaid\nC1,1,2,north,yes\n",
        "loans.csv",
        {
            "message": "The header row has problems.",
            "extra": {
                "problems": [{"row": 1, "column": 3, "message": "duplicate column name 'income' (also column 2)"}]
            },
        },
        id="duplicate-columns",
    ),
    pytest.param(
        b"customer_id,,age,city,repaid\nC1,1,2,north,yes\n",
        "loans.csv",
        {
            "message": "The header row has problems.",
            "extra": {"problems": [{"row": 1, "column": 2, "message": "empty column name"}]},
        },
        id="empty-column-name",
    ),
    pytest.param(
        HEADER + b"C1,1000,30,north,yes\nC2,2000,40,south\n",
        "loans.csv",
        {
            "message": "The CSV could not be parsed: CSV parse error: Expected 5 columns, got 4: C2,2000,40,south",
            "extra": {"problems": [{"row": 3, "column": None, "message": "has 4 fields; the header has 5"}]},
        },
        id="ragged-row",
    ),
    pytest.param(
        b"customer_id,income,age,city\nC1,1000,30,north\n",
        "loans.csv",
        {
            "message": "The file does not match the dataset's declaration.",
            "extra": {
                "problems": [{"column": "repaid", "message": "the dataset's target column 'repaid' is not in the file"}]
            },
        },
        id="missing-target",
    ),
    pytest.param(
        HEADER + b"C1,1000,30,north,yes\n,2000,40,south,no\n",
        "loans.csv",
        {
            "message": "The file does not match the dataset's declaration.",
            "extra": {"problems": [{"column": "customer_id", "message": "1 rows have no subject key"}]},
        },
        id="missing-subject-key",
    ),
    pytest.param(
        b"\xff\xfecustomer_id\n1\n",
        "loans.csv",
        {"message": "The file is not UTF-8 (invalid byte at offset 0).", "extra": {"problems": []}},
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("content", "filename", "expected"), PROBLEM_UPLOADS)
def test_a_bad_upload_is_400_and_leaves_nothing_behind(api, tokens, loans, content, filename, expected):
    before = artefact_files()
    response = upload(api, tokens["write"], content, filename=filename)
    assert response.status_code == 400, response.content
    assert response.json() == expected
    assert not DatasetVersion.objects.exists()
    assert artefact_files() == before


def test_a_bad_upload_after_a_good_one_keeps_the_good_one(api, tokens, loans):
    good = upload(api, tokens["write"], generated_csv()).json()
    before = artefact_files()
    response = upload(api, tokens["write"], HEADER)
    assert response.status_code == 400
    assert list(DatasetVersion.objects.values_list("number", "sha256")) == [(1, good["sha256"])]
    assert artefact_files() == before


def test_an_upload_over_the_limit_is_413(api, tokens, loans, settings):
    settings.FARO_UPLOAD_MAX_BYTES = 4096
    before = artefact_files()
    response = upload(api, tokens["write"], generated_csv())
    assert response.status_code == 413
    declared = int(response.wsgi_request.META["CONTENT_LENGTH"])
    assert declared > 4096
    assert response.json() == {"message": f"Upload of {declared} bytes exceeds the limit of 4096 bytes.", "extra": {}}
    assert not DatasetVersion.objects.exists()
    assert artefact_files() == before


def test_json_is_not_an_upload(api, tokens, loans):
    response = api.call("post", "/api/v1/datasets/loans/versions", tokens["write"], {"file": "a,b\n1,2\n"})
    assert response.status_code == 415
    assert response.json() == {"message": 'Unsupported media type "application/json" in request.', "extra": {}}
    assert not DatasetVersion.objects.exists()


def test_uploading_to_an_unknown_dataset_is_404(api, tokens, db):
    before = artefact_files()
    response = upload(api, tokens["write"], generated_csv(), dataset="nope")
    assert (response.status_code, response.json()) == (404, {"message": "No dataset named 'nope'.", "extra": {}})
    assert artefact_files() == before


def test_uploading_needs_the_write_scope(api, tokens, loans):
    before = artefact_files()
    response = upload(api, tokens["read"], generated_csv())
    assert (response.status_code, response.json()) == (
        403,
        {"message": "This token lacks the 'write' scope.", "extra": {}},
    )
    assert not DatasetVersion.objects.exists()
    assert artefact_files() == before


# -- reading ---------------------------------------------------------------------------------------


def test_read_endpoints_with_the_read_token(api, tokens, loans):
    created = upload(api, tokens["write"], generated_csv()).json()
    read = tokens["read"]

    listed = api.call("get", "/api/v1/datasets", read)
    assert listed.status_code == 200
    assert listed.json() == [{**LOANS, "created_at": loans["created_at"], "latest_version": 1}]

    detail = api.call("get", "/api/v1/datasets/loans", read)
    assert (detail.status_code, detail.json()) == (
        200,
        {**LOANS, "created_at": loans["created_at"], "latest_version": 1},
    )

    versions = api.call("get", "/api/v1/datasets/loans/versions", read)
    assert (versions.status_code, versions.json()) == (200, [created])

    version = api.call("get", "/api/v1/datasets/loans/versions/1", read)
    assert (version.status_code, version.json()) == (200, created)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/datasets/nope", "No dataset named 'nope'."),
        ("/api/v1/datasets/nope/versions", "No dataset named 'nope'."),
        ("/api/v1/datasets/nope/versions/1", "No dataset named 'nope'."),
        ("/api/v1/datasets/loans/versions/2", "Dataset 'loans' has no version 2."),
    ],
)
def test_reading_what_does_not_exist_is_404(api, tokens, loans, path, message):
    upload(api, tokens["write"], generated_csv())
    response = api.call("get", path, tokens["read"])
    assert (response.status_code, response.json()) == (404, {"message": message, "extra": {}})


def test_reading_needs_the_read_scope(api, tokens, loans):
    response = api.call("get", "/api/v1/datasets", tokens["predict"])
    assert (response.status_code, response.json()) == (
        403,
        {"message": "This token lacks the 'read' scope.", "extra": {}},
    )
    response = api.call("get", "/api/v1/datasets", None)
    assert response.status_code == 401
