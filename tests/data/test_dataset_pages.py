"""The data scientists' pages: datasets with their governance, uploads followed live, version reports."""

import csv
import hashlib
import io
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from apps.data.models import Dataset, DatasetVersion, IngestJob
from apps.data.services import dataset_check_create, dataset_version_create_from_upload
from apps.governance.models import AuditEvent
from tests.conftest import generated_csv

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_ACCEPT = "application/json"


def new_dataset_form(**overrides):
    form = {
        "name": "loans",
        "description": "Generated loans",
        "target_column": "repaid",
        "subject_key_column": "customer_id",
        "purpose": "Decide on loan applications.",
        "legal_basis": "b",
        "retention_days": "365",
        "column_tags": "customer_id: personal\nage: personal, protected\n\n# the label\nrepaid: target\n",
    }
    form.update(overrides)
    return form


def article(page: str, column: str) -> str:
    """The report's section about one column."""
    for part in page.split("<article")[1:]:
        if f"<code>{column}</code>" in part.split("</h3>")[0]:
            return part.split("</article>")[0]
    raise AssertionError(f"no section for {column}")


def bar_titles(section: str) -> list[str]:
    return re.findall(r'<g class="bar"><title>([^<]*)</title>', section)


# -- creating and editing datasets ------------------------------------------------------------------------


def test_a_data_scientist_creates_a_dataset_with_its_governance(client, users):
    client.force_login(users["ds"])
    response = client.post(reverse("data:dataset-list"), new_dataset_form())
    assert response.status_code == 302
    assert response["Location"] == "/datasets/loans/"
    dataset = Dataset.objects.get()
    assert (
        dataset.name,
        dataset.description,
        dataset.target_column,
        dataset.subject_key_column,
        dataset.purpose,
        dataset.legal_basis,
        dataset.retention_days,
        dataset.column_tags,
        dataset.owner,
        dataset.created_by,
    ) == (
        "loans",
        "Generated loans",
        "repaid",
        "customer_id",
        "Decide on loan applications.",
        "b",
        365,
        {"customer_id": ["personal"], "age": ["personal", "protected"], "repaid": ["target"]},
        users["ds"],
        users["ds"],
    )
    event = AuditEvent.objects.get(action="dataset.created")
    assert event.actor == f"user:{users['ds'].pk}"

    page = client.get(response["Location"]).content.decode()
    assert "Dataset loans created. Upload its first version below." in page
    assert "(b) contract" in page
    assert "365 days" in page
    assert '<span class="tag tag-protected">protected</span>' in page
    # The edit form shows the tags one column a line, sorted.
    assert "age: personal, protected\ncustomer_id: personal\nrepaid: target</textarea>" in page


def test_personal_columns_without_purpose_legal_basis_and_retention_are_refused_field_by_field(client, users):
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-list"),
        new_dataset_form(purpose="", legal_basis="", retention_days="", column_tags="customer_id: personal"),
    )
    assert response.status_code == 400
    assert Dataset.objects.count() == 0
    assert response.context["form"].errors == {
        "__all__": ["The dataset is not valid."],
        "purpose": ["A dataset with personal columns needs a purpose."],
        "legal_basis": ["A dataset with personal columns needs a legal basis."],
        "retention_days": ["A dataset with personal columns needs a retention period."],
    }
    page = response.content.decode()
    assert "A dataset with personal columns needs a legal basis." in page
    assert 'aria-invalid="true"' in page


def test_column_tags_are_read_line_by_line_and_unknown_tags_named(client, users):
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-list"),
        new_dataset_form(column_tags="age: personal, secret\njust text\nage: protected\ncity:"),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "column_tags": [
            "Line 1: unknown tag 'secret'; use personal, special_category, protected, target.",
            "Line 2: write it as 'column: tag, tag'.",
            "Line 4: give 'city' at least one tag.",
        ]
    }
    assert Dataset.objects.count() == 0


def test_a_taken_name_is_refused_on_the_name_field(client, users, dataset):
    client.force_login(users["ds"])
    response = client.post(reverse("data:dataset-list"), new_dataset_form())
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "__all__": ["A dataset named 'loans' already exists."],
        "name": ["A dataset with this name already exists."],
    }


def test_the_dataset_page_edits_description_and_governance(client, users, dataset):
    client.force_login(users["ds"])
    form = new_dataset_form(description="Loans, regenerated", retention_days="90")
    del form["name"]
    response = client.post(reverse("data:dataset-detail", args=["loans"]), form)
    assert response.status_code == 302
    dataset.refresh_from_db()
    assert (dataset.description, dataset.retention_days, dataset.legal_basis, dataset.personal_columns) == (
        "Loans, regenerated",
        90,
        "b",
        ["age", "customer_id"],
    )
    assert AuditEvent.objects.filter(action="dataset.updated").count() == 1

    form["legal_basis"] = ""
    response = client.post(reverse("data:dataset-detail", args=["loans"]), form)
    assert response.status_code == 400
    assert response.context["edit_form"].errors["legal_basis"] == [
        "A dataset with personal columns needs a legal basis."
    ]
    dataset.refresh_from_db()
    assert dataset.legal_basis == "b"
    assert '<details class="edit" open>' in response.content.decode()


def test_the_dataset_page_lists_checks_versions_and_uploads(client, users, dataset, csv_upload):
    dataset_check_create(dataset=dataset, kind="range", column="age", params={"min": 18}, severity="warning")
    first = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    dataset_version_create_from_upload(
        dataset=dataset, upload=csv_upload(generated_csv(rows=10, seed=3)), options={"mode": "append"}
    )
    client.force_login(users["ds"])
    page = client.get(reverse("data:dataset-detail", args=["loans"])).content.decode()
    assert (
        '<a href="/datasets/loans/v2/">v2</a></td>\n    <td>v1</td>\n    <td>append</td>\n    <td class="num">310</td>'
        in (page)
    )
    assert f'<code title="{first.sha256}">{first.sha256[:12]}</code>' in page
    assert "<td>Range</td>" in page
    assert "min <code>18</code>" in page
    assert f'href="/admin/data/dataset/{dataset.pk}/change/"' in page
    assert 'id="upload-form"' in page
    assert 'action="/datasets/loans/upload/"' in page
    assert 'enctype="multipart/form-data"' in page
    assert "/static/js/upload.js" in page


# -- uploads ----------------------------------------------------------------------------------------------


def test_an_upload_answers_202_with_the_job_and_its_status_follows_it_to_the_version(
    client, users, dataset, csv_upload, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("data:dataset-upload", args=["loans"]),
            {"file": csv_upload(), "mode": "replace", "delimiter": ",", "encoding": "utf-8"},
            HTTP_ACCEPT=JSON_ACCEPT,
        )
    assert response.status_code == 202
    job = IngestJob.objects.get()
    assert response.json() == {
        "job": job.pk,
        "status_url": f"/datasets/jobs/{job.pk}/status/",
        "page_url": f"/datasets/jobs/{job.pk}/",
    }
    assert job.options == {
        "mode": "replace",
        "format": None,
        "delimiter": ",",
        "encoding": "utf-8",
        "accept_schema_change": False,
    }
    status = client.get(response.json()["status_url"])
    assert status.status_code == 200
    assert status["Cache-Control"] == "no-store"
    assert status.json() == {
        "id": job.pk,
        "dataset": "loans",
        "status": "succeeded",
        "status_display": "Succeeded",
        "finished": True,
        "progress": 1.0,
        "error": "",
        "problems": [],
        "original_name": "loans.csv",
        "size_bytes": len(generated_csv()),
        "version": 1,
        "version_url": "/datasets/loans/v1/",
        "status_url": f"/datasets/jobs/{job.pk}/status/",
        "page_url": f"/datasets/jobs/{job.pk}/",
    }
    version = DatasetVersion.objects.get()
    assert (version.row_count, version.created_by) == (300, users["ds"])


def test_without_javascript_the_form_post_redirects_to_a_job_page_that_refreshes_until_done(
    client, users, dataset, csv_upload, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("data:dataset-upload", args=["loans"]), {"file": csv_upload()}, HTTP_ACCEPT=BROWSER_ACCEPT
        )
    job = IngestJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/datasets/jobs/{job.pk}/"

    page = client.get(response["Location"]).content.decode()
    assert '<meta http-equiv="refresh" content="1">' in page
    assert '<span class="status queued" data-testid="status">Queued</span>' in page

    for callback in callbacks:  # the worker's turn
        callback()
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert '<span class="status succeeded" data-testid="status">Succeeded</span>' in page
    assert "Version 1 created with 300 rows." in page
    assert '<a class="button" href="/datasets/loans/v1/">Open the validation report of v1</a>' in page


def test_a_bad_upload_lists_its_problems_on_the_status_and_the_job_page(
    client, users, dataset, csv_upload, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("data:dataset-upload", args=["loans"]),
            {"file": csv_upload(b"customer_id,income,income\nC1,1,2\n")},
            HTTP_ACCEPT=JSON_ACCEPT,
        )
    assert response.status_code == 202
    status = client.get(response.json()["status_url"]).json()
    assert (status["status"], status["finished"], status["error"], status["problems"], status["version"]) == (
        "failed",
        True,
        "The header row has problems.",
        [{"row": 1, "column": 3, "message": "duplicate column name 'income' (also column 2)"}],
        None,
    )
    page = client.get(response.json()["page_url"]).content.decode()
    assert '<span class="status failed" data-testid="status">Failed</span>' in page
    assert "<p>The header row has problems.</p>" in page
    assert "<caption>1 problem</caption>" in page
    assert (
        "<tr><td>1</td><td><code>3</code></td>\n"
        "        <td>duplicate column name &#x27;income&#x27; (also column 2)</td></tr>"
    ) in page
    assert DatasetVersion.objects.count() == 0


def test_a_failed_blocking_check_lists_the_failing_rows(
    client, users, dataset, csv_upload, django_capture_on_commit_callbacks
):
    dataset_check_create(dataset=dataset, kind="range", column="age", params={"max": 20})
    client.force_login(users["ds"])
    content = b"customer_id,income,age,city,repaid\nC1,1000,30,north,yes\nC2,2000,19,south,no\nC3,3000,45,east,no\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("data:dataset-upload", args=["loans"]), {"file": csv_upload(content)}, HTTP_ACCEPT=JSON_ACCEPT
        )
    status = client.get(response.json()["status_url"]).json()
    assert (status["status"], status["error"]) == ("failed", "1 blocking check(s) failed.")
    assert status["problems"] == [
        {"row": 1, "column": "age", "message": "2 values of 'age' are above 20", "rows": [1, 3], "count": 2}
    ]
    page = client.get(response.json()["page_url"]).content.decode()
    assert '2 values of &#x27;age&#x27; are above 20 <span class="help">(2 rows, first: 1, 3)</span>' in page


def test_upload_refusals_answer_json_with_the_status_code(client, users, dataset, csv_upload, settings):
    client.force_login(users["ds"])
    url = reverse("data:dataset-upload", args=["loans"])
    response = client.post(url, {"mode": "replace"}, HTTP_ACCEPT=JSON_ACCEPT)
    assert (response.status_code, response.json()) == (
        400,
        {"message": "Choose a file to upload.", "extra": {"fields": {"file": ["This field is required."]}}},
    )
    response = client.post(url, {"file": csv_upload(), "encoding": "klingon"}, HTTP_ACCEPT=JSON_ACCEPT)
    assert (response.status_code, response.json()) == (
        400,
        {
            "message": "The upload options are not valid.",
            "extra": {"fields": {"encoding": ["Unknown encoding 'klingon'."]}},
        },
    )
    settings.FARO_UPLOAD_MAX_BYTES = 1024
    response = client.post(url, {"file": csv_upload()}, HTTP_ACCEPT=JSON_ACCEPT)
    assert (response.status_code, response.json()) == (
        413,
        {"message": f"The file is {len(generated_csv())} bytes; the limit is 1024.", "extra": {}},
    )
    assert IngestJob.objects.count() == 0


def test_without_javascript_a_refused_upload_shows_the_page_with_the_problem(
    client, users, dataset, csv_upload, settings
):
    settings.FARO_UPLOAD_MAX_BYTES = 1024
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-upload", args=["loans"]), {"file": csv_upload()}, HTTP_ACCEPT=BROWSER_ACCEPT
    )
    assert response.status_code == 413
    assert f"The file is {len(generated_csv())} bytes; the limit is 1024." in response.content.decode()
    assert IngestJob.objects.count() == 0


def test_the_upload_endpoint_takes_only_posts(client, users, dataset):
    client.force_login(users["ds"])
    assert client.get(reverse("data:dataset-upload", args=["loans"])).status_code == 405


# -- the version report ------------------------------------------------------------------------------------


@pytest.fixture
def checked_version(dataset, csv_upload):
    dataset_check_create(dataset=dataset, kind="not_null", column="customer_id")
    dataset_check_create(dataset=dataset, kind="range", column="age", params={"max": 70}, severity="warning")
    return dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())


def test_the_version_report_draws_histograms_and_top_values_as_svg(client, users, checked_version):
    client.force_login(users["ds"])
    response = client.get(reverse("data:version-detail", args=["loans", 1]))
    assert response.status_code == 200
    page = response.content.decode()

    income = article(page, "income")
    assert income.count("<svg") == 1
    titles = bar_titles(income)
    assert len(titles) == 20
    counts = checked_version.statistics["income"]["histogram"]["counts"]
    assert [int(re.search(r": (\d+) rows?$", title).group(1)) for title in titles] == counts
    assert sum(counts) == 300
    # Bars are scaled to the fullest bin, which spans the whole plot height (94 units).
    heights = [float(height) for height in re.findall(r'<rect class="fill" [^>]*height="([0-9.]+)"', income)]
    assert len(heights) == 20
    assert max(heights) == 94.0
    assert heights[counts.index(min(counts))] == round(94 * min(counts) / max(counts), 2)
    assert len(bar_titles(article(page, "age"))) == 20

    rows = list(csv.DictReader(io.StringIO(generated_csv().decode())))
    cities = Counter(row["city"] for row in rows).most_common()
    city = article(page, "city")
    assert city.count("<svg") == 1
    assert bar_titles(city) == [f"{name}: {count} rows ({100 * count / 300:.1f}%)" for name, count in cities]
    assert '<rect class="fill" x="130" y="0" width="180.0" height="18"/>' in city  # the longest bar
    assert "Every one of the 300 values is distinct." in article(page, "customer_id")
    assert len(bar_titles(article(page, "repaid"))) == 2

    stats = checked_version.statistics["age"]
    age = article(page, "age")
    assert f"<dt>Min</dt><dd>{stats['min']}</dd>" in age
    assert f"<dt>Max</dt><dd>{stats['max']}</dd>" in age
    assert "<dt>Missing</dt><dd>0 (0%)</dd>" in age
    assert "<caption>Quantiles</caption>" in age


def test_the_version_report_shows_its_header_checks_and_download_links(client, users, checked_version):
    client.force_login(users["ds"])
    page = client.get(reverse("data:version-detail", args=["loans", 1])).content.decode()
    assert "<div><dt>Rows</dt><dd>300</dd></div>" in page
    assert f"<code>{checked_version.sha256}</code>" in page
    assert f"<code>{checked_version.original_sha256}</code>" in page
    assert "<div><dt>Source format</dt><dd>csv, comma-separated, utf-8</dd></div>" in page
    assert "<div><dt>Parent</dt><dd>none</dd></div>" in page
    assert "The first version: nothing to compare with." in page
    assert "<caption>2 checks ran, 1 failed.</caption>" in page
    assert '<span class="result-badge passed">✓ passed</span>' in page
    assert '<span class="result-badge failed">✗ failed</span>' in page
    failing = checked_version.validation["checks"][1]
    assert (failing["message"], failing["failing_count"]) == ("44 values of 'age' are above 70", 44)
    assert "<td>44 values of &#x27;age&#x27; are above 70</td>" in page
    assert f"<td>44 rows, the first 20: {', '.join(map(str, failing['failing_rows']))}</td>" in page
    assert 'href="/datasets/loans/v1/download.csv"' in page
    assert 'href="/datasets/loans/v1/download.parquet"' in page


def test_the_report_of_an_appended_version_shows_its_schema_changes(client, users, dataset, csv_upload):
    dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    header, *rows = generated_csv(rows=5).decode().splitlines()
    wider = "\n".join([f"{header},note", *(f"{row},x" for row in rows)]).encode()
    dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(wider))
    client.force_login(users["ds"])
    page = client.get(reverse("data:version-detail", args=["loans", 2])).content.decode()
    assert '<div><dt>Parent</dt><dd><a href="/datasets/loans/v1/">v1</a></dd></div>' in page
    assert '<li><span class="change added">added</span> <code>note</code></li>' in page
    assert "A breaking change" not in page


# -- downloads ----------------------------------------------------------------------------------------------


def test_the_csv_download_neutralises_formulas_and_is_audited(client, users, dataset, csv_upload):
    content = b"customer_id,income,age,city,repaid\nC1,1000,30,=1+1,yes\nC2,2000,40,@SUM(A1),no\n"
    dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(content))
    client.force_login(users["ds"])
    response = client.get("/datasets/loans/v1/download.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="loans-v1.csv"'
    assert b"".join(response.streaming_content).decode() == (
        "customer_id,income,age,city,repaid\nC1,1000,30,'=1+1,yes\nC2,2000,40,'@SUM(A1),no\n"
    )
    event = AuditEvent.objects.get(action="dataset_version.downloaded")
    assert (event.actor, event.data) == (f"user:{users['ds'].pk}", {"dataset": "loans", "number": 1, "format": "csv"})


def test_the_parquet_download_is_the_stored_file(client, users, dataset_version):
    client.force_login(users["ds"])
    response = client.get("/datasets/loans/v1/download.parquet")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == 'attachment; filename="loans-v1.parquet"'
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == dataset_version.sha256
    assert pq.read_table(io.BytesIO(body)).num_rows == 300
    assert AuditEvent.objects.get(action="dataset_version.downloaded").data["format"] == "parquet"


# -- access ----------------------------------------------------------------------------------------------------


def page_urls(job_id: int) -> list[tuple[str, str]]:
    return [
        ("get", "/datasets/"),
        ("get", "/datasets/loans/"),
        ("post", "/datasets/loans/upload/"),
        ("get", f"/datasets/jobs/{job_id}/"),
        ("get", f"/datasets/jobs/{job_id}/status/"),
        ("get", "/datasets/loans/v1/"),
        ("get", "/datasets/loans/v1/download.csv"),
        ("get", "/datasets/loans/v1/download.parquet"),
    ]


@pytest.mark.parametrize("persona", ["end_user", "outsider", None])
def test_only_staff_reach_the_pages(client, users, dataset_version, csv_upload, persona):
    job = IngestJob.objects.create(
        dataset=dataset_version.dataset, original_name="x.csv", original_sha256="0" * 64, size_bytes=1
    )
    if persona:
        client.force_login(users[persona])
    for method, url in page_urls(job.pk):
        response = getattr(client, method)(url, {"file": csv_upload()} if method == "post" else {})
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url
    assert IngestJob.objects.count() == 1
    assert not AuditEvent.objects.filter(action="dataset_version.downloaded").exists()


def test_unknown_datasets_versions_and_jobs_are_not_found(client, users, dataset_version, csv_upload):
    client.force_login(users["ds"])
    for url in (
        "/datasets/nope/",
        "/datasets/nope/v1/",
        "/datasets/loans/v9/",
        "/datasets/nope/v1/download.csv",
        "/datasets/loans/v9/download.parquet",
        "/datasets/jobs/999/",
        "/datasets/jobs/999/status/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.get("/datasets/loans/v1/download.xlsx").status_code == 404
    response = client.post("/datasets/nope/upload/", {"file": csv_upload()}, HTTP_ACCEPT=JSON_ACCEPT)
    assert response.status_code == 404


def test_an_upload_declared_over_the_limit_is_refused_before_it_is_read(client, users, dataset, settings):
    settings.FARO_UPLOAD_MAX_BYTES = 1024
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-upload", args=["loans"]),
        data=b"x" * 10,
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(200 * 1024),
    )
    assert response.status_code == 413
    assert response.json() == {"message": "The upload of 204800 bytes exceeds the limit of 1024 bytes.", "extra": {}}
    assert not IngestJob.objects.exists()
