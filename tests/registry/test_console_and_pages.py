from django.contrib.admin import helpers
from django.urls import reverse

from apps.governance.models import AuditEvent
from apps.registry.models import AliasChange, ModelAlias, TrainingJob
from tests.conftest import train_version


def test_product_manager_promotes_and_rolls_back_in_the_console(client, users, registered_model, dataset_version):
    users["pm"].is_superuser = True
    users["pm"].save()
    v1, v2 = train_version(registered_model, dataset_version), train_version(registered_model, dataset_version)
    client.force_login(users["pm"])
    changelist = reverse("admin:registry_modelversion_changelist")
    assert client.get(changelist).status_code == 200
    for version in (v1, v2):
        response = client.post(
            changelist, {"action": "promote_champion", helpers.ACTION_CHECKBOX_NAME: [version.pk]}, follow=True
        )
        assert response.status_code == 200
        assert f"{str(version).capitalize()} is now champion." in response.content.decode()
    assert ModelAlias.objects.get(name="champion").version == v2
    response = client.post(
        reverse("admin:registry_registeredmodel_changelist"),
        {"action": "rollback_champion", helpers.ACTION_CHECKBOX_NAME: [registered_model.pk]},
        follow=True,
    )
    assert "Loan-risk: champion is now v1." in response.content.decode()
    assert ModelAlias.objects.get(name="champion").version == v1
    assert list(AliasChange.objects.order_by("id").values_list("kind", flat=True)) == ["promote", "promote", "rollback"]
    assert AuditEvent.objects.filter(action="model.rolled_back", actor=f"user:{users['pm'].pk}").count() == 1


def test_promoting_two_versions_at_once_is_refused(client, users, registered_model, dataset_version):
    users["pm"].is_superuser = True
    users["pm"].save()
    v1, v2 = train_version(registered_model, dataset_version), train_version(registered_model, dataset_version)
    client.force_login(users["pm"])
    response = client.post(
        reverse("admin:registry_modelversion_changelist"),
        {"action": "promote_champion", helpers.ACTION_CHECKBOX_NAME: [v1.pk, v2.pk]},
        follow=True,
    )
    assert "Select exactly one version to promote." in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_audit_log_is_read_only_in_the_console(client, users, champion):
    users["pm"].is_superuser = True
    users["pm"].save()
    client.force_login(users["pm"])
    event = AuditEvent.objects.first()
    assert client.get(reverse("admin:governance_auditevent_changelist")).status_code == 200
    assert client.get(reverse("admin:governance_auditevent_add")).status_code == 403
    response = client.post(reverse("admin:governance_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_data_scientist_starts_training_from_the_page(
    client, users, dataset_version, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("registry:training-new"),
            {"model": "page-model", "dataset": "loans", "n_estimators": 15, "max_depth": 3, "learning_rate": 0.2},
        )
    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("registry:training-detail", args=[job.pk])
    page = client.get(response["Location"]).content.decode()
    assert '<span class="status succeeded" data-testid="status">Succeeded</span>' in page
    assert job.params["n_estimators"] == 15


def test_pages_for_data_scientists_need_staff(client, users, champion):
    client.force_login(users["end_user"])
    for name, args in (("registry:model-list", []), ("registry:training-new", []), ("data:dataset-list", [])):
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    client.force_login(users["ds"])
    assert client.get(reverse("registry:model-detail", args=["loan-risk"])).status_code == 200
