from django.contrib.admin import helpers
from django.urls import reverse

from apps.governance.models import AuditEvent
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, TrainingJob
from tests.conftest import train_version
from tests.registry.test_release import trained_by


def test_product_manager_approves_promotes_and_rolls_back_in_the_console(
    client, users, registered_model, dataset_version
):
    users["pm"].is_superuser = True
    users["pm"].save()
    v1, v2 = (trained_by(users["ds"], registered_model, dataset_version) for _ in range(2))
    client.force_login(users["pm"])
    changelist = reverse("admin:registry_modelversion_changelist")
    assert client.get(changelist).status_code == 200
    for version in (v1, v2):
        promote = {"action": "promote_champion", helpers.ACTION_CHECKBOX_NAME: [version.pk]}
        refused = client.post(changelist, promote, follow=True)
        assert f"{str(version).capitalize()} is pending manual approval; only an approved version can be champion." in (
            refused.content.decode()
        )
        # Approving shows the gates' evidence and asks for a note first; confirming calls the service.
        approve = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: [version.pk]}
        page = client.post(changelist, approve)
        assert page.status_code == 200
        assert "Release gates: passed" in page.content.decode()
        assert "onnx_parity" in page.content.decode()
        done = client.post(changelist, {**approve, "confirm": "1", "note": "Checked the card."}, follow=True)
        assert f"{str(version).capitalize()} approved." in done.content.decode()
        response = client.post(changelist, promote, follow=True)
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
    assert ModelVersion.objects.get(pk=v1.pk).decision_note == "Checked the card."


def test_the_maker_cannot_approve_in_the_console(client, users, registered_model, dataset_version):
    users["ds"].is_superuser = True
    users["ds"].save()
    version = trained_by(users["ds"], registered_model, dataset_version)
    client.force_login(users["ds"])
    changelist = reverse("admin:registry_modelversion_changelist")
    approve = {"action": "approve", helpers.ACTION_CHECKBOX_NAME: [version.pk], "confirm": "1", "note": ""}
    response = client.post(changelist, approve, follow=True)
    assert "was trained at your request; someone else must approve it (maker-checker)." in response.content.decode()
    assert ModelVersion.objects.get(pk=version.pk).status == "pending_manual_approval"


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
    assert "Select exactly one version." in response.content.decode()
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


def test_train_again_from_the_console_repeats_the_last_job_on_the_newest_data(
    client, users, registered_model, dataset_version, csv_upload
):
    from apps.data.services import dataset_version_create_from_upload

    users["pm"].is_superuser = True
    users["pm"].save()
    first = trained_by(users["ds"], registered_model, dataset_version, max_depth=2)
    newer = dataset_version_create_from_upload(dataset=dataset_version.dataset, upload=csv_upload())
    client.force_login(users["pm"])
    response = client.post(
        reverse("admin:registry_registeredmodel_changelist"),
        {"action": "train_again", helpers.ACTION_CHECKBOX_NAME: [registered_model.pk]},
        follow=True,
    )
    job = TrainingJob.objects.exclude(pk=first.training_job.pk).get()
    assert f'Loan-risk: <a href="/training/{job.pk}/">training job {job.pk}</a> queued.' in response.content.decode()
    assert (job.dataset_version, job.params, job.requested_by) == (
        newer,
        first.training_job.params,
        f"user:{users['pm'].pk}",
    )
