from django.urls import reverse

from apps.data.models import Dataset, DatasetVersion
from tests.conftest import generated_csv


def test_data_scientist_creates_a_dataset_and_uploads_on_the_pages(client, users, csv_upload):
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-list"),
        {"name": "loans", "description": "d", "target_column": "repaid", "subject_key_column": "customer_id"},
    )
    assert response["Location"] == reverse("data:dataset-detail", args=["loans"])
    response = client.post(reverse("data:dataset-detail", args=["loans"]), {"file": csv_upload()}, follow=True)
    page = response.content.decode()
    assert "Version 1 created: 300 rows." in page
    version = DatasetVersion.objects.get()
    assert version.sha256 in page
    assert Dataset.objects.get().created_by == users["ds"]


def test_a_bad_upload_on_the_page_names_the_problem(client, users, dataset, csv_upload):
    client.force_login(users["ds"])
    response = client.post(
        reverse("data:dataset-detail", args=["loans"]), {"file": csv_upload(b"customer_id,income,income\nC1,1,2\n")}
    )
    assert response.status_code == 400
    assert "duplicate column name &#x27;income&#x27; (also column 2)" in response.content.decode()
    assert DatasetVersion.objects.count() == 0


def test_upload_through_the_console(client, users, csv_upload):
    users["ds"].is_superuser = True
    users["ds"].save()
    client.force_login(users["ds"])
    response = client.post(
        reverse("admin:data_dataset_add"),
        {
            "name": "loans",
            "description": "",
            "target_column": "repaid",
            "subject_key_column": "customer_id",
            "upload": csv_upload(generated_csv(rows=50)),
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Version 1 created with 50 rows." in response.content.decode()
    assert DatasetVersion.objects.get().row_count == 50
