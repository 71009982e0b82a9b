"""The datasets API: describe datasets, queue uploads as ingest jobs and follow them, read versions back,
manage checks, download rows.

An upload is answered 202 with an ingest job; the worker (Celery, eager in tests, run on commit) turns it into
a version or fails the job with the problems. Refusals at the HTTP edge create nothing at all; a failed job
stores neither a version nor a file.
"""

import bisect
import csv
import hashlib
import io
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.data.models import Dataset, DatasetCheck, DatasetVersion, IngestJob
from apps.governance.models import ApiToken, AuditEvent
from tests.conftest import generated_csv

HEADER = b"customer_id,income,age,city,repaid\n"
LOANS = {
    "name": "loans",
    "description": "Generated loans",
    "target_column": "repaid",
    "subject_key_column": "customer_id",
}
GOVERNED = {
    **LOANS,
    "purpose": "Decide on loan applications.",
    "legal_basis": "b",
    "retention_days": 365,
    "column_tags": {"customer_id": ["personal"], "age": ["personal", "protected"], "repaid": ["target"]},
    "subject_categories": "Loan applicants",
    "recipients": "Credit officers; the credit bureau",
}
UNGOVERNED = {
    "purpose": "",
    "legal_basis": "",
    "retention_days": None,
    "column_tags": {},
    "subject_categories": "",
    "recipients": "",
}
SCHEMA = [
    {"name": "customer_id", "type": "string", "nullable": False},
    {"name": "income", "type": "float", "nullable": False},
    {"name": "age", "type": "integer", "nullable": False},
    {"name": "city", "type": "string", "nullable": False},
    {"name": "repaid", "type": "string", "nullable": False},
]
DEFAULT_OPTIONS = {
    "mode": "replace",
    "format": None,
    "delimiter": None,
    "encoding": None,
    "accept_schema_change": False,
}
CSV_SOURCE = {"format": "csv", "delimiter": ",", "encoding": "utf-8"}


# -- helpers ---------------------------------------------------------------------------------------------


def stored(kind: str) -> set[str]:
    """Every file under the artefact root's `kind` folder (datasets, uploads), temporary ones included."""
    folder = Path(settings.FARO_ARTEFACT_ROOT) / kind
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso(moment) -> str | None:
    """A timestamp as the API renders it."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def actor(persona: str) -> str:
    return f"token:{ApiToken.objects.get(name=f'{persona}-client').pk}"


def audit(action: str) -> list[tuple[str, str, str, dict]]:
    return [
        (event.actor, event.object_type, event.object_id, event.data)
        for event in AuditEvent.objects.filter(action=action).order_by("seq")
    ]


def upload(api, token, content=None, *, filename="loans.csv", dataset="loans", **fields):
    """POST a multipart upload; `content=None` leaves the file out."""
    data = dict(fields)
    if content is not None:
        data["file"] = SimpleUploadedFile(filename, content, content_type="text/csv")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return api.post(f"/api/v1/datasets/{dataset}/versions", data, **headers)


def job_body(job: IngestJob) -> dict:
    """What the API answers for `job`, as stored now."""
    job.refresh_from_db()
    return {
        "id": job.pk,
        "url": f"/api/v1/ingest-jobs/{job.pk}",
        "dataset": job.dataset.name,
        "status": job.status,
        "progress": job.progress,
        "original_name": job.original_name,
        "original_sha256": job.original_sha256,
        "size_bytes": job.size_bytes,
        "options": job.options,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "error": job.error,
        "problems": job.problems,
        "details": job.details,
        "dataset_version": job.dataset_version.number if job.dataset_version else None,
    }


def download(api, token, path="/api/v1/datasets/loans/versions/1/download", query=""):
    response = api.call("get", path + query, token)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response, content


@pytest.fixture
def loans(api, tokens):
    response = api.call("post", "/api/v1/datasets", tokens["write"], LOANS)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def ingest(api, tokens, django_capture_on_commit_callbacks):
    """Upload through the API and let the worker run the job, as it does once the request commits.

    Returns the 202 body and the job as GET /api/v1/ingest-jobs/<id> shows it afterwards.
    """

    def run(content=None, **kwargs) -> tuple[dict, dict]:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = upload(api, tokens["write"], generated_csv() if content is None else content, **kwargs)
        assert response.status_code == 202, response.content
        assert len(callbacks) == 1
        followed = api.call("get", response["Location"], tokens["read"])
        assert followed.status_code == 200
        return response.json(), followed.json()

    return run


def csv_rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as numpy's default."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def histogram(values: list[float], bins: int = 20) -> dict:
    """Equal-width bins from min to max; each bin holds [left, right), the last one also its right edge."""
    low, high = min(values), max(values)
    step = (high - low) / bins
    edges = [low + index * step for index in range(bins)] + [high]
    counts = [0] * bins
    for value in values:
        counts[min(bisect.bisect_right(edges, value) - 1, bins - 1)] += 1
    return {"edges": edges, "counts": counts}


def numeric_statistics(values: list[float], kind: str) -> dict:
    ordered = sorted(values)
    return {
        "type": kind,
        "count": len(values),
        "missing": 0,
        "distinct": len(set(values)),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": pytest.approx(statistics.fmean(values), rel=1e-12),
        "std": pytest.approx(statistics.pstdev(values), rel=1e-12),
        "quantiles": {
            name: pytest.approx(quantile(ordered, q), rel=1e-12)
            for name, q in {
                "p01": 0.01,
                "p05": 0.05,
                "p25": 0.25,
                "p50": 0.5,
                "p75": 0.75,
                "p95": 0.95,
                "p99": 0.99,
            }.items()
        },
        "histogram": histogram([float(value) for value in values]),
    }


def text_statistics(values: list[str]) -> dict:
    counted = Counter(values)
    return {
        "type": "string",
        "count": len(values),
        "missing": 0,
        "distinct": len(counted),
        "top": [
            {"value": value, "count": count} for value, count in sorted(counted.items(), key=lambda i: (-i[1], i[0]))
        ][:10],
        "min_length": min(len(value) for value in values),
        "max_length": max(len(value) for value in values),
    }


def expected_statistics(content: bytes) -> dict:
    """The statistics of a generated table, worked out here from its CSV text."""
    rows = csv_rows(content)
    return {
        "customer_id": text_statistics([row["customer_id"] for row in rows]),
        "income": numeric_statistics([float(row["income"]) for row in rows], "float"),
        "age": numeric_statistics([int(row["age"]) for row in rows], "integer"),
        "city": text_statistics([row["city"] for row in rows]),
        "repaid": text_statistics([row["repaid"] for row in rows]),
    }


# -- creating and editing datasets -----------------------------------------------------------------------


def test_create_a_dataset_with_its_governance(api, tokens):
    response = api.call("post", "/api/v1/datasets", tokens["write"], GOVERNED)
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get()
    assert response.json() == {
        **GOVERNED,
        "owner": None,
        "created_at": iso(dataset.created_at),
        "latest_version": None,
    }
    assert (dataset.legal_basis, dataset.retention_days, dataset.personal_columns) == ("b", 365, ["age", "customer_id"])
    assert audit("dataset.created") == [
        (
            actor("write"),
            "data.dataset",
            str(dataset.pk),
            {
                "name": "loans",
                "target_column": "repaid",
                "subject_key_column": "customer_id",
                "legal_basis": "b",
                "retention_days": 365,
                "column_tags": GOVERNED["column_tags"],
            },
        )
    ]


def test_a_plain_dataset_needs_no_governance(api, tokens, loans):
    dataset = Dataset.objects.get()
    assert loans == {
        **LOANS,
        **UNGOVERNED,
        "owner": None,
        "created_at": iso(dataset.created_at),
        "latest_version": None,
    }


@pytest.mark.parametrize(
    ("governance", "missing"),
    [
        pytest.param({}, ["purpose", "legal_basis", "retention_days"], id="none"),
        pytest.param({"purpose": "Scoring.", "legal_basis": ""}, ["legal_basis", "retention_days"], id="purpose-only"),
        pytest.param({"legal_basis": "a", "retention_days": 0}, ["purpose", "retention_days"], id="zero-retention"),
    ],
)
@pytest.mark.parametrize("tag", ["personal", "special_category"])
def test_personal_columns_need_a_purpose_a_legal_basis_and_a_retention(api, tokens, governance, missing, tag):
    body = {**LOANS, "column_tags": {"age": [tag]}, **governance}
    response = api.call("post", "/api/v1/datasets", tokens["write"], body)
    messages = {
        "purpose": ["A dataset with personal columns needs a purpose."],
        "legal_basis": ["A dataset with personal columns needs a legal basis."],
        "retention_days": ["A dataset with personal columns needs a retention period."],
    }
    assert (response.status_code, response.json()) == (
        400,
        {"message": "The dataset is not valid.", "extra": {"fields": {field: messages[field] for field in missing}}},
    )
    assert not Dataset.objects.exists()
    assert audit("dataset.created") == []


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
        pytest.param(
            {"name": "loans", "column_tags": {"age": ["secret"]}},
            {
                "message": "Invalid input.",
                "extra": {"fields": {"column_tags": {"age": {"0": ['"secret" is not a valid choice.']}}}},
            },
            id="unknown-tag",
        ),
        pytest.param(
            {"name": "loans", "legal_basis": "z"},
            {"message": "Invalid input.", "extra": {"fields": {"legal_basis": ['"z" is not a valid choice.']}}},
            id="unknown-legal-basis",
        ),
        pytest.param(
            {"name": "loans", "retention_days": -1},
            {
                "message": "Invalid input.",
                "extra": {"fields": {"retention_days": ["Ensure this value is greater than or equal to 0."]}},
            },
            id="negative-retention",
        ),
    ],
)
def test_an_invalid_dataset_is_400(api, tokens, body, expected):
    response = api.call("post", "/api/v1/datasets", tokens["write"], body)
    assert (response.status_code, response.json()) == (400, expected)
    assert not Dataset.objects.exists()


def test_a_duplicate_name_is_409(api, tokens, loans):
    response = api.call("post", "/api/v1/datasets", tokens["write"], {"name": "loans", "target_column": "other"})
    assert (response.status_code, response.json()) == (
        409,
        {
            "message": "A dataset named 'loans' already exists.",
            "extra": {"fields": {"name": ["A dataset with this name already exists."]}},
        },
    )
    assert Dataset.objects.get().target_column == "repaid"
    assert len(audit("dataset.created")) == 1


def test_patch_updates_the_description_and_retention(api, tokens):
    api.call("post", "/api/v1/datasets", tokens["write"], GOVERNED)
    response = api.call(
        "patch",
        "/api/v1/datasets/loans",
        tokens["write"],
        {"description": "Loans, reviewed", "retention_days": 730, "name": "renamed"},
    )
    assert response.status_code == 200, response.content
    dataset = Dataset.objects.get()
    assert response.json() == {
        **GOVERNED,
        "description": "Loans, reviewed",
        "retention_days": 730,
        "owner": None,
        "created_at": iso(dataset.created_at),
        "latest_version": None,
    }
    assert (dataset.name, dataset.description, dataset.retention_days) == ("loans", "Loans, reviewed", 730)
    assert audit("dataset.updated") == [
        (
            actor("write"),
            "data.dataset",
            str(dataset.pk),
            {
                "name": "loans",
                "target_column": "repaid",
                "subject_key_column": "customer_id",
                "legal_basis": "b",
                "retention_days": 730,
                "column_tags": GOVERNED["column_tags"],
            },
        )
    ]
    assert api.call("get", "/api/v1/datasets/loans", tokens["read"]).json() == response.json()


def test_patch_cannot_drop_the_retention_of_personal_data(api, tokens):
    api.call("post", "/api/v1/datasets", tokens["write"], GOVERNED)
    response = api.call("patch", "/api/v1/datasets/loans", tokens["write"], {"retention_days": None})
    assert (response.status_code, response.json()) == (
        400,
        {
            "message": "The dataset is not valid.",
            "extra": {"fields": {"retention_days": ["A dataset with personal columns needs a retention period."]}},
        },
    )
    assert Dataset.objects.get().retention_days == 365
    assert audit("dataset.updated") == []


def test_patching_an_unknown_dataset_is_404(api, tokens, db):
    response = api.call("patch", "/api/v1/datasets/nope", tokens["write"], {"description": "x"})
    assert (response.status_code, response.json()) == (404, {"message": "No dataset named 'nope'.", "extra": {}})


# -- uploads are queued as ingest jobs -------------------------------------------------------------------


def test_an_upload_is_answered_202_with_a_queued_job(api, tokens, loans):
    """Until the request's transaction commits the worker has not been asked: the job is queued."""
    content = generated_csv()
    response = upload(api, tokens["write"], content)
    assert response.status_code == 202, response.content
    job = IngestJob.objects.get()
    assert response["Location"] == f"/api/v1/ingest-jobs/{job.pk}"
    assert response.json() == {
        "id": job.pk,
        "url": f"/api/v1/ingest-jobs/{job.pk}",
        "dataset": "loans",
        "status": "queued",
        "progress": 0.0,
        "original_name": "loans.csv",
        "original_sha256": sha256(content),
        "size_bytes": len(content),
        "options": DEFAULT_OPTIONS,
        "created_at": iso(job.created_at),
        "started_at": None,
        "finished_at": None,
        "error": "",
        "problems": [],
        "details": {},
        "dataset_version": None,
    }
    # The upload waits, staged under uploads/, for the worker; nothing is a version yet.
    [staged] = stored("uploads")
    assert (Path(settings.FARO_ARTEFACT_ROOT) / "uploads" / staged).read_bytes() == content
    assert f"uploads/{staged}" == job.staged_path
    assert not DatasetVersion.objects.exists()
    assert stored("datasets") == set()
    assert audit("ingest_job.created") == [
        (
            actor("write"),
            "data.ingestjob",
            str(job.pk),
            {"dataset": "loans", "sha256": sha256(content), "bytes": len(content), "options": DEFAULT_OPTIONS},
        )
    ]
    followed = api.call("get", f"/api/v1/ingest-jobs/{job.pk}", tokens["read"])
    assert (followed.status_code, followed.json()) == (200, response.json())


def test_the_options_are_recorded_on_the_job(api, tokens, loans):
    response = upload(
        api,
        tokens["write"],
        generated_csv(),
        mode="replace",
        format="csv",
        delimiter="tab",
        encoding="latin-1",
        accept_schema_change="true",
        sha256=sha256(generated_csv()).upper(),
    )
    assert response.status_code == 202, response.content
    assert response.json()["options"] == {
        "mode": "replace",
        "format": "csv",
        "delimiter": "\t",
        "encoding": "latin-1",
        "accept_schema_change": True,
    }


def test_the_job_ingests_the_upload_into_version_one(api, tokens, loans, ingest):
    content = generated_csv()
    queued, finished = ingest(content)
    assert queued["status"] == "queued"
    job = IngestJob.objects.get()
    version = DatasetVersion.objects.get()
    assert finished == {
        **queued,
        "status": "succeeded",
        "progress": 1.0,
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "error": "",
        "problems": [],
        "dataset_version": 1,
    }
    assert job.started_at <= job.finished_at

    response = api.call("get", "/api/v1/datasets/loans/versions/1", tokens["read"])
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "dataset": "loans",
        "number": 1,
        "parent": None,
        "mode": "replace",
        "source_format": "csv",
        "sha256": version.sha256,
        "original_name": "loans.csv",
        "original_sha256": sha256(content),
        "row_count": 300,
        "schema": SCHEMA,
        "statistics": expected_statistics(content),
        "validation": {"schema_changes": None, "checks": [], "source": CSV_SOURCE},
        "created_at": iso(version.created_at),
        "purged_at": None,
        "purge_reason": "",
    }
    # Spot checks on numbers read straight from the CSV, independent of the helpers above.
    rows = csv_rows(content)
    ages = [int(row["age"]) for row in rows]
    assert len(rows) == 300
    assert (body["statistics"]["age"]["min"], body["statistics"]["age"]["max"]) == (min(ages), max(ages))
    assert body["statistics"]["city"]["distinct"] == 3
    assert sum(body["statistics"]["age"]["histogram"]["counts"]) == 300
    assert sum(item["count"] for item in body["statistics"]["city"]["top"]) == 300

    # The version is a Parquet file named by, and hashing to, its SHA-256; the staged upload is gone.
    assert stored("datasets") == {f"{version.sha256}.parquet"}
    assert sha256((Path(settings.FARO_ARTEFACT_ROOT) / version.file_path).read_bytes()) == version.sha256
    assert stored("uploads") == set()
    assert job.staged_path == ""
    assert api.call("get", "/api/v1/datasets/loans", tokens["read"]).json()["latest_version"] == 1
    assert [action for action in AuditEvent.objects.order_by("seq").values_list("action", flat=True)][-3:] == [
        "ingest_job.created",
        "ingest_job.started",
        "dataset_version.created",
    ]
    assert audit("dataset_version.created") == [
        (
            f"token:{ApiToken.objects.get(name='write-client').pk}",  # who uploaded, though a worker ingested
            "data.datasetversion",
            str(version.pk),
            {"dataset": "loans", "number": 1, "sha256": version.sha256, "rows": 300, "parent": None, "mode": "replace"},
        )
    ]


def test_a_second_upload_is_version_two_and_the_same_file_is_stored_once(api, tokens, loans, ingest):
    ingest(generated_csv())
    files = stored("datasets")
    _, again = ingest(generated_csv())
    assert (again["status"], again["dataset_version"]) == ("succeeded", 2)
    first, second = DatasetVersion.objects.order_by("number")
    assert (second.parent, second.mode, second.sha256) == (first, "replace", first.sha256)
    assert stored("datasets") == files
    _, other = ingest(generated_csv(rows=120, seed=3), filename="more.csv")
    assert (other["status"], other["original_name"], other["dataset_version"]) == ("succeeded", "more.csv", 3)
    third = api.call("get", "/api/v1/datasets/loans/versions/3", tokens["read"]).json()
    assert (third["row_count"], third["parent"], third["mode"]) == (120, 2, "replace")
    assert api.call("get", "/api/v1/datasets/loans", tokens["read"]).json()["latest_version"] == 3


def test_append_adds_the_upload_to_the_parent(api, tokens, loans, ingest):
    ingest(generated_csv())
    more = generated_csv(rows=120, seed=3)
    queued, finished = ingest(more, filename="more.csv", mode="append")
    assert queued["options"] == {**DEFAULT_OPTIONS, "mode": "append"}
    assert (finished["status"], finished["dataset_version"], finished["problems"]) == ("succeeded", 2, [])
    version = api.call("get", "/api/v1/datasets/loans/versions/2", tokens["read"]).json()
    assert (version["number"], version["parent"], version["mode"], version["row_count"]) == (2, 1, "append", 420)
    assert version["original_name"] == "more.csv"
    assert version["schema"] == SCHEMA
    assert version["validation"]["schema_changes"] == {"added": [], "removed": [], "retyped": [], "breaking": False}
    # The rows are the parent's, then the upload's.
    response, rows = download(api, tokens["read"], "/api/v1/datasets/loans/versions/2/download")
    assert response.status_code == 200
    assert rows == generated_csv() + more.split(b"\n", 1)[1]


def test_append_without_a_parent_fails_the_job(api, tokens, loans, ingest):
    _, job = ingest(mode="append")
    assert (job["status"], job["error"], job["problems"], job["dataset_version"]) == (
        "failed",
        "There is no version to append to; upload with mode 'replace' first.",
        [],
        None,
    )
    assert not DatasetVersion.objects.exists()
    assert stored("uploads") == set()


def test_append_needs_the_parents_columns_and_types(api, tokens, loans, ingest):
    ingest()
    _, job = ingest(b"customer_id,income,age,repaid,score\nC1,1.5,young,yes,3\n", mode="append")
    assert (job["status"], job["error"], job["problems"]) == (
        "failed",
        "An appended file needs the parent version's columns and types.",
        [
            {"row": None, "column": "score", "message": "is not in the parent version"},
            {"row": None, "column": "city", "message": "is missing; the parent version has it"},
            {"row": None, "column": "age", "message": "is string; the parent version's is integer"},
        ],
    )
    assert list(DatasetVersion.objects.values_list("number", flat=True)) == [1]


def test_a_breaking_schema_change_fails_the_job_unless_accepted(api, tokens, loans, ingest):
    ingest()
    files = stored("datasets")
    changed = b"customer_id,income,age,repaid,score\nC1,1.5,young,yes,3\nC2,2.5,old,no,4\n"
    _, refused = ingest(changed)
    assert (refused["status"], refused["error"], refused["problems"], refused["dataset_version"]) == (
        "failed",
        "The schema changes in a breaking way; upload again with 'accept schema change' if intended.",
        [
            {"row": None, "column": "city", "message": "was removed"},
            {"row": None, "column": "age", "message": "changed type from integer to string"},
        ],
        None,
    )
    assert refused["details"] == {
        "schema_changes": {
            "added": ["score"],
            "removed": ["city"],
            "retyped": [{"name": "age", "from": "integer", "to": "string"}],
            "breaking": True,
        }
    }
    assert list(DatasetVersion.objects.values_list("number", flat=True)) == [1]
    assert stored("datasets") == files
    assert stored("uploads") == set()

    _, accepted = ingest(changed, accept_schema_change="true")
    assert (accepted["status"], accepted["options"]["accept_schema_change"], accepted["dataset_version"]) == (
        "succeeded",
        True,
        2,
    )
    version = api.call("get", "/api/v1/datasets/loans/versions/2", tokens["read"]).json()
    assert (version["row_count"], version["parent"]) == (2, 1)
    assert version["validation"]["schema_changes"] == {
        "added": ["score"],
        "removed": ["city"],
        "retyped": [{"name": "age", "from": "integer", "to": "string"}],
        "breaking": True,
    }


def test_declared_options_are_used(api, tokens, db, ingest):
    api.call("post", "/api/v1/datasets", tokens["write"], {"name": "loans", "target_column": "repaid"})
    content = "customer_id;city;repaid\nC1;Zürich;yes\nC2;Genève;no\n".encode("latin-1")
    _, job = ingest(content, filename="export.txt", format="csv", delimiter=";", encoding="latin-1")
    assert (job["status"], job["dataset_version"]) == ("succeeded", 1)
    version = api.call("get", "/api/v1/datasets/loans/versions/1", tokens["read"]).json()
    assert version["validation"]["source"] == {"format": "csv", "delimiter": ";", "encoding": "latin-1"}
    assert version["statistics"]["city"]["top"] == [{"value": "Genève", "count": 1}, {"value": "Zürich", "count": 1}]


# -- refusals at the HTTP edge: nothing is created -------------------------------------------------------


def nothing_ingested() -> None:
    assert not IngestJob.objects.exists()
    assert not DatasetVersion.objects.exists()
    assert stored("uploads") == set()
    assert stored("datasets") == set()
    assert audit("ingest_job.created") == []


@pytest.mark.parametrize(
    ("content", "fields", "expected"),
    [
        pytest.param(
            None,
            {},
            {
                "message": "Attach the file as the multipart field 'file'.",
                "extra": {"fields": {"file": ["This field is required."]}},
            },
            id="no-file",
        ),
        pytest.param(
            generated_csv(),
            {"mode": "sideways"},
            {
                "message": "The upload options are not valid.",
                "extra": {"fields": {"mode": ["Choose one of: replace, append."]}},
            },
            id="bad-mode",
        ),
        pytest.param(
            generated_csv(),
            {"format": "xls"},
            {
                "message": "The upload options are not valid.",
                "extra": {"fields": {"format": ["Choose one of: csv, parquet, jsonl."]}},
            },
            id="bad-format",
        ),
        pytest.param(
            generated_csv(),
            {"delimiter": ";;"},
            {
                "message": "The upload options are not valid.",
                "extra": {"fields": {"delimiter": ["Give one character (or 'tab')."]}},
            },
            id="bad-delimiter",
        ),
        pytest.param(
            generated_csv(),
            {"encoding": "klingon"},
            {
                "message": "The upload options are not valid.",
                "extra": {"fields": {"encoding": ["Unknown encoding 'klingon'."]}},
            },
            id="bad-encoding",
        ),
        pytest.param(
            generated_csv(),
            {"mode": "sideways", "format": "xls", "delimiter": ";;"},
            {
                "message": "The upload options are not valid.",
                "extra": {
                    "fields": {
                        "mode": ["Choose one of: replace, append."],
                        "format": ["Choose one of: csv, parquet, jsonl."],
                        "delimiter": ["Give one character (or 'tab')."],
                    }
                },
            },
            id="every-problem-at-once",
        ),
        pytest.param(
            generated_csv(),
            {"sha256": "0" * 64},
            {
                "message": "The upload is damaged or truncated: its SHA-256 does not match the one given.",
                "extra": {"fields": {"sha256": [f"Received a file with SHA-256 {sha256(generated_csv())}."]}},
            },
            id="sha256-mismatch",
        ),
        pytest.param(
            generated_csv()[:-100],
            {"sha256": sha256(generated_csv())},
            {
                "message": "The upload is damaged or truncated: its SHA-256 does not match the one given.",
                "extra": {"fields": {"sha256": [f"Received a file with SHA-256 {sha256(generated_csv()[:-100])}."]}},
            },
            id="truncated",
        ),
    ],
)
def test_a_bad_request_is_400_and_creates_nothing(api, tokens, loans, content, fields, expected):
    response = upload(api, tokens["write"], content, **fields)
    assert (response.status_code, response.json()) == (400, expected)
    nothing_ingested()


def test_an_upload_over_the_limit_is_413_and_stages_nothing(api, tokens, loans, settings):
    settings.FARO_UPLOAD_MAX_BYTES = 2048
    response = upload(api, tokens["write"], generated_csv())
    assert response.status_code == 413
    declared = int(response.wsgi_request.META["CONTENT_LENGTH"])
    assert declared > len(generated_csv()) > 2048
    assert response.json() == {"message": f"Upload of {declared} bytes exceeds the limit of 2048 bytes.", "extra": {}}
    nothing_ingested()


def test_json_is_not_an_upload(api, tokens, loans):
    response = api.call("post", "/api/v1/datasets/loans/versions", tokens["write"], {"file": "a,b\n1,2\n"})
    assert (response.status_code, response.json()) == (
        415,
        {"message": 'Unsupported media type "application/json" in request.', "extra": {}},
    )
    nothing_ingested()


def test_uploading_to_an_unknown_dataset_is_404(api, tokens, loans):
    response = upload(api, tokens["write"], generated_csv(), dataset="nope")
    assert (response.status_code, response.json()) == (404, {"message": "No dataset named 'nope'.", "extra": {}})
    nothing_ingested()


# -- refusals inside the job: the job fails, nothing is stored -------------------------------------------

MISSING_KEY = HEADER + b"C1,1000,30,north,yes\n,2000,40,south,no\n"


@pytest.mark.parametrize(
    ("content", "filename", "fields", "error", "problems"),
    [
        pytest.param(b"", "loans.csv", {}, "The file is empty.", [], id="empty"),
        pytest.param(HEADER, "loans.csv", {}, "The file has a header but no data rows.", [], id="header-only"),
        pytest.param(
            b"customer_id,income,income,city,repaid\nC1,1,2,north,yes\n",
            "loans.csv",
            {},
            "The header row has problems.",
            [{"row": 1, "column": 3, "message": "duplicate column name 'income' (also column 2)"}],
            id="duplicate-column",
        ),
        pytest.param(
            b"customer_id,,age,city,repaid\nC1,1,2,north,yes\n",
            "loans.csv",
            {},
            "The header row has problems.",
            [{"row": 1, "column": 2, "message": "empty column name"}],
            id="empty-column-name",
        ),
        pytest.param(
            "customer_id,größe,age,city,repaid\nC1,1,2,north,yes\n".encode(),
            "loans.csv",
            {},
            "The header row has problems.",
            [{"row": 1, "column": 2, "message": "column name 'größe' has characters outside printable ASCII"}],
            id="non-ascii-column-name",
        ),
        pytest.param(
            HEADER + b"C1,1000,30,north,yes\nC2,2000,40,south\n",
            "loans.csv",
            {},
            "The CSV could not be parsed: CSV parse error: Expected 5 columns, got 4: C2,2000,40,south",
            [{"row": 3, "column": None, "message": "has 4 fields; the header has 5"}],
            id="ragged-row",
        ),
        pytest.param(
            HEADER + b'C1,"1000,30,north,yes\nC2,2000,40,south,no\n',
            "loans.csv",
            {},
            "A quoted field is never closed.",
            [{"row": 2, "column": None, "message": "cannot be read (unexpected end of data); is a quote left open?"}],
            id="unterminated-quote",
        ),
        pytest.param(
            HEADER + b"C1,\xff\xfe,30,north,yes\n",
            "loans.csv",
            {},
            "The file is not UTF-8; declare its encoding (for example latin-1).",
            [{"row": 2, "column": None, "message": f"invalid UTF-8 byte at offset {len(HEADER) + 3}"}],
            id="not-utf8",
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
            "loans.csv",
            {},
            "loans.csv is a binary file, not CSV text.",
            [],
            id="png-named-csv",
        ),
        pytest.param(
            generated_csv(),
            "loans.csv",
            {"format": "parquet"},
            "loans.csv is not a Parquet file (it lacks the PAR1 signature).",
            [],
            id="csv-declared-parquet",
        ),
        pytest.param(
            generated_csv(),
            "loans.xlsx",
            {},
            "Cannot tell the format of 'loans.xlsx': name it .csv, .parquet or .jsonl, or declare it.",
            [],
            id="unknown-extension",
        ),
        pytest.param(
            b"customer_id,income,age,city\nC1,1000,30,north\n",
            "loans.csv",
            {},
            "The file does not match the dataset's declaration.",
            [{"row": None, "column": "repaid", "message": "the dataset's target column 'repaid' is not in the file"}],
            id="missing-target",
        ),
        pytest.param(
            MISSING_KEY,
            "loans.csv",
            {},
            "The file does not match the dataset's declaration.",
            [{"row": None, "column": "customer_id", "message": "1 rows have no subject key"}],
            id="missing-subject-key",
        ),
    ],
)
def test_a_bad_file_fails_the_job_and_stores_nothing(
    api, tokens, loans, ingest, content, filename, fields, error, problems
):
    queued, job = ingest(content, filename=filename, **fields)
    stored_job = IngestJob.objects.get()
    assert queued["status"] == "queued"
    assert job == {
        **queued,
        "status": "failed",
        "progress": job["progress"],  # how far reading got before the failure: checked below
        "started_at": iso(stored_job.started_at),
        "finished_at": iso(stored_job.finished_at),
        "error": error,
        "problems": problems,
        "dataset_version": None,
    }
    assert 0.0 <= job["progress"] < 1.0
    assert job["finished_at"] is not None
    assert stored_job.staged_path == ""
    assert not DatasetVersion.objects.exists()
    assert stored("datasets") == set()
    assert stored("uploads") == set()
    assert audit("ingest_job.failed") == [
        ("system", "data.ingestjob", str(stored_job.pk), {"error": error, "problems": len(problems)})
    ]
    assert audit("dataset_version.created") == []


def test_tagged_columns_must_be_in_the_file(api, tokens, ingest):
    api.call("post", "/api/v1/datasets", tokens["write"], {**GOVERNED, "column_tags": {"email": ["personal"]}})
    _, job = ingest()
    assert (job["status"], job["error"], job["problems"]) == (
        "failed",
        "The file does not match the dataset's declaration.",
        [{"row": None, "column": "email", "message": "is tagged on the dataset but not in the file"}],
    )
    assert not DatasetVersion.objects.exists()


def test_a_failed_job_after_a_good_one_keeps_the_good_version(api, tokens, loans, ingest):
    _, good = ingest()
    files = stored("datasets")
    _, bad = ingest(HEADER)
    assert (good["status"], bad["status"]) == ("succeeded", "failed")
    assert list(DatasetVersion.objects.values_list("number", flat=True)) == [1]
    assert stored("datasets") == files
    assert stored("uploads") == set()
    assert api.call("get", "/api/v1/datasets/loans", tokens["read"]).json()["latest_version"] == 1


# -- checks ----------------------------------------------------------------------------------------------

RANGE = {"kind": "range", "column": "age", "params": {"min": 18, "max": 80}}
UNIQUE = {"kind": "unique", "column": "customer_id", "severity": "warning"}
ALLOWED = {"kind": "allowed_values", "column": "city", "params": {"values": ["north", "south", "east"]}}


def check_body(check: DatasetCheck) -> dict:
    return {
        "id": check.pk,
        "kind": check.kind,
        "column": check.column,
        "params": check.params,
        "severity": check.severity,
        "enabled": check.enabled,
        "created_at": iso(check.created_at),
    }


def test_create_and_list_checks(api, tokens, loans):
    bodies = []
    for spec in (RANGE, UNIQUE, ALLOWED):
        response = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], spec)
        assert response.status_code == 201, response.content
        bodies.append(response.json())
    range_check, unique_check, allowed_check = DatasetCheck.objects.order_by("id")
    assert bodies == [
        {
            "id": range_check.pk,
            "kind": "range",
            "column": "age",
            "params": {"min": 18, "max": 80},
            "severity": "blocking",
            "enabled": True,
            "created_at": iso(range_check.created_at),
        },
        {
            "id": unique_check.pk,
            "kind": "unique",
            "column": "customer_id",
            "params": {},
            "severity": "warning",
            "enabled": True,
            "created_at": iso(unique_check.created_at),
        },
        {
            "id": allowed_check.pk,
            "kind": "allowed_values",
            "column": "city",
            "params": {"values": ["north", "south", "east"]},
            "severity": "blocking",
            "enabled": True,
            "created_at": iso(allowed_check.created_at),
        },
    ]
    listed = api.call("get", "/api/v1/datasets/loans/checks", tokens["read"])
    assert (listed.status_code, listed.json()) == (200, bodies)
    detail = api.call("get", f"/api/v1/datasets/loans/checks/{unique_check.pk}", tokens["read"])
    assert (detail.status_code, detail.json()) == (200, bodies[1])
    assert audit("dataset_check.created") == [
        (
            actor("write"),
            "data.datasetcheck",
            str(check.pk),
            {"kind": check.kind, "column": check.column, "params": check.params, "severity": check.severity},
        )
        for check in (range_check, unique_check, allowed_check)
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"kind": "range", "column": "age"},
            {
                "message": "The check is not valid.",
                "extra": {"fields": {"params": ["give at least one of min and max"]}},
            },
            id="range-without-bounds",
        ),
        pytest.param(
            {"kind": "range", "column": "age", "params": {"min": 80, "max": 18}},
            {
                "message": "The check is not valid.",
                "extra": {"fields": {"params": ["min: must not be greater than max"]}},
            },
            id="range-upside-down",
        ),
        pytest.param(
            {"kind": "range", "column": "age", "params": {"min": "18"}},
            {"message": "The check is not valid.", "extra": {"fields": {"params": ["min: must be a finite number"]}}},
            id="range-bound-not-a-number",
        ),
        pytest.param(
            {"kind": "regex", "column": "city", "params": {"pattern": "(north"}},
            {
                "message": "The check is not valid.",
                "extra": {
                    "fields": {
                        "params": [
                            "pattern: is not a valid regular expression: "
                            "missing ), unterminated subpattern at position 0"
                        ]
                    }
                },
            },
            id="regex-does-not-compile",
        ),
        pytest.param(
            {"kind": "allowed_values", "column": "city", "params": {"values": []}},
            {
                "message": "The check is not valid.",
                "extra": {"fields": {"params": ["values: give a non-empty list of values"]}},
            },
            id="no-allowed-values",
        ),
        pytest.param(
            {"kind": "unique", "column": "", "params": {"strict": True}},
            {
                "message": "The check is not valid.",
                "extra": {
                    "fields": {
                        "column": ["name the column to check"],
                        "params": ["unknown parameter 'strict'; allowed: none"],
                    }
                },
            },
            id="no-column-and-unknown-parameter",
        ),
        pytest.param(
            {"kind": "bogus", "column": "age"},
            {"message": "Invalid input.", "extra": {"fields": {"kind": ['"bogus" is not a valid choice.']}}},
            id="unknown-kind",
        ),
        pytest.param(
            {"kind": "unique", "column": "age", "severity": "fatal"},
            {"message": "Invalid input.", "extra": {"fields": {"severity": ['"fatal" is not a valid choice.']}}},
            id="unknown-severity",
        ),
    ],
)
def test_an_invalid_check_is_400(api, tokens, loans, spec, expected):
    response = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], spec)
    assert (response.status_code, response.json()) == (400, expected)
    assert not DatasetCheck.objects.exists()
    assert audit("dataset_check.created") == []


def test_patch_and_delete_a_check(api, tokens, loans):
    created = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], RANGE).json()
    path = f"/api/v1/datasets/loans/checks/{created['id']}"

    patched = api.call("patch", path, tokens["write"], {"severity": "warning"})
    assert (patched.status_code, patched.json()) == (200, {**created, "severity": "warning"})
    assert DatasetCheck.objects.get().severity == "warning"
    check_id = str(created["id"])
    assert audit("dataset_check.updated") == [
        (
            actor("write"),
            "data.datasetcheck",
            check_id,
            {
                "kind": "range",
                "column": "age",
                "params": {"min": 18, "max": 80},
                "severity": "warning",
                "enabled": True,
            },
        )
    ]

    refused = api.call("patch", path, tokens["write"], {"params": {"min": 80, "max": 18}})
    assert (refused.status_code, refused.json()) == (
        400,
        {"message": "The check is not valid.", "extra": {"fields": {"params": ["min: must not be greater than max"]}}},
    )
    assert DatasetCheck.objects.get().params == {"min": 18, "max": 80}

    deleted = api.call("delete", path, tokens["write"])
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert not DatasetCheck.objects.exists()
    assert audit("dataset_check.deleted") == [
        (
            actor("write"),
            "data.datasetcheck",
            check_id,
            {"kind": "range", "column": "age", "params": {"min": 18, "max": 80}, "severity": "warning"},
        )
    ]
    gone = api.call("get", path, tokens["read"])
    assert (gone.status_code, gone.json()) == (
        404,
        {"message": f"Dataset 'loans' has no check {created['id']}.", "extra": {}},
    )


def test_a_check_belongs_to_its_dataset(api, tokens, loans):
    created = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], RANGE).json()
    api.call("post", "/api/v1/datasets", tokens["write"], {"name": "other"})
    response = api.call("delete", f"/api/v1/datasets/other/checks/{created['id']}", tokens["write"])
    assert (response.status_code, response.json()) == (
        404,
        {"message": f"Dataset 'other' has no check {created['id']}.", "extra": {}},
    )
    assert DatasetCheck.objects.count() == 1


def test_a_blocking_check_fails_the_next_upload(api, tokens, loans, ingest):
    content = generated_csv()
    old = [index for index, row in enumerate(csv_rows(content), start=1) if int(row["age"]) > 65]
    assert len(old) > 20  # enough to see the list of failing rows capped
    check = api.call(
        "post", "/api/v1/datasets/loans/checks", tokens["write"], {**RANGE, "params": {"min": 18, "max": 65}}
    ).json()
    api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], ALLOWED)

    _, refused = ingest(content)
    message = f"{len(old)} values of 'age' are outside [18, 65]"
    assert (refused["status"], refused["error"], refused["problems"], refused["dataset_version"]) == (
        "failed",
        "1 blocking check(s) failed.",
        [{"row": old[0], "column": "age", "message": message, "rows": old[:20], "count": len(old)}],
        None,
    )
    assert not DatasetVersion.objects.exists()
    assert stored("datasets") == set()
    assert stored("uploads") == set()

    # As a warning the same check lets the upload through and is recorded on the version.
    api.call("patch", f"/api/v1/datasets/loans/checks/{check['id']}", tokens["write"], {"severity": "warning"})
    _, accepted = ingest(content)
    assert (accepted["status"], accepted["dataset_version"]) == ("succeeded", 1)
    version = api.call("get", "/api/v1/datasets/loans/versions/1", tokens["read"]).json()
    assert version["validation"]["checks"] == [
        {
            "kind": "range",
            "column": "age",
            "severity": "warning",
            "passed": False,
            "message": message,
            "failing_rows": old[:20],
            "failing_count": len(old),
        },
        {
            "kind": "allowed_values",
            "column": "city",
            "severity": "blocking",
            "passed": True,
            "message": "every value of 'city' is among 'north', 'south', 'east'",
            "failing_rows": [],
            "failing_count": 0,
        },
    ]


# -- downloads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?format=csv"])
def test_download_a_version_as_csv(api, tokens, loans, ingest, query):
    ingest()
    response, content = download(api, tokens["read"], query=query)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="loans-v1.csv"'
    assert content == generated_csv()  # the rows as uploaded, to the character
    version = DatasetVersion.objects.get()
    assert audit("dataset_version.downloaded") == [
        (actor("read"), "data.datasetversion", str(version.pk), {"dataset": "loans", "number": 1, "format": "csv"})
    ]


def test_the_csv_download_neutralises_formulas(api, tokens, db, ingest):
    api.call("post", "/api/v1/datasets", tokens["write"], {"name": "cells", "target_column": "repaid"})
    content = b"note,repaid\n=1+1,yes\n+SUM(A1),no\n-2,yes\n@cmd,no\nplain,yes\n"
    _, job = ingest(content, dataset="cells")
    assert job["status"] == "succeeded", job
    response, rows = download(api, tokens["read"], "/api/v1/datasets/cells/versions/1/download", "?format=csv")
    assert response.status_code == 200
    assert rows.decode() == "note,repaid\n'=1+1,yes\n'+SUM(A1),no\n'-2,yes\n'@cmd,no\nplain,yes\n"


def test_download_a_version_as_parquet(api, tokens, loans, ingest):
    ingest()
    version = DatasetVersion.objects.get()
    response, content = download(api, tokens["read"], query="?format=parquet")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == 'attachment; filename="loans-v1.parquet"'
    assert sha256(content) == version.sha256
    assert content[:4] == b"PAR1"
    assert audit("dataset_version.downloaded") == [
        (actor("read"), "data.datasetversion", str(version.pk), {"dataset": "loans", "number": 1, "format": "parquet"})
    ]


def test_an_unknown_download_format_is_400(api, tokens, loans, ingest):
    ingest()
    response = api.call("get", "/api/v1/datasets/loans/versions/1/download?format=xml", tokens["read"])
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "message": "Choose format csv or parquet.",
        "extra": {"fields": {"format": ["Unknown format."]}},
    }
    assert audit("dataset_version.downloaded") == []


def test_a_damaged_version_is_not_downloaded(api, tokens, loans, ingest):
    ingest()
    version = DatasetVersion.objects.get()
    (Path(settings.FARO_ARTEFACT_ROOT) / version.file_path).unlink()
    response = api.call("get", "/api/v1/datasets/loans/versions/1/download?format=parquet", tokens["read"])
    assert (response.status_code, response.json()) == (
        503,
        {"message": f"Artefact {version.file_path} is missing from storage", "extra": {}},
    )
    assert audit("dataset_version.downloaded") == []


@pytest.mark.parametrize(
    ("persona", "status", "message"),
    [
        ("predict", 403, "This token lacks the 'read' scope."),
        (None, 401, "Authentication credentials were not provided."),
    ],
)
def test_downloading_needs_the_read_scope(api, tokens, loans, ingest, persona, status, message):
    ingest()
    response = api.call(
        "get", "/api/v1/datasets/loans/versions/1/download?format=csv", tokens[persona] if persona else None
    )
    assert (response.status_code, response.json()) == (status, {"message": message, "extra": {}})
    assert audit("dataset_version.downloaded") == []


# -- reading, and who may do what ------------------------------------------------------------------------


def test_read_endpoints_with_the_read_token(api, tokens, loans, ingest):
    check = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], UNIQUE).json()
    _, job = ingest()
    read = tokens["read"]
    dataset = {**loans, "latest_version": 1}

    assert api.call("get", "/api/v1/datasets", read).json() == [dataset]
    assert api.call("get", "/api/v1/datasets/loans", read).json() == dataset
    version = api.call("get", "/api/v1/datasets/loans/versions/1", read)
    assert version.status_code == 200
    assert api.call("get", "/api/v1/datasets/loans/versions", read).json() == [version.json()]
    assert api.call("get", "/api/v1/datasets/loans/checks", read).json() == [check]
    assert api.call("get", f"/api/v1/datasets/loans/checks/{check['id']}", read).json() == check
    assert api.call("get", job["url"], read).json() == job == job_body(IngestJob.objects.get())
    assert version.json()["validation"]["checks"][0]["message"] == "'customer_id' has no duplicated values"


def test_versions_are_listed_newest_first(api, tokens, loans, ingest):
    ingest()
    ingest(generated_csv(rows=50, seed=1))
    listed = api.call("get", "/api/v1/datasets/loans/versions", tokens["read"]).json()
    assert [(item["number"], item["parent"], item["row_count"]) for item in listed] == [(2, 1, 50), (1, None, 300)]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/datasets/nope", "No dataset named 'nope'."),
        ("/api/v1/datasets/nope/versions", "No dataset named 'nope'."),
        ("/api/v1/datasets/nope/versions/1", "No dataset named 'nope'."),
        ("/api/v1/datasets/loans/versions/2", "Dataset 'loans' has no version 2."),
        ("/api/v1/datasets/loans/versions/2/download", "Dataset 'loans' has no version 2."),
        ("/api/v1/datasets/nope/checks", "No dataset named 'nope'."),
        ("/api/v1/datasets/loans/checks/999", "Dataset 'loans' has no check 999."),
        ("/api/v1/ingest-jobs/999", "No ingest job 999."),
    ],
)
def test_reading_what_does_not_exist_is_404(api, tokens, loans, ingest, path, message):
    ingest()
    response = api.call("get", path, tokens["read"])
    assert (response.status_code, response.json()) == (404, {"message": message, "extra": {}})


READS = [
    "/api/v1/datasets",
    "/api/v1/datasets/loans",
    "/api/v1/datasets/loans/versions",
    "/api/v1/datasets/loans/versions/1",
    "/api/v1/datasets/loans/checks",
    "/api/v1/ingest-jobs/1",
]


@pytest.mark.parametrize("path", READS)
def test_reading_needs_the_read_scope_and_a_token(api, tokens, loans, path):
    forbidden = api.call("get", path, tokens["predict"])
    assert (forbidden.status_code, forbidden.json()) == (
        403,
        {"message": "This token lacks the 'read' scope.", "extra": {}},
    )
    anonymous = api.call("get", path, None)
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"message": "Authentication credentials were not provided.", "extra": {}},
    )
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'


def snapshot() -> dict:
    """Everything a write could change."""
    return {
        "datasets": list(Dataset.objects.values()),
        "versions": list(DatasetVersion.objects.values()),
        "checks": list(DatasetCheck.objects.values()),
        "jobs": list(IngestJob.objects.values()),
        "audit": AuditEvent.objects.count(),
        "uploads": stored("uploads"),
        "datasets_files": stored("datasets"),
    }


WRITES = [
    pytest.param("post", "/api/v1/datasets", {"name": "other"}, 201, id="create-dataset"),
    pytest.param("patch", "/api/v1/datasets/loans", {"description": "changed"}, 200, id="patch-dataset"),
    pytest.param("post", "/api/v1/datasets/loans/versions", "upload", 202, id="upload"),
    pytest.param("post", "/api/v1/datasets/loans/checks", RANGE, 201, id="create-check"),
    pytest.param("patch", "/api/v1/datasets/loans/checks/{check}", {"severity": "warning"}, 200, id="patch-check"),
    pytest.param("delete", "/api/v1/datasets/loans/checks/{check}", None, 204, id="delete-check"),
]


def write(api, token, method, path, body, check):
    if body == "upload":
        return upload(api, token, generated_csv(rows=10))
    return api.call(method, path.format(check=check["id"]), token, body)


@pytest.mark.parametrize(("method", "path", "body", "allowed"), WRITES)
@pytest.mark.parametrize(
    ("persona", "status", "message"),
    [
        ("read", 403, "This token lacks the 'write' scope."),
        ("predict", 403, "This token lacks the 'write' scope."),
        (None, 401, "Authentication credentials were not provided."),
    ],
)
def test_writing_needs_the_write_scope_and_changes_nothing_otherwise(
    api, tokens, loans, ingest, method, path, body, allowed, persona, status, message
):
    ingest()
    check = api.call("post", "/api/v1/datasets/loans/checks", tokens["write"], UNIQUE).json()
    before = snapshot()
    response = write(api, tokens[persona] if persona else None, method, path, body, check)
    assert (response.status_code, response.json()) == (status, {"message": message, "extra": {}})
    assert snapshot() == before
    # The same request with the write token does go through, so the refusal above was the scope's doing.
    assert write(api, tokens["write"], method, path, body, check).status_code == allowed
    assert snapshot() != before
