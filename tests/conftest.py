"""Shared fixtures: generated data, a small real model trained through the real services, personas, tokens."""

import random
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.governance.roles import DATA_SCIENTIST, PRODUCT_MANAGER
from apps.governance.services import token_create
from apps.governance.throttling import budgets
from apps.predictions.loader import model_cache
from apps.registry.models import ModelVersion, TrainingJob
from apps.registry.services import (
    model_version_approve,
    model_version_promote,
    registered_model_create,
    training_job_create,
    training_job_run,
)

CITIES = ["north", "south", "east"]
FEATURES = ["income", "age", "city"]
SMALL_PARAMS = {"n_estimators": 20, "max_depth": 3, "early_stopping_rounds": 5}


def generated_csv(rows: int = 300, seed: int = 7) -> bytes:
    """A deterministic loan-like table: target 'yes' mostly when income is high."""
    rng = random.Random(seed)
    lines = ["customer_id,income,age,city,repaid"]
    for index in range(rows):
        income = round(rng.uniform(1000, 9000), 2)
        age = rng.randint(18, 80)
        city = rng.choice(CITIES)
        score = income / 9000 + (0.2 if city == "north" else 0) + rng.uniform(-0.3, 0.3)
        lines.append(f"C{index:04d},{income},{age},{city},{'yes' if score > 0.6 else 'no'}")
    return ("\n".join(lines) + "\n").encode()


def valid_row(**overrides):
    row = {"income": 5200.5, "age": 41, "city": "north"}
    row.update(overrides)
    return row


@pytest.fixture(autouse=True)
def _artefact_root(settings, tmp_path):
    """Each test gets its own artefact storage, so what one test stores never shows in another."""
    settings.FARO_ARTEFACT_ROOT = tmp_path / "artefacts"


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    model_cache.clear()
    yield
    model_cache.clear()


@pytest.fixture(autouse=True)
def _fresh_request_budgets():
    """Request counters start at zero in each test: database ids, and so client keys, repeat across tests."""
    budgets.clear()
    cache = caches["throttle"]
    if isinstance(cache, RedisCache):  # only this run's keys: clear() would empty the whole Redis database
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(cache.make_key("*")))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


@pytest.fixture
def csv_upload():
    def make(content: bytes | None = None, name: str = "loans.csv") -> SimpleUploadedFile:
        return SimpleUploadedFile(name, generated_csv() if content is None else content, content_type="text/csv")

    return make


@pytest.fixture
def dataset(db):
    return dataset_create(
        name="loans", description="Generated loans", target_column="repaid", subject_key_column="customer_id"
    )


@pytest.fixture
def dataset_version(dataset, csv_upload):
    return dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())


def train_version(registered_model, dataset_version, **params) -> ModelVersion:
    """Queue and run a training job through the real services, as the worker would."""
    job = training_job_create(
        registered_model=registered_model, dataset_version=dataset_version, params={**SMALL_PARAMS, **params}
    )
    # Outside a test transaction the eager task has already run on commit; then this run is a no-op.
    version = training_job_run(job_id=job.pk) or TrainingJob.objects.get(pk=job.pk).model_version
    assert version is not None, f"training failed: {TrainingJob.objects.get(pk=job.pk).error}"
    return version


@pytest.fixture
def registered_model(db):
    return registered_model_create(name="loan-risk", task_type="classification", favourable_label="yes")


def join_persona(user, persona: str):
    """Put `user` in a persona's group (created with its permissions by `migrate`, see apps.governance.roles)."""
    user.groups.add(Group.objects.get(name=persona))
    return user


def release(version: ModelVersion, alias: str = "champion") -> ModelVersion:
    """Approve `version` as a checker who did not train it (if it is pending), then promote it to `alias`."""
    if version.status == ModelVersion.Status.PENDING:
        checker, created = get_user_model().objects.get_or_create(
            username="release-checker", defaults={"is_staff": True}
        )
        if created:
            join_persona(checker, PRODUCT_MANAGER)
        version = model_version_approve(version=version, actor=checker)
    model_version_promote(version=version, alias=alias)
    version.refresh_from_db()
    return version


@pytest.fixture
def champion(registered_model, dataset_version) -> ModelVersion:
    return release(train_version(registered_model, dataset_version))


@pytest.fixture
def users(db):
    User = get_user_model()
    return {
        "ds": join_persona(User.objects.create_user("ds", password="pw", is_staff=True), DATA_SCIENTIST),
        "pm": join_persona(User.objects.create_user("pm", password="pw", is_staff=True), PRODUCT_MANAGER),
        "end_user": User.objects.create_user("enduser", password="pw"),
        "outsider": User.objects.create_user("outsider", password="pw"),
    }


@pytest.fixture
def tokens(db) -> dict[str, str]:
    """Plaintext tokens by persona: an API client that predicts, a reader, a writer, an admin."""
    return {
        name: token_create(name=f"{name}-client", scopes=scopes)[1]
        for name, scopes in {
            "predict": ["predict"],
            "read": ["read"],
            "write": ["read", "write"],
            "admin": ["admin"],
        }.items()
    }


@pytest.fixture
def api():
    """A test client that speaks JSON and takes a bearer token."""

    class ApiClient(Client):
        def call(
            self,
            method: str,
            path: str,
            token: str | None = None,
            body=None,
            raw: bytes | None = None,
            content_type: str = "application/json",
            **extra,
        ):
            import orjson

            if token is not None:
                extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            data = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
            return self.generic(method.upper(), path, data=data, content_type=content_type, **extra)

    return ApiClient()


@pytest.fixture
def demo_csv() -> Path:
    import apps.data

    return Path(apps.data.__file__).parent / "demo" / "german_credit.csv"
