"""POST /api/v1/models/<name>/predict: what it answers, what it refuses (exactly), and that refusals log nothing."""

from datetime import timedelta

import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from apps.features.transforms import humanise
from apps.governance.services import token_create, token_revoke
from apps.predictions.models import PredictionRecord
from apps.registry.services import model_version_promote
from tests.conftest import FEATURES, train_version, valid_row
from tests.predictions.conftest import refusing

URL = "/api/v1/models/loan-risk/predict"
ALLOWED_CITIES = "'east', 'north', 'south'"
PREDICT_TOKEN = object()  # the default: the "predict" persona's token


def orjson_error(raw: bytes) -> str:
    """The message orjson gives for `raw`, as the API must repeat it."""
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(raw)
    return f"Malformed JSON: {caught.value}"


@pytest.fixture
def predict(api, tokens):
    """POST to the predict endpoint; return the response after checking it is JSON."""

    def call(body=None, *, token=PREDICT_TOKEN, raw=None, content_type="application/json", path=URL):
        response = api.call(
            "post",
            path,
            tokens["predict"] if token is PREDICT_TOKEN else token,
            body,
            raw=raw,
            content_type=content_type,
        )
        assert response["Content-Type"] == "application/json", response.content
        return response

    return call


@pytest.fixture
def refused(predict):
    return refusing(predict)


def invalid_rows(*errors):
    return {"message": f"{len(errors)} problem(s) with the inputs.", "extra": {"errors": list(errors)}}


def invalid_body(fields):
    return {"message": "Invalid request body.", "extra": {"fields": fields}}


def problem(row, field, message):
    return {"row": row, "field": field, "message": message}


# -- success ---------------------------------------------------------------------------------------


def test_one_row_is_scored_and_logged(predict, champion):
    row = valid_row(income=8900.0)
    response = predict({"inputs": [row]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"request_id", "model", "version", "outputs"}
    assert (body["model"], body["version"]) == ("loan-risk", 1)
    assert response["X-Request-ID"] == body["request_id"]
    assert response["X-Model-Version"] == "loan-risk/1"
    [output] = body["outputs"]
    assert output["label"] == "yes"
    assert set(output["probabilities"]) == {"no", "yes"}
    assert output["probabilities"]["yes"] > 0.5
    assert output["probabilities"]["no"] + output["probabilities"]["yes"] == pytest.approx(1.0, abs=2e-6)
    [record] = PredictionRecord.objects.all()
    assert str(record.request_id) == body["request_id"]
    assert (record.row, record.model_version_id, record.channel, record.subject_id) == (0, champion.pk, "api", "")
    assert record.inputs == row
    assert record.output == output


def test_many_rows_keep_their_order_and_the_subject_key(predict, champion):
    rows = [
        valid_row(income=8900.0, customer_id="C9001"),
        valid_row(income=1200.0, city="east", customer_id="C9002"),
        valid_row(income=8800.0, age=70),
    ]
    response = predict({"inputs": rows})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [output["label"] for output in body["outputs"]] == ["yes", "no", "yes"]
    records = PredictionRecord.objects.filter(request_id=body["request_id"]).order_by("row")
    # The subject key is kept once, as the record's subject_id, not among the inputs.
    without_key = [{name: value for name, value in row.items() if name != "customer_id"} for row in rows]
    assert [(record.row, record.subject_id, record.inputs) for record in records] == [
        (0, "C9001", without_key[0]),
        (1, "C9002", without_key[1]),
        (2, "", without_key[2]),
    ]
    assert [record.output for record in records] == body["outputs"]


def test_explain_gives_reasons_with_feature_names_and_sentences(predict, champion):
    rows = [valid_row(income=8900.0), valid_row(income=1200.0, city="east")]
    response = predict({"inputs": rows, "explain": True})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"request_id", "model", "version", "outputs", "explanations"}
    assert len(body["explanations"]) == 2
    for row, explanation in zip(rows, body["explanations"], strict=True):
        assert set(explanation) == {"baseline", "toward", "reasons"}
        assert explanation["toward"] == "yes"
        assert isinstance(explanation["baseline"], float)
        reasons = explanation["reasons"]
        assert reasons, "every row gets at least one reason"
        assert len({reason["feature"] for reason in reasons}) == len(reasons)
        assert [abs(reason["contribution"]) for reason in reasons] == sorted(
            (abs(reason["contribution"]) for reason in reasons), reverse=True
        )
        for reason in reasons:
            assert reason["feature"] in FEATURES
            assert reason["value"] == row[reason["feature"]]
            assert reason["contribution"] != 0
            effect = "more likely" if reason["contribution"] > 0 else "less likely"
            assert (
                reason["sentence"] == f"{humanise(reason['feature'])} = {row[reason['feature']]!r} made 'yes' {effect}."
            )
    # The income is what separates these two applicants; it pushes the rich one up and the poor one down.
    income = [next(r for r in e["reasons"] if r["feature"] == "income") for e in body["explanations"]]
    assert income[0]["contribution"] > 0 > income[1]["contribution"]
    assert income[0]["sentence"] == "Income = 8900.0 made 'yes' more likely."
    assert income[1]["sentence"] == "Income = 1200.0 made 'yes' less likely."


def test_explain_false_gives_no_explanations(predict, champion):
    response = predict({"inputs": [valid_row()], "explain": False})
    assert response.status_code == 200, response.content
    assert "explanations" not in response.json()


def test_a_version_number_and_an_alias_choose_the_version(predict, champion, registered_model, dataset_version):
    second = train_version(registered_model, dataset_version)
    assert second.version == 2
    model_version_promote(version=second, alias="challenger")
    expected = {
        (): (1, champion.pk),
        (("version", 1),): (1, champion.pk),
        (("version", 2),): (2, second.pk),
        (("alias", "champion"),): (1, champion.pk),
        (("alias", "challenger"),): (2, second.pk),
    }
    for choice, (number, pk) in expected.items():
        response = predict({"inputs": [valid_row()], **dict(choice)})
        assert response.status_code == 200, (choice, response.content)
        body = response.json()
        assert body["version"] == number, choice
        assert response["X-Model-Version"] == f"loan-risk/{number}"
        assert set(
            PredictionRecord.objects.filter(request_id=body["request_id"]).values_list("model_version", flat=True)
        ) == {pk}


def test_the_admin_scope_may_predict(predict, champion, tokens):
    response = predict({"inputs": [valid_row()]}, token=tokens["admin"])
    assert response.status_code == 200, response.content
    assert PredictionRecord.objects.count() == 1


def test_exactly_the_row_limit_is_accepted(predict, champion, settings):
    settings.FARO_PREDICT_MAX_ROWS = 3
    response = predict({"inputs": [valid_row()] * 3})
    assert response.status_code == 200, response.content
    assert PredictionRecord.objects.count() == 3


# -- invalid rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param({"income": 5200.5, "city": "north"}, problem(0, "age", "is required"), id="missing-field"),
        pytest.param(valid_row(colour="red"), problem(0, "colour", "is not an input of this model"), id="extra-field"),
        pytest.param(
            valid_row(income="5200.5"), problem(0, "income", "must be a number, not str"), id="string-for-number"
        ),
        pytest.param(
            valid_row(city=3), problem(0, "city", "must be a string category, not int"), id="number-for-category"
        ),
        pytest.param(valid_row(age=True), problem(0, "age", "must be a number, not bool"), id="bool-for-number"),
        pytest.param(valid_row(age=[41]), problem(0, "age", "must be a number, not list"), id="list-for-number"),
        pytest.param(
            valid_row(city="west"),
            problem(0, "city", f"unknown category 'west'; allowed: {ALLOWED_CITIES}"),
            id="unknown-category",
        ),
        pytest.param(
            valid_row(city="North"),
            problem(0, "city", f"unknown category 'North'; allowed: {ALLOWED_CITIES}"),
            id="category-is-case-sensitive",
        ),
        pytest.param(valid_row(income=None), problem(0, "income", "must not be null"), id="null-number"),
        pytest.param(valid_row(city=None), problem(0, "city", "must not be null"), id="null-category"),
    ],
)
def test_an_invalid_row_is_refused_naming_the_field(refused, champion, row, expected):
    assert refused(400, {"inputs": [row]}) == invalid_rows(expected)


def test_every_problem_in_every_row_is_listed(refused, champion):
    rows = [valid_row(), valid_row(age="old", city="west"), {"income": None}]
    assert refused(400, {"inputs": rows}) == invalid_rows(
        problem(1, "age", "must be a number, not str"),
        problem(1, "city", f"unknown category 'west'; allowed: {ALLOWED_CITIES}"),
        problem(2, "income", "must not be null"),
        problem(2, "age", "is required"),
        problem(2, "city", "is required"),
    )


def test_one_bad_row_refuses_the_whole_batch(refused, champion):
    rows = [valid_row()] * 5 + [valid_row(city="west")]
    body = refused(400, {"inputs": rows})
    assert body["extra"]["errors"] == [problem(5, "city", f"unknown category 'west'; allowed: {ALLOWED_CITIES}")]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param(valid_row(), [problem(None, "inputs", "must be a non-empty list of objects")], id="an-object"),
        pytest.param("rows", [problem(None, "inputs", "must be a non-empty list of objects")], id="a-string"),
        pytest.param(None, [problem(None, "inputs", "must be a non-empty list of objects")], id="null"),
        pytest.param([], [problem(None, "inputs", "must be a non-empty list of objects")], id="empty-list"),
        pytest.param(
            [1, "row", [5200.5, 41, "north"], None],
            [
                problem(0, None, "must be an object of feature values, not int"),
                problem(1, None, "must be an object of feature values, not str"),
                problem(2, None, "must be an object of feature values, not list"),
                problem(3, None, "must be an object of feature values, not NoneType"),
            ],
            id="list-of-non-objects",
        ),
    ],
)
def test_inputs_must_be_a_non_empty_list_of_objects(refused, champion, inputs, expected):
    assert refused(400, {"inputs": inputs}) == invalid_rows(*expected)


# -- invalid bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"inputs": [{"income": 1e999, "age": 41, "city": "north"}]}', id="non-finite-number"),
        pytest.param(b'{"inputs": [{"income": -1e999, "age": 41, "city": "north"}]}', id="negative-infinity"),
        pytest.param(b'{"inputs": [{"income": NaN, "age": 41, "city": "north"}]}', id="nan-literal"),
        pytest.param(b'{"inputs": [{"income": Infinity, "age": 41, "city": "north"}]}', id="infinity-literal"),
        pytest.param(b'{"inputs": [{"income": 5200.5, "age": 41, "city": "north"}]', id="truncated"),
        pytest.param(b"{'inputs': []}", id="single-quotes"),
        pytest.param(b'{"inputs": [], }', id="trailing-comma"),
        pytest.param(b'{"inputs": [{"city": "\xff"}]}', id="not-utf8"),
    ],
)
def test_malformed_json_is_refused_with_the_parser_message(refused, champion, raw):
    expected = orjson_error(raw)
    assert refused(400, raw=raw) == {"message": expected, "extra": {}}


def test_the_non_finite_number_message_says_what_is_wrong(refused, champion):
    body = refused(400, raw=b'{"inputs": [{"income": 1e999, "age": 41, "city": "north"}]}')
    assert body["message"].startswith("Malformed JSON: number is infinity when parsed as double")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([valid_row()], id="a-list"),
        pytest.param("inputs", id="a-string"),
        pytest.param(42, id="a-number"),
        pytest.param(None, id="null"),
    ],
)
def test_the_body_must_be_an_object(refused, champion, body):
    assert refused(400, raw=orjson.dumps(body)) == {
        "message": "The body must be a JSON object with an 'inputs' list.",
        "extra": {"fields": {"body": ["Expected a JSON object."]}},
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({}, {"inputs": ["This field is required."]}, id="no-inputs"),
        pytest.param(
            {"input": [valid_row()]},
            {"input": ["Unknown field."], "inputs": ["This field is required."]},
            id="misspelt-inputs",
        ),
        pytest.param(
            {"inputs": [valid_row()], "model": "other", "debug": True},
            {"debug": ["Unknown field."], "model": ["Unknown field."]},
            id="unknown-keys",
        ),
        pytest.param(
            {"inputs": [valid_row()], "alias": "champion", "version": 1},
            {"version": ["Give an alias or a version, not both."]},
            id="alias-and-version",
        ),
        pytest.param({"inputs": [valid_row()], "version": "1"}, {"version": ["Must be an integer."]}, id="version-str"),
        pytest.param(
            {"inputs": [valid_row()], "version": 1.0}, {"version": ["Must be an integer."]}, id="version-float"
        ),
        pytest.param(
            {"inputs": [valid_row()], "version": True}, {"version": ["Must be an integer."]}, id="version-bool"
        ),
        pytest.param({"inputs": [valid_row()], "alias": 1}, {"alias": ["Must be a string."]}, id="alias-number"),
        pytest.param(
            {"inputs": [valid_row()], "explain": "yes"}, {"explain": ["Must be true or false."]}, id="explain-str"
        ),
        pytest.param(
            {"inputs": [valid_row()], "explain": 1}, {"explain": ["Must be true or false."]}, id="explain-int"
        ),
    ],
)
def test_the_body_keys_are_checked(refused, champion, body, fields):
    assert refused(400, body) == invalid_body(fields)


def test_an_empty_body_is_missing_its_inputs(refused, champion):
    assert refused(400, raw=b"") == invalid_body({"inputs": ["This field is required."]})


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", orjson.dumps({"inputs": [valid_row()]})),
        ("application/x-www-form-urlencoded", b"income=5200.5&age=41&city=north"),
        (
            "multipart/form-data; boundary=BoUnDaRy",
            b'--BoUnDaRy\r\nContent-Disposition: form-data; name="age"\r\n\r\n41\r\n--BoUnDaRy--\r\n',
        ),
        ("application/xml", b"<inputs/>"),
    ],
)
def test_other_content_types_are_unsupported(refused, champion, content_type, raw):
    assert refused(415, raw=raw, content_type=content_type) == {
        "message": f'Unsupported media type "{content_type}" in request.',
        "extra": {},
    }


def test_a_body_over_the_default_size_limit_is_refused_before_parsing(refused, champion):
    limit = settings.FARO_PREDICT_MAX_BODY_BYTES
    assert limit == 1024 * 1024
    raw = orjson.dumps({"inputs": [valid_row()], "padding": "x" * limit})
    assert len(raw) > limit
    assert refused(413, raw=raw) == {
        "message": f"Request body of {len(raw)} bytes exceeds the limit of {limit} bytes.",
        "extra": {},
    }


def test_a_body_over_the_size_limit_is_refused_even_when_malformed(refused, champion):
    raw = b"[" * (settings.FARO_PREDICT_MAX_BODY_BYTES + 1)
    assert refused(413, raw=raw) == {
        "message": f"Request body of {len(raw)} bytes exceeds the limit of 1048576 bytes.",
        "extra": {},
    }


def test_the_size_limit_follows_the_setting(predict, refused, champion, settings):
    settings.FARO_PREDICT_MAX_BODY_BYTES = 2048
    rows = [valid_row()] * 60
    raw = orjson.dumps({"inputs": rows})
    assert len(raw) > 2048
    assert refused(413, raw=raw) == {
        "message": f"Request body of {len(raw)} bytes exceeds the limit of 2048 bytes.",
        "extra": {},
    }
    fitting = orjson.dumps({"inputs": rows[:40]})
    assert len(fitting) <= 2048
    response = predict(raw=fitting)
    assert response.status_code == 200, response.content
    assert PredictionRecord.objects.count() == 40


def test_more_rows_than_the_limit_are_refused(refused, champion, settings):
    settings.FARO_PREDICT_MAX_ROWS = 3
    assert refused(413, {"inputs": [valid_row()] * 4}) == {
        "message": "4 rows exceed the limit of 3 per request.",
        "extra": {},
    }


def test_the_row_limit_is_checked_before_the_rows(refused, champion, settings):
    settings.FARO_PREDICT_MAX_ROWS = 2
    body = refused(413, {"inputs": [{"nonsense": True}] * 3})
    assert body == {"message": "3 rows exceed the limit of 2 per request.", "extra": {}}


# -- what is predicted with ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "choice", "message"),
    [
        pytest.param("/api/v1/models/nope/predict", {}, "No registered model named 'nope'.", id="unknown-model"),
        pytest.param(
            "/api/v1/models/nope/predict", {"version": 1}, "No registered model named 'nope'.", id="unknown-model-v1"
        ),
        pytest.param(URL, {"version": 9}, "loan-risk has no version 9.", id="unknown-version"),
        pytest.param(URL, {"version": 0}, "loan-risk has no version 0.", id="version-zero"),
        pytest.param(
            URL, {"alias": "challenger"}, "loan-risk has no version with the alias 'challenger'.", id="unset-alias"
        ),
        pytest.param(URL, {"alias": "gold"}, "loan-risk has no version with the alias 'gold'.", id="unknown-alias"),
    ],
)
def test_unknown_models_versions_and_aliases_are_404(refused, champion, path, choice, message):
    assert refused(404, {"inputs": [valid_row()], **choice}, path=path) == {"message": message, "extra": {}}


def test_a_model_without_a_champion_is_404(refused, registered_model, dataset_version):
    train_version(registered_model, dataset_version)
    assert refused(404, {"inputs": [valid_row()]}) == {
        "message": "loan-risk has no version with the alias 'champion'.",
        "extra": {},
    }


# -- authentication and scopes ---------------------------------------------------------------------

UNAUTHENTICATED = {"message": "Authentication credentials were not provided.", "extra": {}}
INVALID_TOKEN = {"message": "The token is not valid, has expired or was revoked.", "extra": {}}


def test_no_token_is_401_with_a_challenge(predict, champion):
    response = predict({"inputs": [valid_row()]}, token=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == UNAUTHENTICATED
    assert PredictionRecord.objects.count() == 0


def test_authentication_comes_before_the_body_and_the_model(refused, champion):
    assert refused(401, raw=b"{not json", token=None) == UNAUTHENTICATED
    assert refused(401, {"inputs": [valid_row()]}, token=None, path="/api/v1/models/nope/predict") == UNAUTHENTICATED
    assert refused(401, raw=b"x" * (2 * 1024 * 1024), token=None) == UNAUTHENTICATED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("faro_00000000_not-a-real-secret", id="unknown"),
        pytest.param("sk-something-else", id="foreign-format"),
    ],
)
def test_a_wrong_token_is_401(predict, champion, token):
    response = predict({"inputs": [valid_row()]}, token=token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == INVALID_TOKEN
    assert PredictionRecord.objects.count() == 0


def test_a_tampered_token_is_401(predict, champion, tokens):
    genuine = tokens["predict"]
    tampered = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    response = predict({"inputs": [valid_row()]}, token=tampered)
    assert (response.status_code, response.json()) == (401, INVALID_TOKEN)
    assert PredictionRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer", "The Authorization header must be 'Bearer <token>'."),
        ("Bearer two parts", "The Authorization header must be 'Bearer <token>'."),
    ],
)
def test_a_malformed_authorization_header_is_401(api, champion, header, message):
    response = api.call("post", URL, body={"inputs": [valid_row()]}, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == {"message": message, "extra": {}}
    assert PredictionRecord.objects.count() == 0


def test_a_revoked_token_is_401(predict, champion):
    token, plaintext = token_create(name="soon-revoked", scopes=["predict"])
    assert predict({"inputs": [valid_row()]}, token=plaintext).status_code == 200
    before = PredictionRecord.objects.count()
    token_revoke(token=token, actor=None)
    response = predict({"inputs": [valid_row()]}, token=plaintext)
    assert (response.status_code, response.json()) == (401, INVALID_TOKEN)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert PredictionRecord.objects.count() == before


def test_an_expired_token_is_401(predict, champion):
    _, plaintext = token_create(name="expired", scopes=["predict"], expires_at=timezone.now() - timedelta(seconds=1))
    response = predict({"inputs": [valid_row()]}, token=plaintext)
    assert (response.status_code, response.json()) == (401, INVALID_TOKEN)
    assert PredictionRecord.objects.count() == 0


def test_a_token_expiring_later_works(predict, champion):
    _, plaintext = token_create(name="later", scopes=["predict"], expires_at=timezone.now() + timedelta(hours=1))
    assert predict({"inputs": [valid_row()]}, token=plaintext).status_code == 200


@pytest.mark.parametrize("persona", ["read", "write"])
def test_a_token_without_the_predict_scope_is_403(refused, champion, tokens, persona):
    assert refused(403, {"inputs": [valid_row()]}, token=tokens[persona]) == {
        "message": "This token lacks the 'predict' scope.",
        "extra": {},
    }


def test_a_token_without_the_predict_scope_does_not_learn_whether_a_model_exists(refused, champion, tokens):
    assert refused(403, {"inputs": [valid_row()]}, token=tokens["read"], path="/api/v1/models/nope/predict") == {
        "message": "This token lacks the 'predict' scope.",
        "extra": {},
    }


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_not_allowed(api, champion, tokens, method):
    response = api.call(method, URL, tokens["predict"], {"inputs": [valid_row()]})
    assert response.status_code == 405
    assert response.json() == {"message": f'Method "{method.upper()}" not allowed.', "extra": {}}
    assert PredictionRecord.objects.count() == 0


def test_json_with_a_charset_parameter_is_accepted(predict, champion):
    response = predict({"inputs": [valid_row()]}, content_type="application/json; charset=utf-8")
    assert response.status_code == 200, response.content


def test_a_client_over_its_budget_gets_429_with_retry_after(api, tokens, champion, settings):
    settings.FARO_PREDICT_RATE_LIMIT = "3/hour"
    before = PredictionRecord.objects.count()
    answers = [api.call("post", URL, tokens["predict"], {"inputs": [valid_row()]}) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.json() == {
        "message": f"Request was throttled. Expected available in {refused['Retry-After']} seconds.",
        "extra": {},
    }
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert PredictionRecord.objects.count() == before + 3
    # Another client has its own budget.
    other = token_create(name="other-client", scopes=["predict"])[1]
    assert api.call("post", URL, other, {"inputs": [valid_row()]}).status_code == 200
    settings.FARO_PREDICT_RATE_LIMIT = "off"
    assert api.call("post", URL, tokens["predict"], {"inputs": [valid_row()]}).status_code == 200


def test_a_nul_character_in_the_subject_key_or_entity_id_is_refused(refused, champion):
    """PostgreSQL text cannot hold NUL: refused as bad input, never a database error."""
    body = {"inputs": [valid_row(customer_id="C\x001"), {"entity_id": "E\x00"}]}
    assert refused(400, body) == invalid_rows(
        problem(1, "entity_id", "must not contain NUL characters"),
    )
    assert refused(400, {"inputs": [valid_row(customer_id="C\x001")]}) == invalid_rows(
        problem(0, "customer_id", "must not contain NUL characters"),
    )
