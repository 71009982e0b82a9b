"""POST /api/v1/models/<name>/invocations, MLflow's scoring protocol: every input format scores exactly as the
predict endpoint does, the version is chosen in the query string, and every refusal is exact and logs nothing."""

import csv
import io
import random

import orjson
import pandas as pd
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.predictions.models import PredictionRecord
from apps.registry.services import registered_model_create
from tests.conftest import FEATURES, generated_csv, release, train_version, valid_row
from tests.predictions.conftest import refusing

URL = "/api/v1/models/loan-risk/invocations"
PREDICT_URL = "/api/v1/models/loan-risk/predict"
FORMATS = "dataframe_split, dataframe_records, instances, inputs"
ROWS = [
    valid_row(income=8900.0),
    valid_row(income=1200.0, city="east"),
    valid_row(income=8800.0, age=70),
    valid_row(income=3100.25, age=23, city="south"),
]
PREDICT_TOKEN = object()  # the default: the "predict" persona's token


def orjson_error(raw: bytes) -> str:
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(raw)
    return f"Malformed JSON: {caught.value}"


def csv_text(rows, columns=None) -> str:
    columns = columns or list(rows[0])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else row[name] for name in columns])
    return out.getvalue()


@pytest.fixture
def invoke(api, tokens):
    """POST to the invocations endpoint; return the response after checking it is JSON."""

    def call(body=None, *, query="", token=PREDICT_TOKEN, raw=None, content_type="application/json", path=URL):
        if isinstance(raw, str):
            raw = raw.encode()
        response = api.call(
            "post",
            f"{path}?{query}" if query else path,
            tokens["predict"] if token is PREDICT_TOKEN else token,
            body,
            raw=raw,
            content_type=content_type,
        )
        assert response["Content-Type"] == "application/json", response.content
        return response

    return call


@pytest.fixture
def refused(invoke):
    return refusing(invoke)


@pytest.fixture
def expected(api, tokens, champion):
    """What the predict endpoint answers for ROWS (its own log rows are then set aside)."""
    response = api.call("post", PREDICT_URL, tokens["predict"], {"inputs": ROWS})
    assert response.status_code == 200, response.content
    PredictionRecord.objects.all().delete()
    return response.json()["outputs"]


def bad_body(place: str, problem: str, fields=None, more: int = 0) -> dict:
    suffix = f" ({more} more in extra.fields)" if more else ""
    return {
        "message": f"Invalid request body: {place} {problem}.{suffix}",
        "extra": {"fields": fields if fields is not None else {place: [problem]}},
        "error_code": "BAD_REQUEST",
    }


def bad_query(place: str, problem: str, fields=None) -> dict:
    return {
        "message": f"Invalid query string: {place} {problem}.",
        "extra": {"fields": fields if fields is not None else {place: [problem]}},
        "error_code": "BAD_REQUEST",
    }


def bad_rows(*errors) -> dict:
    first = errors[0]
    return {
        "message": f"{len(errors)} problem(s) with the inputs; first, row {first['row']}: {first['field']!r} "
        f"{first['message']}.",
        "extra": {"errors": list(errors)},
        "error_code": "BAD_REQUEST",
    }


def problem(row, field, message):
    return {"row": row, "field": field, "message": message}


def csv_error(message: str, **extra) -> dict:
    return {"message": message, "extra": extra, "error_code": "BAD_REQUEST"}


# -- every format scores as /predict does ------------------------------------------------------------------

JSON_BODIES = {
    "dataframe_split": lambda rows: {
        "dataframe_split": {"columns": FEATURES, "data": [[row[name] for name in FEATURES] for row in rows]}
    },
    "dataframe_split-with-index": lambda rows: {
        "dataframe_split": {
            "index": list(range(len(rows))),
            "columns": list(reversed(FEATURES)),
            "data": [[row[name] for name in reversed(FEATURES)] for row in rows],
        }
    },
    "dataframe_records": lambda rows: {"dataframe_records": rows},
    "instances": lambda rows: {"instances": rows},
    "inputs-columns": lambda rows: {"inputs": {name: [row[name] for row in rows] for name in FEATURES}},
    "inputs-rows": lambda rows: {"inputs": rows},
    "pandas-split": lambda rows: {"dataframe_split": pd.DataFrame(rows).to_dict(orient="split")},
    "pandas-records": lambda rows: {"dataframe_records": pd.DataFrame(rows).to_dict(orient="records")},
}


@pytest.mark.parametrize("fmt", list(JSON_BODIES))
def test_every_json_format_answers_the_labels_of_predict(invoke, expected, fmt):
    response = invoke(JSON_BODIES[fmt](ROWS))
    assert response.status_code == 200, response.content
    assert response.json() == {"predictions": [output["label"] for output in expected]}
    assert response["X-Model-Version"] == "loan-risk/1"
    records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).order_by("row")
    assert [(record.row, record.channel, record.inputs, record.output) for record in records] == [
        (index, "mlflow", row, output) for index, (row, output) in enumerate(zip(ROWS, expected, strict=True))
    ]
    assert PredictionRecord.objects.count() == len(ROWS)


@pytest.mark.parametrize("fmt", list(JSON_BODIES))
def test_every_json_format_answers_the_probabilities_of_predict(invoke, expected, fmt):
    response = invoke({**JSON_BODIES[fmt](ROWS), "params": {"predict_proba": True}})
    assert response.status_code == 200, response.content
    assert response.json() == {"predictions": [output["probabilities"] for output in expected]}
    assert set(response.json()["predictions"][0]) == {"no", "yes"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(csv_text(ROWS), id="csv-module"),
        pytest.param(pd.DataFrame(ROWS).to_csv(index=False), id="pandas-to_csv"),
        pytest.param(csv_text(ROWS).replace("\n", "\r\n"), id="crlf"),
        pytest.param("\ufeff" + csv_text(ROWS) + "\n\n", id="bom-and-blank-lines"),
        pytest.param(csv_text(ROWS, columns=["city", "income", "age"]), id="other-column-order"),
    ],
)
def test_a_csv_body_answers_as_predict(invoke, expected, body):
    response = invoke(raw=body, content_type="text/csv")
    assert response.status_code == 200, response.content
    assert response.json() == {"predictions": [output["label"] for output in expected]}
    records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).order_by("row")
    # The cells were read as the signature's types: the log holds exactly what a JSON client sends.
    assert [(record.channel, record.inputs, record.output) for record in records] == [
        ("mlflow", row, output) for row, output in zip(ROWS, expected, strict=True)
    ]
    probabilities = invoke(raw=body, content_type="text/csv; charset=utf-8", query="predict_proba=true")
    assert probabilities.status_code == 200, probabilities.content
    assert probabilities.json() == {"predictions": [output["probabilities"] for output in expected]}


def test_predict_proba_false_and_the_query_string_choose_labels_or_probabilities(invoke, expected):
    labels = [output["label"] for output in expected]
    probabilities = [output["probabilities"] for output in expected]
    body = {"dataframe_records": ROWS}
    cases = [
        ({"params": {"predict_proba": False}}, "", labels),
        ({"params": {}}, "", labels),
        ({"params": None}, "", labels),
        ({}, "predict_proba=true", probabilities),
        ({}, "predict_proba=True", probabilities),
        ({}, "predict_proba=false", labels),
    ]
    for extra, query, answer in cases:
        response = invoke({**body, **extra}, query=query)
        assert response.status_code == 200, (extra, query, response.content)
        assert response.json() == {"predictions": answer}, (extra, query)


def test_the_subject_key_is_kept_in_every_format(invoke, champion):
    rows = [valid_row(customer_id="C9001"), valid_row(income=1200.0, customer_id="C9002")]
    for body, content_type in [
        (orjson.dumps({"dataframe_records": rows}), "application/json"),
        (csv_text(rows).encode(), "text/csv"),
    ]:
        response = invoke(raw=body, content_type=content_type)
        assert response.status_code == 200, response.content
        records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).order_by("row")
        assert [(record.subject_id, {"customer_id": record.subject_id, **record.inputs}) for record in records] == [
            ("C9001", rows[0]),
            ("C9002", rows[1]),
        ]


def test_the_response_headers_name_the_request_and_the_version(invoke, champion):
    response = invoke({"instances": [valid_row()]})
    assert response.status_code == 200, response.content
    [record] = PredictionRecord.objects.all()
    assert response["X-Request-ID"] == str(record.request_id)
    assert response["X-Model-Version"] == "loan-risk/1"
    assert record.model_version_id == champion.pk


def test_exactly_the_row_limit_is_accepted(invoke, champion, settings):
    settings.FARO_PREDICT_MAX_ROWS = 3
    assert invoke({"dataframe_records": [valid_row()] * 3}).status_code == 200
    assert invoke(raw=csv_text([valid_row()] * 3), content_type="text/csv").status_code == 200
    assert PredictionRecord.objects.count() == 6


# -- choosing the version ----------------------------------------------------------------------------------


def test_the_query_string_chooses_the_version(invoke, champion, registered_model, dataset_version):
    second = release(train_version(registered_model, dataset_version, max_depth=2), alias="challenger")
    assert second.version == 2
    for query, (number, pk) in {
        "": (1, champion.pk),
        "alias=champion": (1, champion.pk),
        "alias=challenger": (2, second.pk),
        "version=1": (1, champion.pk),
        "version=2": (2, second.pk),
        "version=2&predict_proba=true": (2, second.pk),
    }.items():
        response = invoke({"dataframe_records": ROWS}, query=query)
        assert response.status_code == 200, (query, response.content)
        assert response["X-Model-Version"] == f"loan-risk/{number}", query
        assert set(
            PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).values_list("model_version", flat=True)
        ) == {pk}, query


def test_a_csv_body_is_read_with_the_signature_of_the_chosen_version(
    invoke, api, tokens, registered_model, dataset_version
):
    """A CSV cell is typed by the version that scores it, the one the query string names."""
    rng = random.Random(3)
    lines = ["customer_id,income,age,city,repaid"]
    for index in range(200):
        income = round(rng.uniform(1000, 9000), 2)
        band = rng.choice(["18-30", "31-50", "51+"])
        lines.append(f"K{index},{income},{band},{rng.choice(['north', 'east'])},{'yes' if income > 5000 else 'no'}")
    dataset = dataset_create(name="banded", target_column="repaid", subject_key_column="customer_id")
    upload = SimpleUploadedFile("banded.csv", ("\n".join(lines) + "\n").encode(), content_type="text/csv")
    banded = release(
        train_version(registered_model, dataset_version_create_from_upload(dataset=dataset, upload=upload)),
        alias="challenger",
    )
    champion = release(train_version(registered_model, dataset_version))
    assert (banded.version, champion.version) == (1, 2)
    rows = [{"income": 6100.0, "age": "31-50", "city": "north"}]
    response = invoke(raw=csv_text(rows), content_type="text/csv", query="alias=challenger")
    assert response.status_code == 200, response.content
    assert response["X-Model-Version"] == "loan-risk/1"
    [record] = PredictionRecord.objects.filter(request_id=response["X-Request-ID"])
    assert record.inputs == rows[0]
    predicted = api.call("post", PREDICT_URL, tokens["predict"], {"inputs": rows, "alias": "challenger"})
    assert response.json() == {"predictions": [predicted.json()["outputs"][0]["label"]]}
    # The champion's age is a number.
    assert invoke(raw=csv_text(rows), content_type="text/csv").json() == bad_rows(
        problem(0, "age", "must be a number, not '31-50'")
    )


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        pytest.param("/api/v1/models/nope/invocations", "", "No registered model named 'nope'.", id="unknown-model"),
        pytest.param(URL, "version=9", "loan-risk has no version 9.", id="unknown-version"),
        pytest.param(URL, "version=0", "loan-risk has no version 0.", id="version-zero"),
        pytest.param(
            URL, "alias=challenger", "loan-risk has no version with the alias 'challenger'.", id="unset-alias"
        ),
    ],
)
def test_unknown_models_versions_and_aliases_are_404(refused, champion, path, query, message):
    assert refused(404, {"instances": [valid_row()]}, path=path, query=query) == {
        "message": message,
        "extra": {},
        "error_code": "RESOURCE_DOES_NOT_EXIST",
    }


# -- regression and one-input models ------------------------------------------------------------------------


@pytest.fixture
def regressor(dataset_version):
    """A regression model on the same data: it estimates the income from age, city and repaid."""
    incomes = dataset_create(name="incomes", target_column="income", subject_key_column="customer_id")
    upload = SimpleUploadedFile("loans.csv", generated_csv(), content_type="text/csv")
    version = dataset_version_create_from_upload(dataset=incomes, upload=upload)
    model = registered_model_create(name="income-estimate", task_type="regression")
    return release(train_version(model, version))


def test_a_regressor_answers_its_values(api, tokens, invoke, regressor):
    rows = [{"age": 30, "city": "north", "repaid": "yes"}, {"age": 61, "city": "east", "repaid": "no"}]
    path = "/api/v1/models/income-estimate/invocations"
    predicted = api.call("post", "/api/v1/models/income-estimate/predict", tokens["predict"], {"inputs": rows})
    assert predicted.status_code == 200, predicted.content
    values = [output["value"] for output in predicted.json()["outputs"]]
    for body, content_type in [
        (orjson.dumps({"dataframe_split": pd.DataFrame(rows).to_dict(orient="split")}), "application/json"),
        (csv_text(rows).encode(), "text/csv"),
    ]:
        response = invoke(raw=body, content_type=content_type, path=path)
        assert response.status_code == 200, response.content
        assert response.json() == {"predictions": values}
        assert response["X-Model-Version"] == "income-estimate/1"


def test_predict_proba_is_refused_for_a_regressor(refused, regressor):
    path = "/api/v1/models/income-estimate/invocations"
    expected = {
        "message": "predict_proba applies to classification models; income-estimate is a regression model.",
        "extra": {"fields": {"predict_proba": ["is only for classification models"]}},
        "error_code": "BAD_REQUEST",
    }
    body = {"dataframe_records": [{"age": 30, "city": "north", "repaid": "yes"}], "params": {"predict_proba": True}}
    assert refused(400, body, path=path) == expected
    assert refused(400, {"dataframe_records": body["dataframe_records"]}, path=path, query="predict_proba=true") == (
        expected
    )


@pytest.fixture
def one_input_model(db):
    rng = random.Random(5)
    lines = ["customer_id,income,repaid"]
    for index in range(200):
        income = round(rng.uniform(1000, 9000), 2)
        lines.append(f"S{index},{income},{'yes' if income + rng.uniform(-900, 900) > 5000 else 'no'}")
    dataset = dataset_create(name="incomes-only", target_column="repaid", subject_key_column="customer_id")
    upload = SimpleUploadedFile("incomes.csv", ("\n".join(lines) + "\n").encode(), content_type="text/csv")
    model = registered_model_create(name="by-income", task_type="classification", favourable_label="yes")
    return release(train_version(model, dataset_version_create_from_upload(dataset=dataset, upload=upload)))


def test_a_one_input_model_takes_bare_values(api, tokens, invoke, one_input_model):
    incomes = [8900.0, 1200.0, 6000.5]
    path = "/api/v1/models/by-income/invocations"
    predicted = api.call(
        "post", "/api/v1/models/by-income/predict", tokens["predict"], {"inputs": [{"income": v} for v in incomes]}
    )
    labels = [output["label"] for output in predicted.json()["outputs"]]
    assert labels[:2] == ["yes", "no"]
    for body in (
        {"instances": incomes},
        {"instances": [[value] for value in incomes]},
        {"inputs": incomes},
        {"inputs": {"income": incomes}},
        {"instances": [{"income": value} for value in incomes]},
    ):
        response = invoke(body, path=path)
        assert response.status_code == 200, (body, response.content)
        assert response.json() == {"predictions": labels}, body
        records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).order_by("row")
        assert [record.inputs for record in records] == [{"income": value} for value in incomes]


def test_bare_values_are_refused_for_a_model_with_several_inputs(refused, champion):
    message = (
        "must be an object of input values; a bare value is taken only by a model with one input, and this one "
        "has 3 (income, age, city)"
    )
    assert refused(400, {"instances": [[5200.5, 41, "north"], [1200.0, 30, "east"]]}) == bad_body(
        "instances[0]", message, fields={"instances[0]": [message], "instances[1]": [message]}, more=1
    )
    assert refused(400, {"inputs": [5200.5]}) == bad_body("inputs[0]", message)


# -- refused bodies ---------------------------------------------------------------------------------------
# The shape of the request is checked before the model is looked up: these refusals need no model.


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"instances": [{"income": 1e999, "age": 41, "city": "north"}]}', id="non-finite-number"),
        pytest.param(b'{"instances": [{"income": NaN, "age": 41, "city": "north"}]}', id="nan-literal"),
        pytest.param(b'{"instances": [{"income": -Infinity, "age": 41, "city": "north"}]}', id="infinity-literal"),
        pytest.param(b'{"instances": [{"income": 5200.5, "age": 41, "city": "north"}]', id="truncated"),
        pytest.param(b"{'instances': []}", id="single-quotes"),
        pytest.param(b'{"instances": [{"city": "\xff"}]}', id="not-utf8"),
    ],
)
def test_malformed_json_is_refused_with_the_parser_message(refused, raw):
    assert refused(400, raw=raw) == {"message": orjson_error(raw), "extra": {}, "error_code": "BAD_REQUEST"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([valid_row()], id="a-list"),
        pytest.param("instances", id="a-string"),
        pytest.param(None, id="null"),
    ],
)
def test_the_body_must_be_an_object(refused, body):
    assert refused(400, raw=orjson.dumps(body)) == bad_body("body", f"must be a JSON object with one of {FORMATS}")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({}, {"body": [f"must have exactly one of {FORMATS}; it has none"]}, id="none"),
        pytest.param(
            {"params": {"predict_proba": True}},
            {"body": [f"must have exactly one of {FORMATS}; it has none"]},
            id="only-params",
        ),
        pytest.param(
            {"dataframe_records": [valid_row()], "inputs": [valid_row()]},
            {"body": [f"must have exactly one of {FORMATS}; it has dataframe_records, inputs"]},
            id="two-formats",
        ),
        pytest.param(
            {"dataframe": [valid_row()]},
            {
                "dataframe": ["is not a field of this protocol"],
                "body": [f"must have exactly one of {FORMATS}; it has none"],
            },
            id="misspelt-format",
        ),
        pytest.param(
            {"instances": [valid_row()], "signature_name": "serving_default"},
            {"signature_name": ["is not a field of this protocol"]},
            id="unknown-key",
        ),
        pytest.param(
            {"instances": [valid_row()], "params": ["predict_proba"]},
            {"params": ["must be an object"]},
            id="params-list",
        ),
        pytest.param(
            {"instances": [valid_row()], "params": {"temperature": 0.1}},
            {"params.temperature": ["is not a parameter of this model; known: predict_proba"]},
            id="unknown-param",
        ),
        pytest.param(
            {"instances": [valid_row()], "params": {"predict_proba": "yes"}},
            {"params.predict_proba": ["must be true or false"]},
            id="predict-proba-string",
        ),
    ],
)
def test_the_body_keys_are_checked(refused, body, fields):
    place, problems = next(iter(fields.items()))
    more = sum(len(items) for items in fields.values()) - 1
    assert refused(400, body) == bad_body(place, problems[0], fields=fields, more=more)


def test_an_empty_json_body_has_no_format(refused):
    assert refused(400, raw=b"") == bad_body("body", f"must have exactly one of {FORMATS}; it has none")


@pytest.mark.parametrize(
    ("split", "fields"),
    [
        pytest.param(
            [["income"], [1]],
            {"dataframe_split": ['must be an object with "columns" and "data", not a list']},
            id="a-list",
        ),
        pytest.param(
            {"data": [[5200.5, 41, "north"]]},
            {"dataframe_split.columns": ["is required: the names of the columns, in the order of each row's values"]},
            id="no-columns",
        ),
        pytest.param(
            {"columns": FEATURES},
            {"dataframe_split.data": ["is required: a list of rows, each a list of values"]},
            id="no-data",
        ),
        pytest.param(
            {"columns": ["income", 2, "city"], "data": [[5200.5, 41, "north"]]},
            {"dataframe_split.columns[1]": ["must be a string, not a number"]},
            id="column-not-a-string",
        ),
        pytest.param(
            {"columns": ["income", "age", "income"], "data": [[5200.5, 41, 1.0]]},
            {"dataframe_split.columns[2]": ["repeats the column 'income'"]},
            id="repeated-column",
        ),
        pytest.param(
            {"columns": "income,age,city", "data": [[5200.5, 41, "north"]]},
            {"dataframe_split.columns": ["must be a list of column names, not a string"]},
            id="columns-a-string",
        ),
        pytest.param(
            {"columns": FEATURES, "data": [[5200.5, 41, "north"], [5200.5, 41, "north", 7], [1.0, 2]]},
            {
                "dataframe_split.data[1]": ["has 4 values, but columns names 3"],
                "dataframe_split.data[2]": ["has 2 values, but columns names 3"],
            },
            id="rows-of-the-wrong-width",
        ),
        pytest.param(
            {"columns": FEATURES, "data": [valid_row()]},
            {"dataframe_split.data[0]": ["must be a list of values, not an object"]},
            id="row-an-object",
        ),
        pytest.param(
            {"columns": FEATURES, "data": []},
            {"dataframe_split.data": ["must list at least one of rows"]},
            id="no-rows",
        ),
        pytest.param(
            {"columns": FEATURES, "data": [[5200.5, 41, "north"]], "index": [0, 1]},
            {"dataframe_split.index": ["has 2 entries, but data has 1 rows"]},
            id="index-of-the-wrong-length",
        ),
        pytest.param(
            {"columns": FEATURES, "data": [[5200.5, 41, "north"]], "dtypes": {}},
            {"dataframe_split.dtypes": ['is not a key of the split format ("columns", "data", "index")']},
            id="unknown-key",
        ),
    ],
)
def test_dataframe_split_shapes_are_checked(refused, split, fields):
    place, problems = next(iter(fields.items()))
    more = sum(len(items) for items in fields.values()) - 1
    assert refused(400, {"dataframe_split": split}) == bad_body(place, problems[0], fields=fields, more=more)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param(
            {"dataframe_records": valid_row()},
            {"dataframe_records": ["must be a list of row objects, not an object"]},
            id="records-an-object",
        ),
        pytest.param(
            {"dataframe_records": []}, {"dataframe_records": ["must list at least one of row objects"]}, id="no-records"
        ),
        pytest.param(
            {"dataframe_records": [valid_row(), [5200.5, 41, "north"], None]},
            {
                "dataframe_records[1]": ["must be an object of input values, not a list"],
                "dataframe_records[2]": ["must be an object of input values, not null"],
            },
            id="records-not-objects",
        ),
        pytest.param({"instances": []}, {"instances": ["must list at least one of rows"]}, id="no-instances"),
        pytest.param(
            {"instances": "rows"}, {"instances": ["must be a list of rows, not a string"]}, id="instances-a-string"
        ),
        pytest.param(
            {"instances": [valid_row(), 5200.5]},
            {"instances[1]": ["must be an object of input values, not a number"]},
            id="instances-mixed",
        ),
        pytest.param(
            {"inputs": 5200.5},
            {"inputs": ["must be an object of columns (name -> list of values) or a list of rows, not a number"]},
            id="inputs-a-number",
        ),
        pytest.param({"inputs": {}}, {"inputs": ["must name at least one column"]}, id="inputs-no-columns"),
        pytest.param(
            {"inputs": {"income": 5200.5, "age": [41], "city": ["north"]}},
            {"inputs.income": ["must be a list of values, one per row, not a number"]},
            id="inputs-a-scalar-column",
        ),
        pytest.param(
            {"inputs": {"income": [5200.5, 1.0], "age": [41], "city": ["north", "east"]}},
            {"inputs.age": ["has 1 values, but inputs.income has 2"]},
            id="inputs-columns-of-different-lengths",
        ),
        pytest.param(
            {"inputs": {"income": [], "age": [], "city": []}},
            {"inputs.income": ["must list at least one value"]},
            id="inputs-empty-columns",
        ),
        pytest.param({"inputs": []}, {"inputs": ["must list at least one of rows"]}, id="inputs-empty-list"),
    ],
)
def test_row_lists_and_columns_are_checked(refused, body, fields):
    place, problems = next(iter(fields.items()))
    more = sum(len(items) for items in fields.values()) - 1
    assert refused(400, body) == bad_body(place, problems[0], fields=fields, more=more)


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs-columns", "inputs-rows"])
def test_rows_are_validated_against_the_signature_in_every_format(refused, champion, fmt):
    rows = [valid_row(), {"income": "5200.5", "age": 41, "city": "west"}]
    allowed = "'east', 'north', 'south'"
    assert refused(400, JSON_BODIES[fmt](rows)) == bad_rows(
        problem(1, "income", "must be a number, not str"),
        problem(1, "city", f"unknown category 'west'; allowed: {allowed}"),
    )


def test_an_unknown_column_is_named(refused, champion):
    body = {"dataframe_split": {"columns": [*FEATURES, "colour"], "data": [[5200.5, 41, "north", "red"]]}}
    assert refused(400, body) == bad_rows(problem(0, "colour", "is not an input of this model"))
    assert (
        refused(400, body)["message"]
        == "1 problem(s) with the inputs; first, row 0: 'colour' is not an input of this model."
    )


def test_a_missing_column_is_named(refused, champion):
    body = {"dataframe_split": {"columns": ["income", "city"], "data": [[5200.5, "north"]]}}
    assert refused(400, body) == bad_rows(problem(0, "age", "is required"))


# -- refused CSV bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "income,age,city\n5200.5,41,north\n1200.0,30,east,extra\n",
            csv_error("CSV line 3 has 4 values, but the header names 3 columns.", line=3, row=1),
            id="a-long-row",
        ),
        pytest.param(
            "income,age,city\n5200.5,41\n",
            csv_error("CSV line 2 has 2 values, but the header names 3 columns.", line=2, row=0),
            id="a-short-row",
        ),
        pytest.param(
            'income,age,city\n5200.5,41,"north\n',
            csv_error("CSV line 2 cannot be read: unexpected end of data.", line=2),
            id="an-open-quote",
        ),
        pytest.param(
            'income,age,city\n5200.5,41,"north"x\n',
            csv_error("CSV line 2 cannot be read: ',' expected after '\"'.", line=2),
            id="text-after-a-quote",
        ),
        pytest.param(
            b"income,age,city\n5200.5,41,n\xf6rth\n",
            csv_error("The CSV body is not UTF-8: byte 0xf6 at offset 27."),
            id="latin-1-bytes",
        ),
        pytest.param(
            "\n\n", csv_error("The CSV body is empty: it needs a header row and at least one row."), id="blank-lines"
        ),
        pytest.param(
            "income,age,city\n", csv_error("The CSV body has a header but no rows.", line=2, row=0), id="header-only"
        ),
        pytest.param(
            ",income,age,city\n0,5200.5,41,north\n",
            csv_error(
                "CSV line 1: column 1 of the header has no name (write the frame with to_csv(index=False)).", line=1
            ),
            id="a-pandas-index-column",
        ),
        pytest.param(
            "income,age,,city\n5200.5,41,,north\n",
            csv_error("CSV line 1: column 3 of the header has no name.", line=1),
            id="an-unnamed-column",
        ),
        pytest.param(
            "income,age,income\n5200.5,41,1\n",
            csv_error("CSV line 1: the header names the column 'income' twice.", line=1),
            id="a-repeated-column",
        ),
    ],
)
def test_a_csv_body_that_cannot_be_read_names_its_line(refused, raw, expected):
    assert refused(400, raw=raw, content_type="text/csv") == expected


def test_an_empty_csv_body_is_refused(api, tokens):
    response = api.call("post", URL, tokens["predict"], raw=b"", CONTENT_TYPE="text/csv")
    assert (response.status_code, response.json()) == (
        400,
        csv_error("The CSV body is empty: it needs a header row and at least one row."),
    )


@pytest.mark.parametrize(
    ("cells", "errors"),
    [
        pytest.param("abc,41,north", [problem(0, "income", "must be a number, not 'abc'")], id="text-for-a-number"),
        pytest.param("inf,41,north", [problem(0, "income", "must be a number, not 'inf'")], id="inf"),
        pytest.param("NaN,41,north", [problem(0, "income", "must be a number, not 'NaN'")], id="nan"),
        pytest.param("1e999,41,north", [problem(0, "income", "must be a finite number, not '1e999'")], id="overflow"),
        pytest.param("1_000,41,north", [problem(0, "income", "must be a number, not '1_000'")], id="underscores"),
        pytest.param(
            "5200.5,forty,north\n1200,30.5.1,",
            [
                problem(0, "age", "must be a number, not 'forty'"),
                problem(1, "age", "must be a number, not '30.5.1'"),
            ],
            id="several",
        ),
        pytest.param(",41,north", [problem(0, "income", "must not be null")], id="an-empty-cell-is-null"),
        pytest.param(
            "5200.5,41,west",
            [problem(0, "city", "unknown category 'west'; allowed: 'east', 'north', 'south'")],
            id="unknown-category",
        ),
    ],
)
def test_csv_cells_are_read_as_the_signature_says(refused, champion, cells, errors):
    assert refused(400, raw=f"income,age,city\n{cells}\n", content_type="text/csv") == bad_rows(*errors)


def test_an_unknown_csv_column_is_named(refused, champion):
    assert refused(400, raw="income,age,city,colour\n5200.5,41,north,red\n", content_type="text/csv") == bad_rows(
        problem(0, "colour", "is not an input of this model")
    )


def test_a_csv_charset_other_than_utf8_is_unsupported(refused):
    assert refused(415, raw=csv_text([valid_row()]), content_type="text/csv; charset=latin-1") == {
        "message": "CSV bodies must be UTF-8, not charset=latin-1.",
        "extra": {},
        "error_code": "BAD_REQUEST",
    }


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/plain", 'Unsupported media type "text/plain": send application/json or text/csv.'),
        ("application/xml", 'Unsupported media type "application/xml": send application/json or text/csv.'),
        (
            "application/x-www-form-urlencoded",
            'Unsupported media type "application/x-www-form-urlencoded": send application/json or text/csv.',
        ),
        ("", "The request has no Content-Type: send application/json or text/csv."),
    ],
)
def test_other_content_types_are_unsupported(refused, content_type, message):
    assert refused(415, raw=csv_text([valid_row()]), content_type=content_type) == {
        "message": message,
        "extra": {},
        "error_code": "BAD_REQUEST",
    }


# -- the query string --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        pytest.param(
            "alias=champion&version=1",
            {"version": ["cannot be given with an alias; give one or the other"]},
            id="alias-and-version",
        ),
        pytest.param("version=two", {"version": ["must be a version number, not 'two'"]}, id="version-word"),
        pytest.param("version=-1", {"version": ["must be a version number, not '-1'"]}, id="version-negative"),
        pytest.param("version=1.0", {"version": ["must be a version number, not '1.0'"]}, id="version-float"),
        pytest.param("alias=", {"alias": ["must not be empty"]}, id="alias-empty"),
        pytest.param("alias=a&alias=b", {"alias": ["is given 2 times; give it once"]}, id="alias-twice"),
        pytest.param(
            "predict_proba=yes", {"predict_proba": ["must be true or false, not 'yes'"]}, id="predict-proba-word"
        ),
        pytest.param(
            "explain=true",
            {"explain": ["is not a query parameter of this endpoint; known: alias, version, predict_proba"]},
            id="unknown",
        ),
    ],
)
def test_the_query_string_is_checked(refused, query, fields):
    place, problems = next(iter(fields.items()))
    assert refused(400, {"instances": [valid_row()]}, query=query) == bad_query(place, problems[0], fields=fields)


def test_predict_proba_in_the_query_and_params_is_refused(refused):
    body = {"instances": [valid_row()], "params": {"predict_proba": True}}
    assert refused(400, body, query="predict_proba=true") == {
        "message": "Invalid request: predict_proba is given in both the query string and params; give it once.",
        "extra": {"fields": {"predict_proba": ["is given in both the query string and params; give it once"]}},
        "error_code": "BAD_REQUEST",
    }


# -- sizes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_a_body_over_the_size_limit_is_refused_before_parsing(refused, content_type):
    limit = settings.FARO_PREDICT_MAX_BODY_BYTES
    raw = b"[" * (limit + 1)  # neither JSON nor CSV: it is never read
    assert refused(413, raw=raw, content_type=content_type) == {
        "message": f"Request body of {len(raw)} bytes exceeds the limit of {limit} bytes.",
        "extra": {},
        "error_code": "RESOURCE_LIMIT_EXCEEDED",
    }


def test_the_size_limit_follows_the_setting(invoke, refused, champion, settings):
    settings.FARO_PREDICT_MAX_BODY_BYTES = 2048
    raw = csv_text([valid_row()] * 150)
    assert len(raw) > 2048
    assert refused(413, raw=raw, content_type="text/csv")["message"] == (
        f"Request body of {len(raw)} bytes exceeds the limit of 2048 bytes."
    )
    fitting = csv_text([valid_row()] * 100)
    assert len(fitting) <= 2048
    assert invoke(raw=fitting, content_type="text/csv").status_code == 200


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        pytest.param(orjson.dumps({"dataframe_records": [valid_row()] * 4}), "application/json", id="json"),
        pytest.param(csv_text([valid_row()] * 4), "text/csv", id="csv"),
        pytest.param(
            orjson.dumps({"inputs": {name: [valid_row()[name]] * 4 for name in FEATURES}}),
            "application/json",
            id="columns",
        ),
    ],
)
def test_more_rows_than_the_limit_are_refused(refused, champion, settings, raw, content_type):
    settings.FARO_PREDICT_MAX_ROWS = 3
    assert refused(413, raw=raw, content_type=content_type) == {
        "message": "4 rows exceed the limit of 3 per request.",
        "extra": {},
        "error_code": "RESOURCE_LIMIT_EXCEEDED",
    }


# -- who may call --------------------------------------------------------------------------------------------


def test_no_token_is_401_before_the_body_is_read(refused):
    expected = {
        "message": "Authentication credentials were not provided.",
        "extra": {},
        "error_code": "UNAUTHENTICATED",
    }
    assert refused(401, {"instances": [valid_row()]}, token=None) == expected
    assert refused(401, raw=b"{not json", token=None) == expected
    assert refused(401, raw=b"x" * (2 * 1024 * 1024), content_type="text/csv", token=None) == expected


def test_a_token_without_the_predict_scope_is_403(refused, tokens):
    assert refused(403, {"instances": [valid_row()]}, token=tokens["read"]) == {
        "message": "This token lacks the 'predict' scope.",
        "extra": {},
        "error_code": "PERMISSION_DENIED",
    }


def test_the_admin_scope_may_invoke(invoke, champion, tokens):
    assert invoke({"instances": [valid_row()]}, token=tokens["admin"]).status_code == 200


def test_a_client_over_its_budget_gets_429_with_mlflow_s_code(invoke, champion, settings):
    settings.FARO_PREDICT_RATE_LIMIT = "2/hour"
    answers = [invoke({"instances": [valid_row()]}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[-1].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert int(answers[-1]["Retry-After"]) >= 1
    assert PredictionRecord.objects.count() == 2


def test_get_is_not_allowed(api, tokens):
    response = api.call("get", URL, tokens["predict"])
    assert response.status_code == 405
    assert response.json() == {"message": 'Method "GET" not allowed.', "extra": {}, "error_code": "BAD_REQUEST"}


# -- the OpenAPI document ------------------------------------------------------------------------------------


def test_the_operation_is_documented(client, db):
    schema = orjson.loads(client.get("/api/schema/?format=json").content)
    operation = schema["paths"]["/api/v1/models/{name}/invocations"]["post"]
    assert list(operation["requestBody"]["content"]) == ["application/json", "text/csv"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][body]["properties"]) == {
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
        "params",
    }
    assert operation["requestBody"]["content"]["text/csv"]["schema"] == {"type": "string"}
    assert {(parameter["in"], parameter["name"]) for parameter in operation["parameters"]} == {
        ("path", "name"),
        ("query", "alias"),
        ("query", "version"),
        ("query", "predict_proba"),
    }
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "413", "415", "429", "503"}
    assert "error_code" in operation["description"]
