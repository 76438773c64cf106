"""Prometheus metrics for /metrics: requests, tokens, latencies, and the backend's gauges.

Each Metrics owns its CollectorRegistry, so two apps in one process (tests, several gateways)
never collide in prometheus_client's global registry.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Bucket bounds in seconds. A whole request runs from milliseconds (a short cached answer) to
# minutes (long generations); time to first token is dominated by queueing and prefill; the gap
# between tokens is one decode step (a few ms to ~100 ms); the gateway's own share is sub-ms.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 20, 40, 80)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25,
               0.5, 1, 2.5)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

# The backend's stats() keys exported as radixgate_<key>; other keys are ignored.
GAUGES = {
    "queue_depth": "Requests waiting to be scheduled.",
    "running": "Requests being prefilled or decoded.",
    "kv_used_fraction": "Fraction of KV token slots in use.",
    "radix_hit_rate": "Prompt tokens served from the radix cache, as a fraction of all prompt tokens.",
    "radix_cached_slots": "KV token slots held by the radix cache.",
}

Stats = Callable[[], dict[str, float]]


class BackendGauges(Collector):
    """Reads the backend's stats at scrape time, so the gauges are never stale."""

    def __init__(self, stats: Stats):
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        try:
            values = self._stats()
        except Exception:                   # a broken backend must not take /metrics down with it
            log.exception("backend stats() failed; gauges left out of this scrape")
            return
        for key, help_ in GAUGES.items():
            value = values.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                yield GaugeMetricFamily(f"radixgate_{key}", help_, value=float(value))


class Metrics:
    def __init__(self, stats: Stats | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("radixgate_requests", "HTTP requests by route and status.",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("radixgate_request_duration_seconds",
                                         "End-to-end request time, until the last body byte is sent.",
                                         ["route"], buckets=REQUEST_BUCKETS, registry=r)
        self.prompt_tokens = Counter("radixgate_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.completion_tokens = Counter("radixgate_completion_tokens", "Completion tokens generated.", registry=r)
        self.cached_tokens = Counter("radixgate_cached_tokens", "Prompt tokens served from the radix cache.",
                                     registry=r)
        self.ttft = Histogram("radixgate_time_to_first_token_seconds", "Time from request to first token.",
                              buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("radixgate_inter_token_latency_seconds", "Time between consecutive streamed tokens.",
                             buckets=ITL_BUCKETS, registry=r)
        self.overhead = Histogram("radixgate_gateway_overhead_seconds",
                                  "Request time spent in the gateway itself, not waiting on the backend.",
                                  buckets=OVERHEAD_BUCKETS, registry=r)
        if stats is not None:
            r.register(BackendGauges(stats))

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def observe_tokens(self, prompt: int, completion: int, cached: int) -> None:
        self.prompt_tokens.inc(prompt)
        self.completion_tokens.inc(completion)
        self.cached_tokens.inc(cached)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def observe_itl(self, seconds: float) -> None:
        self.itl.observe(seconds)

    def observe_overhead(self, seconds: float) -> None:
        self.overhead.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The body and content type for GET /metrics (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
