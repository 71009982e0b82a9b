import json

from django.urls import reverse

from apps.features.models import FeatureSet, FeatureSetVersion
from apps.features.services import feature_set_create
from apps.registry.services import training_job_create, training_job_run
from tests.conftest import SMALL_PARAMS

DEFINITION = [
    {"name": "income", "transform": "standardise", "source": "income", "description": "Income"},
    {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 2}},
]


def test_the_feature_set_page_shows_features_tags_and_training_histograms(
    client, users, dataset, dataset_version, registered_model
):
    from apps.data.services import dataset_update

    dataset_update(
        dataset=dataset, column_tags={"city": ["personal"]}, purpose="loans", legal_basis="b", retention_days=30
    )
    feature_set = feature_set_create(name="loan-features", dataset=dataset, definition=DEFINITION)
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params=SMALL_PARAMS,
        feature_set_version=feature_set.versions.get(),
    )
    training_job_run(job_id=job.pk)
    client.force_login(users["ds"])
    page = client.get(reverse("features:feature-set-detail", args=["loan-features"])).content.decode()
    assert "As fitted for loan-risk v1" in page
    assert page.count('<svg class="chart histogram"') == 4  # income and the three city columns
    assert "<td>personal</td>" in page
    listing = client.get(reverse("features:feature-set-list")).content.decode()
    assert 'href="/feature-sets/loan-features/"' in listing
    client.force_login(users["end_user"])
    assert client.get(reverse("features:feature-set-list")).status_code == 302


def test_the_console_adds_a_version_when_the_definition_changes(client, users, dataset, dataset_version):
    users["ds"].is_superuser = True
    users["ds"].save()
    client.force_login(users["ds"])
    base = {
        "name": "loan-features",
        "description": "",
        "dataset": dataset.pk,
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    refused = client.post(
        reverse("admin:features_featureset_add"),
        {**base, "definition": json.dumps([{"name": "x", "transform": "log1p", "source": "city"}])},
    )
    assert refused.status_code == 200
    assert "x: source log1p needs a numeric column; &#x27;city&#x27; is string" in refused.content.decode()
    assert not FeatureSet.objects.exists()
    created = client.post(reverse("admin:features_featureset_add"), {**base, "definition": json.dumps(DEFINITION)})
    assert created.status_code == 302
    feature_set = FeatureSet.objects.get()
    changed = [*DEFINITION, {"name": "age", "transform": "passthrough", "source": "age"}]
    edited = client.post(
        reverse("admin:features_featureset_change", args=[feature_set.pk]),
        {**base, "definition": json.dumps(changed)},
        follow=True,
    )
    assert "Saved as version 2." in edited.content.decode()
    assert list(FeatureSetVersion.objects.order_by("number").values_list("number", flat=True)) == [1, 2]
    assert FeatureSetVersion.objects.get(number=2).definition == changed


def test_data_scientists_define_and_version_feature_sets_on_the_pages(client, users, dataset, dataset_version):
    client.force_login(users["ds"])
    refused = client.post(
        reverse("features:feature-set-list"),
        {
            "name": "loan-features",
            "dataset": "loans",
            "definition": json.dumps([{"name": "x", "transform": "log1p", "source": "city"}]),
        },
    )
    assert refused.status_code == 400
    assert "x: source log1p needs a numeric column; &#x27;city&#x27; is string" in refused.content.decode()
    bad_json = client.post(reverse("features:feature-set-list"), {"name": "f", "dataset": "loans", "definition": "[{"})
    assert "Not valid JSON" in bad_json.content.decode()
    created = client.post(
        reverse("features:feature-set-list"),
        {"name": "loan-features", "dataset": "loans", "definition": json.dumps(DEFINITION)},
    )
    assert created["Location"] == reverse("features:feature-set-detail", args=["loan-features"])
    page = client.get(created["Location"]).content.decode()
    assert "Save as a new version" in page
    changed = [*DEFINITION, {"name": "age", "transform": "passthrough", "source": "age"}]
    saved = client.post(created["Location"], {"definition": json.dumps(changed)}, follow=True)
    assert "Saved as version 2." in saved.content.decode()
    assert FeatureSetVersion.objects.get(number=2).definition == changed
    repeat = client.post(created["Location"], {"definition": json.dumps(changed)})
    assert repeat.status_code == 400
    assert "Version 2 of loan-features already has this definition." in repeat.content.decode()
