"""The OpenAPI document and its docs page, and the liveness and readiness endpoints."""

import re
from pathlib import Path

import orjson
import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

from apps.predictions.models import PredictionRecord
from tests.conftest import valid_row

PREDICT_PATH = "/api/v1/models/{name}/predict"
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    return orjson.loads(response.content)


# -- the OpenAPI document --------------------------------------------------------------------------


def test_the_schema_is_a_valid_openapi_3_document(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Faro API"
    validate_schema(schema)


def test_the_default_schema_rendering_is_the_same_document_in_yaml(client, schema):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
    assert yaml.safe_load(response.content) == schema


def test_the_schema_lists_every_api_operation(schema):
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == {
        ("/api/v1/datasets", "get"),
        ("/api/v1/datasets", "post"),
        ("/api/v1/datasets/{name}", "get"),
        ("/api/v1/datasets/{name}/versions", "get"),
        ("/api/v1/datasets/{name}/versions", "post"),
        ("/api/v1/datasets/{name}/versions/{number}", "get"),
        ("/api/v1/datasets/{name}", "patch"),
        ("/api/v1/datasets/{name}/versions/{number}/download", "get"),
        ("/api/v1/datasets/{name}/checks", "get"),
        ("/api/v1/datasets/{name}/checks", "post"),
        ("/api/v1/datasets/{name}/checks/{check_id}", "get"),
        ("/api/v1/datasets/{name}/checks/{check_id}", "patch"),
        ("/api/v1/datasets/{name}/checks/{check_id}", "delete"),
        ("/api/v1/ingest-jobs/{job_id}", "get"),
        ("/api/v1/feature-sets", "get"),
        ("/api/v1/feature-sets", "post"),
        ("/api/v1/feature-sets/{name}", "get"),
        ("/api/v1/feature-sets/{name}/versions", "get"),
        ("/api/v1/feature-sets/{name}/versions", "post"),
        ("/api/v1/feature-sets/{name}/versions/{number}", "get"),
        ("/api/v1/online-store/materialisations", "post"),
        ("/api/v1/online-store/materialisations/{job_id}", "get"),
        ("/api/v1/online-store/{name}/entities/{entity_id}", "get"),
        ("/api/v1/models", "get"),
        ("/api/v1/models", "post"),
        ("/api/v1/models/{name}", "get"),
        ("/api/v1/models/{name}/versions", "get"),
        ("/api/v1/models/{name}/versions/{version}", "get"),
        ("/api/v1/models/{name}/aliases/{alias}", "put"),
        ("/api/v1/models/{name}/aliases/{alias}/rollback", "post"),
        ("/api/v1/models/{name}", "patch"),
        ("/api/v1/models/{name}/versions/{version}/approve", "post"),
        ("/api/v1/models/{name}/versions/{version}/reject", "post"),
        ("/api/v1/models/{name}/versions/{version}/gates", "post"),
        ("/api/v1/models/{name}/versions/{version}/onnx", "get"),
        ("/api/v1/models/{name}/versions/import", "post"),
        ("/api/v1/models/{name}/compare", "get"),
        ("/api/v1/models/{name}/aliases/{alias}/at", "get"),
        ("/api/v1/training-jobs/{job_id}/cancel", "post"),
        ("/api/v1/models/{name}/predict", "post"),
        ("/api/v1/models/{name}/invocations", "post"),
        ("/api/v1/models/{name}/traffic", "get"),
        ("/api/v1/models/{name}/traffic", "patch"),
        ("/api/v1/models/{name}/drift-reports", "get"),
        ("/api/v1/models/{name}/drift-reports", "post"),
        ("/api/v1/models/{name}/quality-reports", "get"),
        ("/api/v1/models/{name}/quality-reports", "post"),
        ("/api/v1/models/{name}/slo", "get"),
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/{alert_id}", "get"),
        ("/api/v1/alerts/{alert_id}", "post"),
        ("/api/v1/predictions/{request_id}/feedback", "post"),
        ("/api/v1/batch-jobs", "get"),
        ("/api/v1/batch-jobs", "post"),
        ("/api/v1/batch-jobs/{job_id}", "get"),
        ("/api/v1/batch-jobs/{job_id}/cancel", "post"),
        ("/api/v1/batch-jobs/{job_id}/download", "get"),
        ("/api/v1/training-jobs", "get"),
        ("/api/v1/training-jobs", "post"),
        ("/api/v1/training-jobs/{job_id}", "get"),
        # The Open Inference Protocol V2, at the site's root as its clients expect.
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/versions/{version}", "get"),
        ("/v2/models/{name}/ready", "get"),
        ("/v2/models/{name}/versions/{version}/ready", "get"),
        ("/v2/models/{name}/infer", "post"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
    }


def test_the_predict_operation_documents_its_errors_with_the_error_schema(schema):
    operation = schema["paths"][PREDICT_PATH]["post"]
    responses = operation["responses"]
    assert set(responses) == {"200", "400", "401", "403", "404", "413", "415", "429"}
    for code in ("400", "401", "403", "404", "413", "415"):
        assert responses[code]["content"] == {"application/json": {"schema": ERROR_REF}}, code
        assert responses[code]["description"], code
    assert responses["200"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}
    }
    assert list(operation["requestBody"]["content"]) == ["application/json"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][request_schema]["properties"]) == {
        "inputs",
        "alias",
        "version",
        "explain",
    }
    assert schema["components"]["schemas"][request_schema]["required"] == ["inputs"]


def test_the_error_schema_is_the_one_error_body(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["type"] == "object"
    assert set(error["properties"]) == {"message", "extra"}
    assert error["properties"]["message"]["type"] == "string"
    assert error["properties"]["extra"]["type"] == "object"
    assert sorted(error["required"]) == ["extra", "message"]


def test_every_documented_error_uses_the_error_schema(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (path, method, code)


def test_the_bearer_token_is_documented(schema):
    schemes = schema["components"]["securitySchemes"]
    bearer = [name for name, scheme in schemes.items() if scheme == {**scheme, "type": "http", "scheme": "bearer"}]
    assert len(bearer) == 1, schemes
    assert {bearer[0]: []} in schema["paths"][PREDICT_PATH]["post"]["security"]


# -- the docs page ---------------------------------------------------------------------------------


def test_the_docs_page_uses_only_local_assets(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    sources = re.findall(r'<(?:script|link|img)\b[^>]*?\b(?:src|href)="([^"]*)"', html)
    assert sources, "the page loads its assets"
    for source in sources:
        assert not re.match(r"^(?:[a-z]+:)?//", source, re.IGNORECASE) or source.startswith(
            ("http://testserver/", "https://testserver/")
        ), source
    # No inline script or style (the Content-Security-Policy allows neither): the start-up script is a file too.
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=", html), html
    assert '<script src="/api/docs/?script="></script>' in html
    assert 'url: "/api/schema/"' in client.get("/api/docs/?script=").content.decode()
    # ...and the assets it references are served.
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert asset.getvalue(), source
        asset.close()


# -- liveness and readiness ------------------------------------------------------------------------


def test_healthz(client, db):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_readyz_with_nothing_served(client, db):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "problems": [], "checks": {"database": "ok", "broker": "ok", "models": {}}},
    )


def test_readyz_loads_the_champion(client, champion):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {
            "status": "ready",
            "problems": [],
            "checks": {"database": "ok", "broker": "ok", "models": {"loan-risk": "ok (v1)"}},
        },
    )


@pytest.fixture
def champion_file(champion):
    """The champion's artefact file, made writable; its bytes and mode are restored afterwards."""
    path = Path(settings.FARO_ARTEFACT_ROOT) / champion.artefact_path
    original, mode = path.read_bytes(), path.stat().st_mode
    path.chmod(0o644)
    yield path
    path.write_bytes(original)
    path.chmod(mode)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        pytest.param(
            lambda path: path.write_bytes(b"not a model"), "does not match its recorded SHA-256", id="corrupted"
        ),
        pytest.param(
            lambda path: path.write_bytes(path.read_bytes()[:-1] + b"\x00"),
            "does not match its recorded SHA-256",
            id="one-byte",
        ),
        pytest.param(lambda path: path.unlink(), "is missing from storage", id="missing"),
    ],
)
def test_a_damaged_champion_makes_readyz_503_and_predict_a_json_503(
    client, api, tokens, champion, champion_file, damage, problem
):
    original = champion_file.read_bytes()
    damage(champion_file)
    message = f"Artefact {champion.artefact_path} {problem}"

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "problems": [f"loan-risk: {message}"],
        "checks": {"database": "ok", "broker": "ok", "models": {"loan-risk": message}},
    }

    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [valid_row()]})
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"message": message, "extra": {}}
    assert PredictionRecord.objects.count() == 0

    # Repaired, the same process serves again: the failure was not cached.
    champion_file.write_bytes(original)
    assert client.get("/readyz").status_code == 200
    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [valid_row()]})
    assert response.status_code == 200, response.content


def test_a_model_loaded_before_its_file_was_damaged_keeps_serving(client, api, tokens, champion, champion_file):
    """Loaded boosters are kept in memory by version and SHA-256; the damage shows at the next load."""
    assert client.get("/readyz").status_code == 200
    champion_file.write_bytes(b"not a model")
    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [valid_row()]})
    assert response.status_code == 200, response.content


def test_the_schema_generates_without_warnings(tmp_path):
    """`--fail-on-warn` turns drf-spectacular's warnings (an undocumented authenticator, say) into a failure."""
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert (
        yaml.safe_load(target.read_text())["paths"][PREDICT_PATH]["post"]["operationId"] == "v1_models_predict_create"
    )
