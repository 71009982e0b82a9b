"""The records of processing activities (GDPR Art. 30): generated from the datasets, as a staff page and as
CSV and JSON downloads of the same rows."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.data.models import DatasetVersion
from apps.data.services import dataset_create, dataset_update, dataset_version_create_from_upload
from apps.governance.models import AuditEvent
from tests.data.test_dataset_console import base_form

REGISTER = "/governance/register/"


@pytest.fixture
def described(champion, users):
    """`loans` (the champion's training data) fully described, a second version purged; `weather` without
    personal data and with nothing but a name."""
    loans = dataset_update(
        dataset=champion.dataset_version.dataset,
        purpose="Decide on loan applications.",
        legal_basis="b",
        retention_days=365,
        column_tags={
            "customer_id": ["personal"],
            "age": ["personal", "protected"],
            "city": ["special_category"],  # pretend: to show the category
            "repaid": ["target"],
        },
        subject_categories="Loan applicants",
        recipients="Credit officers; =the credit bureau",
        owner=users["ds"],
    )
    version = dataset_version_create_from_upload(
        dataset=loans, upload=SimpleUploadedFile("more.csv", b"customer_id,income,age,city,repaid\nC1,1.0,30,x,no\n")
    )
    DatasetVersion.objects.filter(pk=version.pk).update(purged_at=version.created_at, purge_reason="365-day retention")
    dataset_create(name="weather", description="Daily readings")
    return loans


def expected_rows(settings) -> list[dict]:
    root = settings.FARO_ARTEFACT_ROOT
    return [
        {
            "dataset": "loans",
            "purpose": "Decide on loan applications.",
            "legal_basis": "(b) contract",
            "personal_data": "personal: age, customer_id; special category (Art. 9): city",
            "personal_columns": ["age", "customer_id"],
            "special_category_columns": ["city"],
            "protected_columns": ["age"],
            "data_subjects": "Loan applicants",
            "recipients": "Credit officers; =the credit bureau",
            "retention_days": 365,
            "models": ["loan-risk"],
            "storage": f"Parquet files named by SHA-256 in {root}/datasets: 1 version(s) held, 1 purged",
            "owner": "ds",
        },
        {
            "dataset": "weather",
            "purpose": "",
            "legal_basis": "",
            "personal_data": "no personal data",
            "personal_columns": [],
            "special_category_columns": [],
            "protected_columns": [],
            "data_subjects": "",
            "recipients": "",
            "retention_days": None,
            "models": [],
            "storage": f"Parquet files named by SHA-256 in {root}/datasets: 0 version(s) held, 0 purged",
            "owner": "",
        },
    ]


def test_the_json_download_holds_one_row_per_dataset(client, users, described, settings):
    client.force_login(users["pm"])
    response = client.get(REGISTER, {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="processing-register-')
    assert json.loads(response.content) == expected_rows(settings)


def test_the_csv_download_holds_the_same_rows(client, users, described, settings):
    client.force_login(users["pm"])
    response = client.get(REGISTER, {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    root = settings.FARO_ARTEFACT_ROOT
    assert rows == [
        [
            "dataset",
            "purpose",
            "legal_basis",
            "personal_data",
            "personal_columns",
            "special_category_columns",
            "protected_columns",
            "data_subjects",
            "recipients",
            "retention_days",
            "models",
            "storage",
            "owner",
        ],
        [
            "loans",
            "Decide on loan applications.",
            "(b) contract",
            "personal: age, customer_id; special category (Art. 9): city",
            "age; customer_id",
            "city",
            "age",
            "Loan applicants",
            "Credit officers; =the credit bureau",  # not at the start of the cell: left as it is
            "365",
            "loan-risk",
            f"Parquet files named by SHA-256 in {root}/datasets: 1 version(s) held, 1 purged",
            "ds",
        ],
        [
            "weather",
            "",
            "",
            "no personal data",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            f"Parquet files named by SHA-256 in {root}/datasets: 0 version(s) held, 0 purged",
            "",
        ],
    ]


def test_the_page_shows_the_rows_and_the_dataset_list_links_to_it(client, users, described):
    client.force_login(users["ds"])
    page = client.get(REGISTER).content.decode()
    assert "<h1>Records of processing (GDPR Art. 30)</h1>" in page
    assert "personal: age, customer_id; special category (Art. 9): city" in page
    assert "protected attributes: age" in page
    assert "no personal data" in page
    assert '<a href="/models/loan-risk/">loan-risk</a>' in page
    assert '<td class="nowrap">365 days</td>' in page
    assert f'href="{REGISTER}"' in client.get("/datasets/").content.decode()


def test_a_formula_at_the_start_of_a_cell_is_neutralised_in_the_csv(client, users, dataset):
    dataset_update(dataset=dataset, recipients="=HYPERLINK(1)")
    client.force_login(users["ds"])
    rows = list(csv.reader(io.StringIO(client.get(REGISTER, {"format": "csv"}).content.decode())))
    assert rows[1][8] == "'=HYPERLINK(1)"


def test_only_staff_see_the_register(client, users, dataset):
    events = AuditEvent.objects.count()
    for query in ({}, {"format": "csv"}, {"format": "json"}):
        client.logout()
        response = client.get(REGISTER, query)
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/admin/login/")
        client.force_login(users["end_user"])
        response = client.get(REGISTER, query)
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/admin/login/")
        assert b"loans" not in response.content
    assert AuditEvent.objects.count() == events
    client.force_login(users["pm"])
    assert client.get(REGISTER, {"format": "xml"}).status_code == 400


def test_data_subjects_and_recipients_are_edited_in_the_console_and_on_the_dataset_page(client, users, dataset):
    users["pm"].is_superuser = True
    users["pm"].save()
    client.force_login(users["pm"])
    form = base_form(subject_categories="Loan applicants", recipients="Credit officers")
    response = client.post(f"/admin/data/dataset/{dataset.pk}/change/", form)
    assert response.status_code == 302
    dataset.refresh_from_db()
    assert (dataset.subject_categories, dataset.recipients) == ("Loan applicants", "Credit officers")

    response = client.post(
        "/datasets/loans/",
        {"target_column": "repaid", "subject_categories": "Customers", "recipients": "Nobody outside the bank"},
    )
    assert response.status_code == 302
    dataset.refresh_from_db()
    assert (dataset.subject_categories, dataset.recipients) == ("Customers", "Nobody outside the bank")
    page = client.get("/datasets/loans/").content.decode()
    assert "<strong>Data subjects:</strong> Customers" in page
    assert "<strong>Recipients:</strong> Nobody outside the bank" in page
