from django.urls import reverse

from apps.data.models import Dataset, DatasetCheck, DatasetVersion, IngestJob
from apps.governance.models import AuditEvent
from tests.conftest import generated_csv

FORMSET = {
    "checks-TOTAL_FORMS": "0",
    "checks-INITIAL_FORMS": "0",
    "checks-MIN_NUM_FORMS": "0",
    "checks-MAX_NUM_FORMS": "1000",
}


def base_form(**extra):
    return {
        "name": "loans",
        "description": "",
        "target_column": "repaid",
        "subject_key_column": "customer_id",
        "purpose": "",
        "legal_basis": "",
        "retention_days": "",
        "column_tags": "{}",
        "owner": "",
        "mode": "replace",
        **FORMSET,
        **extra,
    }


def test_upload_through_the_console_queues_an_ingest_job(client, users, csv_upload, django_capture_on_commit_callbacks):
    users["ds"].is_superuser = True
    users["ds"].save()
    client.force_login(users["ds"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:data_dataset_add"), base_form(upload=csv_upload(generated_csv(rows=50))), follow=True
        )
    assert response.status_code == 200
    job = IngestJob.objects.get()
    assert f"Upload queued as ingest job {job.pk}" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.dataset_version.row_count) == ("succeeded", 50)
    assert DatasetVersion.objects.get().created_by == users["ds"]


def test_checks_edited_in_the_console_go_through_the_services(client, users, dataset):
    users["pm"].is_superuser = True
    users["pm"].save()
    client.force_login(users["pm"])
    form = base_form(
        **{
            "checks-TOTAL_FORMS": "2",
            "checks-0-kind": "range",
            "checks-0-column": "age",
            "checks-0-params": '{"min": 18}',
            "checks-0-severity": "blocking",
            "checks-0-enabled": "on",
            "checks-1-kind": "range",
            "checks-1-column": "age",
            "checks-1-params": '{"min": 90, "max": 10}',
            "checks-1-severity": "blocking",
            "checks-1-enabled": "on",
        }
    )
    response = client.post(reverse("admin:data_dataset_change", args=[dataset.pk]), form)
    assert response.status_code == 200  # the invalid second check is shown, nothing is saved
    assert DatasetCheck.objects.count() == 0
    form["checks-TOTAL_FORMS"] = "1"
    response = client.post(reverse("admin:data_dataset_change", args=[dataset.pk]), form)
    assert response.status_code == 302
    check = DatasetCheck.objects.get()
    assert (check.kind, check.column, check.params) == ("range", "age", {"min": 18})
    assert AuditEvent.objects.filter(action="dataset_check.created").count() == 1
    assert AuditEvent.objects.filter(action="dataset.updated").count() == 1


def test_personal_columns_need_governance_in_the_console(client, users):
    users["pm"].is_superuser = True
    users["pm"].save()
    client.force_login(users["pm"])
    response = client.post(reverse("admin:data_dataset_add"), base_form(column_tags='{"age": ["personal"]}'))
    assert response.status_code == 200
    assert "A dataset with personal columns needs a purpose." in response.content.decode()
    assert not Dataset.objects.exists()
