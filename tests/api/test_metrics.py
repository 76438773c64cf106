"""Metrics: what /metrics exports, request counting through GatewayMiddleware, backend gauges."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from gateway.api.auth import KeyStore
from gateway.api.limits import RateLimiter
from gateway.api.metrics import Metrics
from tests.api.test_auth_limits import KEY_A, client, gateway_app

pytestmark = pytest.mark.anyio

NAMES = ["radixgate_requests_total", "radixgate_request_duration_seconds", "radixgate_prompt_tokens_total",
         "radixgate_completion_tokens_total", "radixgate_cached_tokens_total",
         "radixgate_time_to_first_token_seconds", "radixgate_inter_token_latency_seconds",
         "radixgate_gateway_overhead_seconds", "radixgate_queue_depth", "radixgate_running",
         "radixgate_kv_used_fraction", "radixgate_radix_hit_rate", "radixgate_radix_cached_slots"]

ENGINE_STATS = {"queue_depth": 3, "running": 7, "kv_used_fraction": 0.25, "radix_hit_rate": 0.5,
                "radix_cached_slots": 4096}


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} parsed back from the rendered text."""
    body, _ = metrics.render()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_render_exports_every_metric_in_prometheus_text_format():
    metrics = Metrics(lambda: ENGINE_STATS)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    text = body.decode()
    for name in NAMES:
        assert f"# HELP {name} " in text or f"# HELP {name.removesuffix('_total')} " in text, name


def test_observations_land_in_their_series():
    metrics = Metrics()
    metrics.observe_tokens(prompt=120, completion=30, cached=100)
    metrics.observe_tokens(prompt=5, completion=1, cached=0)
    metrics.observe_ttft(0.05)
    for gap in (0.01, 0.02, 0.03):
        metrics.observe_itl(gap)
    metrics.observe_overhead(0.0004)
    s = samples(metrics)
    assert s["radixgate_prompt_tokens_total", ()] == 125
    assert s["radixgate_completion_tokens_total", ()] == 31
    assert s["radixgate_cached_tokens_total", ()] == 100
    assert s["radixgate_time_to_first_token_seconds_count", ()] == 1
    assert s["radixgate_time_to_first_token_seconds_bucket", (("le", "0.06"),)] == 1
    assert s["radixgate_time_to_first_token_seconds_bucket", (("le", "0.04"),)] == 0
    assert s["radixgate_inter_token_latency_seconds_sum", ()] == pytest.approx(0.06)
    assert s["radixgate_gateway_overhead_seconds_bucket", (("le", "0.0005"),)] == 1


def test_gauges_follow_stats_at_scrape_time_ignoring_unknown_and_non_numeric():
    stats = dict(ENGINE_STATS, mystery_key=1.0)
    metrics = Metrics(lambda: stats)
    s = samples(metrics)
    for key, value in ENGINE_STATS.items():
        assert s[f"radixgate_{key}", ()] == value
    assert not any("mystery" in name for name, _ in s)
    stats.update(queue_depth=0, running="lots")
    s = samples(metrics)
    assert s["radixgate_queue_depth", ()] == 0 and ("radixgate_running", ()) not in s


def test_stats_raising_still_renders_everything_else():
    def broken() -> dict[str, float]:
        raise RuntimeError("engine thread died")

    metrics = Metrics(broken)
    metrics.observe_request("/v1/models", 200, 0.01)
    s = samples(metrics)
    assert s["radixgate_requests_total", (("route", "/v1/models"), ("status", "200"))] == 1
    assert ("radixgate_queue_depth", ()) not in s


def test_two_instances_in_one_process_do_not_collide():
    first, second = Metrics(lambda: {"queue_depth": 1}), Metrics(lambda: {"queue_depth": 2})
    first.observe_tokens(10, 0, 0)
    assert samples(first)["radixgate_prompt_tokens_total", ()] == 10
    assert samples(second)["radixgate_prompt_tokens_total", ()] == 0
    assert samples(second)["radixgate_queue_depth", ()] == 2


async def test_middleware_counts_requests_by_route_template_and_status():
    metrics = Metrics()
    app = gateway_app(KeyStore([KEY_A]), RateLimiter(0, 0), metrics)
    async with client(app) as c:
        auth = {"Authorization": f"Bearer {KEY_A}"}
        for _ in range(2):
            await c.get("/v1/models", headers=auth)
        await c.get("/v1/models")                                  # 401
        await c.get("/v1/models/some-model", headers=auth)         # template label, 404 here
        for i in range(3):
            await c.get(f"/v1/random-{i}", headers=auth)           # unknown: one "other" label
        await c.get("/health")
    s = samples(metrics)

    def requests(route: str, status: str) -> float:
        return s.get(("radixgate_requests_total", (("route", route), ("status", status))), 0)

    assert requests("/v1/models", "200") == 2
    assert requests("/v1/models", "401") == 1
    assert requests("/v1/models/{model}", "404") == 1
    assert requests("other", "404") == 3
    assert requests("/health", "200") == 1
    assert s["radixgate_request_duration_seconds_count", (("route", "/v1/models"),)] == 3
    assert not any("random" in str(labels) for _, labels in s)


async def test_streaming_duration_runs_until_the_body_completes():
    async def stream(_: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0.05)
                yield f"data: {i}\n\n".encode()
        return StreamingResponse(chunks(), media_type="text/event-stream")

    metrics = Metrics()
    app = gateway_app(KeyStore([]), RateLimiter(0, 0), metrics,
                      extra=[Route("/v1/chat/completions", stream, methods=["GET"])])
    async with client(app) as c:
        assert (await c.get("/v1/chat/completions")).text.count("data:") == 3
    s = samples(metrics)
    assert s["radixgate_requests_total", (("route", "/v1/chat/completions"), ("status", "200"))] == 1
    assert s["radixgate_request_duration_seconds_sum", (("route", "/v1/chat/completions"),)] >= 0.15
