"""Every request is counted by view, method and status, and timed by view; the view is the URL pattern's
name, so no path or id ever becomes a label."""

from prometheus_client import REGISTRY

from tests.conftest import valid_row

PREDICT_VIEW = "api:predictions:predict"


def requests_counted(view: str, method: str, status: str) -> float:
    labels = {"view": view, "method": method, "status": status}
    return REGISTRY.get_sample_value("faro_http_requests_total", labels) or 0.0


def latencies_observed(view: str) -> float:
    return REGISTRY.get_sample_value("faro_http_request_duration_seconds_count", {"view": view}) or 0.0


def test_requests_are_counted_by_view_method_and_status(api, tokens, champion, client):
    keys = [
        (PREDICT_VIEW, "POST", "200"),
        (PREDICT_VIEW, "POST", "400"),
        (PREDICT_VIEW, "GET", "405"),
        ("healthz", "GET", "200"),
        ("unresolved", "GET", "404"),
    ]
    before = {key: requests_counted(*key) for key in keys}
    timed_before = {view: latencies_observed(view) for view in (PREDICT_VIEW, "healthz", "unresolved")}
    path = "/api/v1/models/loan-risk/predict"
    assert api.call("post", path, tokens["predict"], {"inputs": [valid_row()]}).status_code == 200
    assert api.call("post", path, tokens["predict"], {"inputs": [valid_row()]}).status_code == 200
    assert api.call("post", path, tokens["predict"], {"inputs": []}).status_code == 400
    assert api.call("get", path, tokens["predict"]).status_code == 405
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page/12345").status_code == 404
    assert {key: requests_counted(*key) - value for key, value in before.items()} == {
        (PREDICT_VIEW, "POST", "200"): 2.0,
        (PREDICT_VIEW, "POST", "400"): 1.0,
        (PREDICT_VIEW, "GET", "405"): 1.0,
        ("healthz", "GET", "200"): 1.0,
        ("unresolved", "GET", "404"): 1.0,
    }
    assert {view: latencies_observed(view) - value for view, value in timed_before.items()} == {
        PREDICT_VIEW: 4.0,
        "healthz": 1.0,
        "unresolved": 1.0,
    }


def test_an_unusual_method_is_one_label(client, db):
    before = requests_counted("healthz", "other", "405")
    response = client.generic("BREW", "/healthz")
    assert response.status_code == 405
    assert requests_counted("healthz", "other", "405") - before == 1.0
