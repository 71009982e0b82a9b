"""After an erasure, the person is nowhere: not in any row of any table, not in any stored file."""

import json
import uuid

import pyarrow.parquet as pq
from django.apps import apps as django_apps
from django.conf import settings

from apps.features import online
from apps.governance import privacy
from apps.governance.services import review_request_create
from apps.predictions.services import feedback_record, prediction_make
from tests.conftest import valid_row
from tests.governance.test_erasure_handlers import materialised, run_job, verified

SUBJECT = "C0007"


def hits_in_tables(needle: str) -> list[str]:
    """Every row of every model whose stored values mention `needle`, as "app.model#pk"."""
    found = []
    for model in django_apps.get_models():
        for row in model._base_manager.all().values():
            if needle in json.dumps(row, default=str):
                found.append(f"{model._meta.label_lower}#{row.get('id', row)}")
    return found


def hits_in_files(needle: str) -> list[str]:
    """Every file under the artefact root that holds `needle`: Parquet files are read (their pages are
    compressed), every other file is searched byte for byte."""
    found = []
    for path in sorted(settings.FARO_ARTEFACT_ROOT.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            held = needle in text
        else:
            held = needle.encode() in path.read_bytes()
        if held:
            found.append(str(path.relative_to(settings.FARO_ARTEFACT_ROOT)))
    return found


def test_an_erased_canary_subject_is_in_no_table_and_no_file(
    champion,
    dataset_version,
    settings,
    dpo,
    django_capture_on_commit_callbacks,
):
    settings.FARO_ONLINE_STORE = "database"
    materialised(dataset_version)
    decision = prediction_make(model_name="loan-risk", rows=[valid_row(customer_id=SUBJECT)], explain=True)
    feedback_record(request_id=uuid.UUID(decision.request_id), actuals=["yes"], actor=None)
    prediction_make(model_name="loan-risk", rows=[valid_row(customer_id="C0008")])
    review_request_create(
        request_id=decision.request_id,
        model_name="loan-risk",
        model_version=champion.version,
        subject_id=SUBJECT,
        reason=f"I am {SUBJECT} and I disagree",
        contact="person@example.org",
        decision={"inputs": {"customer_id": SUBJECT}},
    )
    for output_format in ("parquet", "csv"):
        run_job(
            django_capture_on_commit_callbacks,
            model_version=champion,
            dataset_version=dataset_version,
            output_format=output_format,
            explain=output_format == "csv",
        )
    privacy.subject_request_carry_out(request=verified("access", dpo), actor=dpo)
    assert hits_in_tables(SUBJECT) and hits_in_files(SUBJECT)  # the canary is everywhere before

    request = privacy.subject_request_carry_out(request=verified("erasure", dpo), actor=dpo)
    privacy.erasure_run(request_id=request.pk)

    assert hits_in_tables(SUBJECT) == []
    assert hits_in_files(SUBJECT) == []
    assert online.DatabaseStore().get_many(dataset_version.dataset, [SUBJECT]) == {}
    assert hits_in_tables("C0008")  # the others are still there
