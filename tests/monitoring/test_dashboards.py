"""The monitoring dashboards: the fleet page and a model's page, over real decisions, failures and reports."""

import csv
import io
import re
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.monitoring import dashboards
from apps.monitoring.models import Alert, DriftReport
from apps.monitoring.services import drift_report_run, quality_report_run, slo_report_run
from apps.predictions.models import PredictionRecord, ScoringFailure
from apps.predictions.routing import policy_cache
from apps.predictions.services import feedback_record, prediction_make, traffic_policy_set
from apps.registry.services import registered_model_create
from tests.conftest import generated_csv, release, train_version, valid_row
from tests.monitoring.test_drift_reports import training_rows

FLEET = "/monitoring/"
PAGE = "/monitoring/models/loan-risk/"


@pytest.fixture(autouse=True)
def _fresh_policies():
    policy_cache.clear()
    yield
    policy_cache.clear()


@pytest.fixture
def staff(client, users):
    client.force_login(users["ds"])
    return client


def serve_requests(count: int) -> list[str]:
    """`count` requests of one row each, as clients send them; their request ids."""
    return [
        prediction_make(model_name="loan-risk", rows=[valid_row(age=20 + index)]).request_id for index in range(count)
    ]


def latencies(**filters) -> list[float]:
    return list(PredictionRecord.objects.filter(row=0, **filters).values_list("latency_ms", flat=True))


def later():
    return timezone.now() + timedelta(seconds=1)


def page_text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def no_external_assets(page: str) -> None:
    tags = re.findall(r"<(?:script|link)\b[^>]*>", page, flags=re.IGNORECASE)
    assert tags  # the stylesheet at least
    for tag in tags:
        assert "http://" not in tag and "https://" not in tag, tag
        assert not re.search(r"""(?:href|src)\s*=\s*["']?//""", tag), tag  # nor protocol-relative


# -- traffic ------------------------------------------------------------------------------------------------


def test_requests_latency_and_errors_per_bucket(champion):
    serve_requests(6)
    prediction_make(model_name="loan-risk", rows=[valid_row(), valid_row(city="south"), valid_row(age=60)])
    PredictionRecord.objects.create(  # a shadow's decision answered no one: never counted
        model_version=champion, route="shadow", channel="api", inputs={}, output={}, latency_ms=9999.0
    )
    assert PredictionRecord.objects.count() == 10
    logged = latencies(route="champion")
    series = dashboards.traffic_series(champion.registered_model, hours=24, buckets=24, now=later())

    newest = series["buckets"][-1]
    assert [bucket["requests"] for bucket in series["buckets"]] == [0] * 23 + [7]
    assert (newest["p50"], newest["p95"], newest["p99"]) == tuple(float(v) for v in np.percentile(logged, [50, 95, 99]))
    assert newest["error_rate"] == 0.0
    assert {bucket["p95"] for bucket in series["buckets"][:-1]} == {None}  # no requests: no latency, not zero
    assert {bucket["error_rate"] for bucket in series["buckets"][:-1]} == {None}
    assert series["totals"]["requests"] == 7 and not series["empty"] and not series["truncated"]

    ScoringFailure.objects.create(model_version=champion, route="champion", error="boom")
    ScoringFailure.objects.create(model_version=champion, route="canary", error="the champion answered")
    ScoringFailure.objects.create(model_version=champion, route="shadow", error="answered no one")
    series = dashboards.traffic_series(champion.registered_model, hours=24, buckets=24, now=later())
    assert (series["buckets"][-1]["failures"], series["buckets"][-1]["error_rate"]) == (1, 1 / 8)
    assert series["totals"]["error_rate"] == 1 / 8
    assert series["totals"]["p95"] == float(np.percentile(logged, 95))


def test_a_bucket_without_requests_breaks_the_latency_line(champion):
    serve_requests(3)
    older = list(PredictionRecord.objects.order_by("created_at").values_list("pk", flat=True)[:2])
    PredictionRecord.objects.filter(pk__in=older).update(created_at=timezone.now() - timedelta(hours=5, minutes=30))
    series = dashboards.traffic_series(champion.registered_model, hours=24, buckets=24, now=later())
    counts = [bucket["requests"] for bucket in series["buckets"]]
    assert (counts[18], counts[23], sum(counts)) == (2, 1, 3)
    assert series["buckets"][18]["p95"] == float(np.percentile(latencies(pk__in=older), 95))
    latency = series["charts"]["latency"]
    assert [line["name"] for line in latency["legend"]] == ["p50", "p95", "p99"]
    for line in latency["lines"]:
        assert (len(line["segments"]), len(line["markers"])) == (2, 2)  # two lone points, nothing between them
    requests = series["charts"]["requests"]
    assert len(requests["lines"][0]["segments"]) == 1 and len(requests["lines"][0]["markers"]) == 24


def test_only_the_newest_rows_are_read_and_older_buckets_stay_blank(champion, monkeypatch):
    serve_requests(4)
    oldest, older = PredictionRecord.objects.order_by("created_at").values_list("pk", flat=True)[:2]
    PredictionRecord.objects.filter(pk=oldest).update(created_at=timezone.now() - timedelta(hours=10))
    PredictionRecord.objects.filter(pk=older).update(created_at=timezone.now() - timedelta(hours=5, minutes=30))
    monkeypatch.setattr(dashboards, "TRAFFIC_MAX_ROWS", 3)
    series = dashboards.traffic_series(champion.registered_model, hours=24, buckets=24, now=later())
    assert series["truncated"] and series["totals"]["requests"] == 3
    # The bucket of the oldest row read may hold older rows that were not: it is unknown, as are those before.
    assert [bucket["requests"] for bucket in series["buckets"]] == [None] * 19 + [0, 0, 0, 0, 2]


def test_canary_and_champion_side_by_side(staff, registered_model, dataset_version, champion):
    canary = release(train_version(registered_model, dataset_version, max_depth=2), alias="challenger")
    traffic_policy_set(
        registered_model=registered_model, changes={"canary_version": 2, "canary_percent": 100.0}, actor="system"
    )
    policy_cache.clear()
    serve_requests(4)
    traffic_policy_set(registered_model=registered_model, changes={"canary_percent": 0.0}, actor="system")
    policy_cache.clear()
    serve_requests(3)
    ScoringFailure.objects.create(model_version=canary, route="canary", error="the champion answered")
    series = dashboards.traffic_series(registered_model, hours=24, buckets=24, now=later())
    routes = {name: route["totals"] for name, route in series["routes"].items()}
    assert (routes["canary"]["requests"], routes["canary"]["failures"], routes["canary"]["error_rate"]) == (4, 1, 1 / 5)
    assert (routes["champion"]["requests"], routes["champion"]["error_rate"]) == (3, 0.0)
    assert routes["canary"]["p95"] == float(np.percentile(latencies(route="canary"), 95))
    assert routes["champion"]["p95"] == float(np.percentile(latencies(route="champion"), 95))
    assert (series["totals"]["requests"], series["totals"]["error_rate"]) == (7, 0.0)  # the champion answered it
    assert series["canary_served"]
    assert [line["name"] for line in series["charts"]["canary_latency"]["legend"]] == ["Champion", "Canary"]

    page = page_text(staff.get(PAGE))
    canary_p95 = dashboards.ms_text(routes["canary"]["p95"])
    assert (
        f'<tr><th scope="row">Canary</th><td class="num">4</td><td class="num">1</td><td class="num">{canary_p95}</td>'
        '<td class="num">20 %</td></tr>'
    ) in page
    assert "canary v2 paused (0 % of requests)" in page
    assert 'aria-labelledby="chart-canary-errors-title"' in page


@pytest.mark.parametrize(
    ("share", "text"),
    [(None, "—"), (0.0, "0 %"), (1 / 8, "12.5 %"), (1 / 22, "4.55 %"), (1e-6, "< 0.01 %"), (1.0, "100 %")],
)
def test_percentages_never_round_a_failure_away(share, text):
    assert dashboards.percent_text(share) == text


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1.0), (7, 8.0), (12.5, 20.0), (0.21, 0.4), (55, 60.0), (100, 100.0)]
)
def test_axes_end_on_round_numbers(value, ceiling):
    assert dashboards._nice_ceiling(value) == pytest.approx(ceiling)


# -- the model page -----------------------------------------------------------------------------------------


def test_the_model_page_shows_traffic_with_exact_numbers(staff, champion):
    serve_requests(7)
    ScoringFailure.objects.create(model_version=champion, route="champion", error="boom")
    p95 = float(np.percentile(latencies(), 95))
    page = page_text(staff.get(PAGE))
    assert '<dd data-testid="requests">7</dd>' in page
    assert f'<dd data-testid="p95">{dashboards.ms_text(p95)}</dd>' in page
    assert '<dd data-testid="error-rate">12.5 %</dd>' in page
    assert 'aria-labelledby="chart-requests-title"' in page and 'aria-labelledby="chart-latency-title"' in page
    assert "Requests per 1-hour bucket over the last 24 hours: 7 in all, at most 7 in one bucket." in page
    assert "No canary answered in the last 24 hours." in page
    assert f'href="{reverse("registry:model-detail", args=["loan-risk"])}"' in page
    assert '<option value="24" selected>' in page
    no_external_assets(page)

    hour = page_text(staff.get(PAGE + "?hours=1"))
    assert '<dd data-testid="requests">7</dd>' in hour and '<option value="1" selected>' in hour
    assert "Requests per 5-minute bucket over the last hour" in hour


def test_a_model_without_anything_says_so(staff, db):
    registered_model_create(name="quiet", task_type="classification")
    url = reverse("monitoring:model", args=["quiet"])
    page = page_text(staff.get(url))
    for sentence in (
        "No decisions in the last 24 hours.",
        "No canary answered in the last 24 hours.",
        "No drift reports yet.",
        "No quality reports yet.",
        "No SLO report yet.",
        "No open alerts.",
        "No scoring requests for this model counted since the web workers started.",
        "No champion yet",
    ):
        assert sentence in page, sentence
    assert "<svg" not in page.split("<main>")[1]  # no chart of nothing
    assert "No decisions in the last 7 days." in page_text(staff.get(url + "?hours=168"))
    assert "No decisions in the last 6 hours." in page_text(staff.get(url + "?hours=6"))


@pytest.mark.parametrize("hours", ["5", "abc", "", "24.0", "-1"])
def test_an_unknown_window_is_a_400_naming_the_parameter(staff, champion, hours):
    response = staff.get(PAGE, {"hours": hours})
    assert response.status_code == 400
    page = response.content.decode()
    assert f"hours must be one of 1, 6, 24 or 168; {hours!r} is not." in page.replace("&#x27;", "'")
    assert "Traffic, latency and errors" not in page


def test_drift_per_input_over_time(staff, champion):
    rows = training_rows()
    prediction_make(model_name="loan-risk", rows=rows)
    first = drift_report_run(model_name="loan-risk", hours=1, now=later())
    PredictionRecord.objects.update(created_at=timezone.now() - timedelta(hours=3))
    prediction_make(
        model_name="loan-risk",
        rows=[
            {**row, "income": row["income"] * 3, "city": "north" if i % 2 else row["city"]}
            for i, row in enumerate(rows)
        ],
    )
    second = drift_report_run(model_name="loan-risk", hours=1, now=later())
    empty = drift_report_run(model_name="loan-risk", hours=1, now=timezone.now() - timedelta(hours=10))
    assert (first.status, second.status, empty.status) == ("ok", "drifted", "insufficient_data")

    drift = dashboards.drift_over_time(champion.registered_model)
    assert [row["report"].pk for row in drift["reports"]] == [second.pk, first.pk, empty.pk]  # newest window first
    chart = drift["chart"]
    assert [line["name"] for line in chart["legend"]] == ["income", "city", "age", "PSI 0.2: drift threshold"]
    psi = {feature["feature"]: feature["psi"] for feature in second.features}
    assert psi["income"] > psi["city"] > psi["age"]
    # Oldest first, the report without decisions a gap in every line.
    assert chart["table"]["head"] == ["Window end", "Version", "income", "age", "city"]
    table = chart["table"]["rows"]
    assert [row[2] for row in table] == ["—", "0", dashboards.fmt_number(psi["income"])]
    assert [row[3] for row in table] == ["—", "0", dashboards.fmt_number(psi["age"])]
    for line in chart["lines"][:3]:
        assert len(line["markers"]) == 2
    assert chart["x_title"]["text"] == "Hours ago (end of each report's window)"

    page = page_text(staff.get(PAGE))
    assert '<span class="verdict drifted">Drifted</span> for v1, 300 decisions' in page
    assert "Drifted: <code>income</code>, <code>city</code>." in page
    assert 'aria-labelledby="chart-drift-title"' in page
    assert "loan-risk v1: inputs drifted" in page  # the alert it opened
    assert '<span class="severity warning">Warning</span>' in page


def test_live_quality_labels_against_the_estimate(staff, champion):
    model = champion.registered_model
    model.quality_minimum = 0.6
    model.save(update_fields=["quality_minimum"])
    rows = training_rows()
    unlabelled = quality_report_run(model_name="loan-risk", hours=1, now=later())  # nothing served yet
    assert unlabelled.status == "insufficient_data"
    result = prediction_make(model_name="loan-risk", rows=rows)
    estimate_only = quality_report_run(model_name="loan-risk", hours=1, now=later())
    truth = [line["repaid"] for line in csv.DictReader(io.StringIO(generated_csv().decode()))]
    feedback_record(request_id=uuid.UUID(result.request_id), actuals=truth, actor="system")
    labelled = quality_report_run(model_name="loan-risk", hours=1, now=later())
    assert estimate_only.value is None and estimate_only.estimated_value is not None
    assert labelled.value is not None and labelled.label_delay_seconds is not None

    quality = dashboards.quality_over_time(model)
    chart = quality["chart"]
    assert [line["name"] for line in chart["legend"]] == [
        "Measured from labels",
        "Estimated without labels (CBPE)",
        "SLA: auc at least 0.6",
    ]
    measured, estimated = chart["lines"][0], chart["lines"][1]
    assert len(measured["markers"]) == 1 and len(estimated["markers"]) == 2
    assert [row[5:] for row in chart["table"]["rows"]] == [
        ["—", "—"],
        ["—", dashboards.fmt_number(estimate_only.estimated_value)],
        [dashboards.fmt_number(labelled.value), dashboards.fmt_number(labelled.estimated_value)],
    ]
    newest = quality["newest"]
    assert (newest["judged"], newest["source"]) == (labelled.value, "labels")

    page = page_text(staff.get(PAGE))
    assert f'<dd data-testid="quality">{dashboards.fmt_number(labelled.value)} <span class="help">(from labels)' in page
    assert f'<dd data-testid="label-delay">{dashboards.duration_text(labelled.label_delay_seconds)}</dd>' in page
    assert "<dd>auc at least 0.6</dd>" in page
    assert 'aria-labelledby="chart-quality-title"' in page


def test_slo_budgets_left_as_percentages(staff, champion):
    model = champion.registered_model
    model.latency_p95_ms_target, model.availability_target = 60_000.0, 99.0
    model.save(update_fields=["latency_p95_ms_target", "availability_target"])
    serve_requests(7)
    ScoringFailure.objects.create(model_version=champion, route="champion", error="boom")
    report = slo_report_run(registered_model=model, days=1)
    budgets = {objective["objective"]: objective["budget_remaining"] for objective in report.objectives}
    assert budgets == {"latency": 1.0, "availability": round(1 - (1 / 8) / 0.01, 6)}

    panel = dashboards.slo_panel(model)
    rows = {row["objective"]: row for row in panel["objectives"]}
    assert (rows["latency"]["budget_percent"], rows["latency"]["budget_text"]) == (100.0, "100 %")
    assert rows["availability"]["budget_percent"] == 100 * budgets["availability"]
    assert (rows["availability"]["budget_text"], rows["availability"]["spent"]) == ("spent", True)
    assert rows["availability"]["measured"] == "87.5 %"

    page = page_text(staff.get(PAGE))
    assert '<tr data-objective="latency"><th scope="row">Latency</th><td>p95 at most 60000 ms</td>' in page
    assert "100 %</td>" in page
    assert '<td class="budget spent">' in page
    assert "loan-risk: availability SLO error budget spent" in page  # the critical alert it opened
    assert '<span class="severity critical">Critical</span>' in page


def version_cost(model, version: str) -> dict:
    """One version's row: the counters live as long as the process, so other tests' versions are there too."""
    return next(row for row in dashboards.cost_per_inference(model)["rows"] if row["version"] == version)


def test_cost_per_inference_from_the_counters(staff, api, tokens, champion, settings):
    for _ in range(3):
        response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [valid_row()]})
        assert response.status_code == 200
    cpu = REGISTRY.get_sample_value("faro_prediction_cpu_seconds_total", {"model": "loan-risk", "version": "1"})
    predicted = sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "faro_predictions_total"
        and sample.labels.get("model") == "loan-risk"
        and sample.labels.get("version") == "1"
    )
    assert cpu > 0 and predicted >= 3

    settings.FARO_CPU_PRICE_PER_HOUR = None
    unpriced = version_cost(champion.registered_model, "1")
    assert (unpriced["version"], unpriced["cpu_seconds"], unpriced["predictions"]) == ("1", cpu, int(predicted))
    assert unpriced["cpu_ms_per_prediction"] == cpu / predicted * 1000 and unpriced["price_per_prediction"] is None
    page = page_text(staff.get(PAGE))
    assert "Set FARO_CPU_PRICE_PER_HOUR to see a price." in page
    assert "counted since the web workers started" in page

    settings.FARO_CPU_PRICE_PER_HOUR, settings.FARO_COST_CURRENCY = 0.09, "EUR"
    priced = version_cost(champion.registered_model, "1")
    assert priced["price_per_prediction"] == cpu / predicted * 0.09 / 3600
    assert priced["price_per_thousand"] == priced["price_per_prediction"] * 1000
    page = page_text(staff.get(PAGE))
    assert "At 0.09 EUR per CPU-hour" in page
    assert dashboards.money_text(priced["price_per_thousand"], "EUR") in page


def test_cost_reads_every_worker_when_multiprocess(champion, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # no worker has written a file yet
    cost = dashboards.cost_per_inference(champion.registered_model)
    assert (cost["rows"], cost["all_workers"]) == ([], True)


# -- the fleet ---------------------------------------------------------------------------------------------


def test_the_fleet_lists_every_model_problems_first(staff, champion):
    registered_model_create(name="aaa-quiet", task_type="classification")
    model = champion.registered_model
    model.availability_target = 99.0
    model.save(update_fields=["availability_target"])
    serve_requests(7)
    ScoringFailure.objects.create(model_version=champion, route="champion", error="boom")
    slo_report_run(registered_model=model, days=1)
    assert Alert.objects.get().severity == "critical"
    p95 = float(np.percentile(latencies(), 95))

    rows = dashboards.fleet_overview()
    assert [row["model"].name for row in rows] == ["loan-risk", "aaa-quiet"]  # problems before the alphabet
    first = rows[0]
    assert (first["champion"].version, first["requests"], first["p95"], first["error_rate"]) == (1, 7, p95, 1 / 8)
    assert first["problems"] == ["1 critical alert", "availability budget spent"]
    assert (first["alerts"], first["drift"], first["quality"]) == (1, None, None)
    assert (rows[1]["served"], rows[1]["problems"], rows[1]["slo"]) == (False, [], None)

    page = page_text(staff.get(FLEET))
    assert page.index('data-model="loan-risk"') < page.index('data-model="aaa-quiet"')
    loan = page[page.index('data-model="loan-risk"') : page.index('data-model="aaa-quiet"')]
    assert f'<a href="{reverse("monitoring:model", args=["loan-risk"])}">loan-risk</a>' in loan
    assert '<td class="num">7</td>' in loan
    assert f'<td class="num nowrap">{dashboards.ms_text(p95)}</td>' in loan
    assert '<td class="num nowrap">12.5 %</td>' in loan
    assert "Availability spent" in loan
    quiet = page[page.index('data-model="aaa-quiet"') :]
    assert "No decisions in the last 24 hours." in quiet and "no champion" in quiet
    assert 'href="/monitoring/"' in page  # the navigation link
    no_external_assets(page)


def test_the_fleet_with_drift_and_quality_shows_the_newest(staff, champion):
    prediction_make(model_name="loan-risk", rows=training_rows())
    drift_report_run(model_name="loan-risk", hours=1, now=later())
    report = quality_report_run(model_name="loan-risk", hours=1, now=later())
    row = dashboards.fleet_overview()[0]
    assert (row["drift"].status, row["quality_value"], row["quality_source"]) == (
        "ok",
        report.estimated_value,
        "estimate",
    )
    page = page_text(staff.get(FLEET))
    assert '<span class="verdict ok">No drift</span>' in page
    assert f'auc {dashboards.fmt_number(report.estimated_value)} <span class="help">(estimated)</span>' in page


def test_an_empty_fleet_says_so(staff):
    assert "No registered models yet." in page_text(staff.get(FLEET))


# -- access ------------------------------------------------------------------------------------------------


def test_the_pages_need_staff(client, users, champion):
    for url in (FLEET, PAGE):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(users["end_user"])
    for url in (FLEET, PAGE, PAGE + "?hours=5"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_an_unknown_model_is_404_and_only_get_is_allowed(staff, champion):
    assert staff.get("/monitoring/models/nope/").status_code == 404
    assert staff.post(PAGE).status_code == 405
    assert staff.post(FLEET).status_code == 405
    assert DriftReport.objects.count() == 0
