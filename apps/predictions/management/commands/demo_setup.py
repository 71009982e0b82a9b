"""Set up the German Credit demo, idempotently: logins, a token, the dataset, a trained champion."""

import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError

import apps.data
from apps.data.models import Dataset, LegalBasis
from apps.data.services import dataset_check_create, dataset_create, dataset_version_create_from_upload
from apps.features.models import FeatureSet
from apps.features.services import feature_set_create
from apps.governance.roles import AUDITOR, DATA_PROTECTION_OFFICER, DATA_SCIENTIST, OPERATOR, PRODUCT_MANAGER
from apps.governance.services import token_authenticate, token_create
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel, TrainingJob
from apps.registry.services import (
    model_version_approve,
    model_version_promote,
    registered_model_create,
    training_job_create,
)

DEMO_CSV = Path(apps.data.__file__).parent / "demo" / "german_credit.csv"
DATASET = "german-credit"
FEATURE_SET = "credit-features"
DEMO_FEATURES = [
    {
        "name": "duration",
        "transform": "standardise",
        "source": "duration_in_month",
        "description": "Duration of the credit",
    },
    {"name": "amount", "transform": "log1p", "source": "credit_amount", "description": "Amount asked for"},
    {
        "name": "monthly_amount",
        "transform": "ratio",
        "sources": ["credit_amount", "duration_in_month"],
        "description": "Amount per month of the credit",
    },
    {
        "name": "instalment_rate",
        "transform": "passthrough",
        "source": "installment_rate_in_percentage_of_disposable_income",
        "description": "Instalment rate",
    },
    {
        "name": "age_band",
        "transform": "bucketise",
        "source": "age_in_years",
        "params": {"edges": [25, 35, 50, 65]},
        "description": "Age band",
    },
    {
        "name": "checking",
        "transform": "one_hot",
        "source": "status_of_existing_checking_account",
        "params": {"top_k": 4},
        "description": "Checking account",
    },
    {
        "name": "history",
        "transform": "one_hot",
        "source": "credit_history",
        "params": {"top_k": 5},
        "description": "Credit history",
    },
    {"name": "purpose", "transform": "one_hot", "source": "purpose", "params": {"top_k": 6}, "description": "Purpose"},
    {"name": "savings", "transform": "ordinal", "source": "savings_account_and_bonds", "description": "Savings"},
    {
        "name": "employment",
        "transform": "ordinal",
        "source": "present_employment_since",
        "description": "Employed since",
    },
    {
        "name": "guarantors",
        "transform": "one_hot",
        "source": "other_debtors_or_guarantors",
        "params": {"top_k": 3},
        "description": "Other debtors or guarantors",
    },
    {
        "name": "property",
        "transform": "one_hot",
        "source": "property",
        "params": {"top_k": 4},
        "description": "Property",
    },
    {
        "name": "other_plans",
        "transform": "one_hot",
        "source": "other_installment_plans",
        "params": {"top_k": 3},
        "description": "Other instalment plans",
    },
    {"name": "housing", "transform": "one_hot", "source": "housing", "params": {"top_k": 3}, "description": "Housing"},
    {
        "name": "existing_credits",
        "transform": "passthrough",
        "source": "number_of_existing_credits_at_this_bank",
        "description": "Credits at this bank",
    },
]
MODEL = "credit-risk"
USERS = {
    # username: (is_superuser, the persona group it joins: apps.governance.roles)
    "admin": (True, None),
    "pm": (False, PRODUCT_MANAGER),
    "ds": (False, DATA_SCIENTIST),
    "dpo": (False, DATA_PROTECTION_OFFICER),
    "auditor": (False, AUDITOR),
    "ops": (False, OPERATOR),
}


class Command(BaseCommand):
    help = "Create the demo logins, API token, German Credit dataset and a champion model (trained by the worker)."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="faro-demo", help="Password of the demo logins.")
        parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait for the training job.")

    def handle(self, *args, password: str, timeout: float, **options):
        self._users(password)
        token = self._token()
        model = self._model()
        self.stdout.write(
            f"Demo logins (password '{password}'): admin (superuser), pm (product manager), ds (data scientist), "
            "dpo (data protection officer), auditor, ops (operator)"
        )
        self.stdout.write(f"Demo API token (predict, read, write): {token}")
        if not ModelAlias.objects.filter(registered_model=model, name=ModelAlias.Name.CHAMPION).exists():
            self._train_champion(model, timeout)
        champion = ModelAlias.objects.select_related("version").get(registered_model=model, name="champion")
        self.stdout.write(
            f"Serving {MODEL} v{champion.version.version} as champion "
            f"(AUC {champion.version.metrics.get('auc', 0):.3f})."
        )

    def _users(self, password: str) -> None:
        User = get_user_model()
        for username, (superuser, persona) in USERS.items():
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": superuser}
            )
            if created:
                user.set_password(password)
                user.save()
                if persona:
                    user.groups.add(Group.objects.get(name=persona))

    def _token(self) -> str:
        path = Path(settings.VAR_DIR) / "demo-token"
        if path.exists() and token_authenticate(path.read_text().strip()):
            return path.read_text().strip()
        _, plaintext = token_create(name="demo-client", scopes=["predict", "read", "write"])
        path.write_text(plaintext)
        path.chmod(0o600)
        return plaintext

    def _model(self) -> RegisteredModel:
        dataset = Dataset.objects.filter(name=DATASET).first() or self._dataset()
        if not dataset.versions.exists():
            upload = SimpleUploadedFile(DEMO_CSV.name, DEMO_CSV.read_bytes(), content_type="text/csv")
            dataset_version_create_from_upload(dataset=dataset, upload=upload)
        if not FeatureSet.objects.filter(name=FEATURE_SET).exists():
            feature_set_create(
                name=FEATURE_SET,
                dataset=dataset,
                definition=DEMO_FEATURES,
                description="What the credit-risk model reads: no sex, marital status, nationality or telephone.",
            )
        return RegisteredModel.objects.filter(name=MODEL).first() or registered_model_create(
            name=MODEL,
            description="Is an applicant a good credit risk? Trained on the German Credit data.",
            task_type="classification",
            favourable_label="good",
        )

    def _dataset(self) -> Dataset:
        personal = ["personal"]
        dataset = dataset_create(
            name=DATASET,
            description="German Credit (Statlog, Hofmann 1994; UCI, CC BY 4.0) with a synthetic applicant_id.",
            target_column="creditability",
            subject_key_column="applicant_id",
            purpose="Demonstrate credit-risk decisions: train and explain a model of repayment.",
            legal_basis=LegalBasis.CONTRACT,
            retention_days=365,
            column_tags={
                "applicant_id": personal,
                "age_in_years": ["personal", "protected"],
                "personal_status_and_sex": ["personal", "protected"],
                "foreign_worker": ["personal", "protected"],
                "telephone": personal,
                "creditability": ["target"],
            },
        )
        for kind, column, params in (
            ("not_null", "applicant_id", {}),
            ("unique", "applicant_id", {}),
            ("range", "age_in_years", {"min": 18, "max": 100}),
            ("allowed_values", "creditability", {"values": ["good", "bad"]}),
            ("row_count", "", {"min": 100}),
        ):
            dataset_check_create(dataset=dataset, kind=kind, column=column, params=params)
        return dataset

    def _train_champion(self, model: RegisteredModel, timeout: float) -> None:
        job = (
            TrainingJob.objects.filter(registered_model=model)
            .exclude(status=TrainingJob.Status.FAILED)
            .order_by("-created_at")
            .first()
        )
        if job is None:
            version = Dataset.objects.get(name=DATASET).versions.order_by("-number").first()
            feature_set = FeatureSet.objects.get(name=FEATURE_SET)
            job = training_job_create(
                registered_model=model,
                dataset_version=version,
                feature_set_version=feature_set.versions.order_by("-number").first(),
                actor=get_user_model().objects.get(username="ds"),
            )
            self.stdout.write(f"Training job {job.pk} queued; waiting for the worker ...")
        deadline = time.monotonic() + timeout
        while not job.is_finished:
            if time.monotonic() > deadline:
                raise CommandError(f"Training job {job.pk} did not finish within {timeout:.0f} s; is the worker up?")
            time.sleep(0.5)
            job.refresh_from_db()
        if job.status == TrainingJob.Status.FAILED:
            raise CommandError(f"Training job {job.pk} failed: {job.error}")
        self._release(job.model_version)

    def _release(self, version: ModelVersion) -> None:
        """The product manager approves what the data scientist trained (maker-checker), then promotes it.
        Failing gates are approved only with the reason written down, as anyone approving them must."""
        checker = get_user_model().objects.get(username="pm")
        version.refresh_from_db()
        if version.status == ModelVersion.Status.PENDING:
            failing = [gate["name"] for gate in version.gate_report.get("gates", []) if not gate["passed"]]
            note = (
                f"Demo data: released despite failing gates ({', '.join(failing)}), to show the product end to end."
                if failing
                else ""
            )
            version = model_version_approve(version=version, actor=checker, note=note)
            if failing:
                self.stdout.write(f"Approved {version} despite failing gates: {', '.join(failing)} (see its page).")
        model_version_promote(version=version, alias=ModelAlias.Name.CHAMPION, actor=checker)
