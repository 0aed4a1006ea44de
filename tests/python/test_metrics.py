"""`GET /metrics`, read by the Prometheus project's own Python parsers (the strict
OpenMetrics one and the classic text one), against the real `modelway` binary in front
of the real mock upstream: the exposition parses, and its counters move as calls are
made through the official OpenAI SDK.
"""

from __future__ import annotations

from typing import Any

import openai
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from conftest import CLIENT_KEY, FLAKY_KEY, UPSTREAM_KEY, Gateway, MockUpstream


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def scrape(gateway: Gateway) -> dict[str, Any]:
    response = gateway.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    text = response.text
    # Both parsers accept it: the strict OpenMetrics one raises on any malformed line.
    families = {f.name: f for f in openmetrics_families(text)}
    classic = {f.name for f in text_families(text)}
    assert "modelway_in_flight_requests" in classic
    return {"families": families, "text": text}


def value(scraped: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    """The sum of `sample` values in `family` whose labels include `labels`."""
    f = scraped["families"].get(family)
    if f is None:
        return 0.0
    return sum(
        s.value
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_parse_and_move_with_calls(gateway: Gateway, client: openai.OpenAI, upstream: MockUpstream):
    before = scrape(gateway)
    ok = dict(route="fast", provider="up", model="gpt-4o-mini", status="200")
    for i in range(3):
        client.chat.completions.create(model="fast", messages=user(f"count me {i}"))
    chunks = list(client.chat.completions.create(model="fast", messages=user("stream me"), stream=True))
    assert chunks
    # A call that falls back once: one failed attempt at flaky, one answered at up.
    upstream.script({"status": 503, "body": {"error": {"message": "overloaded", "type": "server_error"}}})
    client.chat.completions.create(model="fallback", messages=user("fall back"))
    # A client error: an unknown model.
    try:
        client.chat.completions.create(model="nope/x", messages=user("x"))
    except openai.NotFoundError:
        pass

    after = scrape(gateway)
    # Families with a sample are exposed (an empty one is left out until it has one).
    for family in [
        "modelway_requests",
        "modelway_request_duration_seconds",
        "modelway_time_to_first_token_seconds",
        "modelway_tokens",
        "modelway_upstream_attempts",
        "modelway_target_health",
        "modelway_in_flight_requests",
        "modelway_config_reloads",
        "modelway_config_version",
        "modelway_telemetry_spans_dropped",
        "modelway_telemetry_spans_exported",
    ]:
        assert f"# TYPE {family} " in after["text"], family

    delta = lambda fam, sample, **l: value(after, fam, sample, **l) - value(before, fam, sample, **l)  # noqa: E731
    assert delta("modelway_requests", "modelway_requests_total", **ok) == 4
    assert delta("modelway_requests", "modelway_requests_total", route="fallback", provider="up", status="200") == 1
    assert delta("modelway_requests", "modelway_requests_total", status="404") == 1
    assert delta("modelway_request_duration_seconds", "modelway_request_duration_seconds_count", route="fast") == 4
    assert delta("modelway_time_to_first_token_seconds", "modelway_time_to_first_token_seconds_count", route="fast") == 1
    assert delta("modelway_tokens", "modelway_tokens_total", route="fast", kind="input") > 0
    assert delta("modelway_tokens", "modelway_tokens_total", route="fast", kind="output") > 0
    assert (
        delta("modelway_upstream_attempts", "modelway_upstream_attempts_total", provider="flaky", outcome="overloaded")
        == 1
    )
    assert delta("modelway_upstream_attempts", "modelway_upstream_attempts_total", provider="up", outcome="answered") >= 5
    assert value(after, "modelway_in_flight_requests", "modelway_in_flight_requests") == 0
    assert value(after, "modelway_config_version", "modelway_config_version") >= 1
    assert value(after, "modelway_config_reloads", "modelway_config_reloads_total", result="rejected") == 0
    healthy = value(after, "modelway_target_health", "modelway_target_health", provider="up", state="healthy")
    assert healthy >= 1, after["text"]

    # No secret of the session's config or client reaches the exposition.
    for secret in (CLIENT_KEY, UPSTREAM_KEY, FLAKY_KEY):
        assert secret not in after["text"]
