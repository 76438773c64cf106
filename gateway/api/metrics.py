"""Prometheus metrics for /metrics: requests, tokens, latencies, and the backend's gauges.

Each Metrics owns its CollectorRegistry, so two apps in one process (tests, several gateways)
never collide in prometheus_client's global registry. Observations go into plain counts here (a
histogram is its buckets' counts and a sum, found by bisection) and become Prometheus families only
at scrape time: prometheus_client's own Counter and Histogram take a lock per value, and a request
makes a dozen observations, about 25 us of the 2-core reference machine's time per request.
All observations come from the event loop, and so does the scrape, so no lock is needed.
"""
from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class Histogram:
    """Counts per bucket (the last one +Inf) and the sum of the observed values."""
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1        # a bucket holds values <= its bound
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            running += count
            out.append((bound, running))
        return out


class Series:
    """One metric's series by label values, created on first use; `created` as Prometheus reports it."""

    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None):
        self.name, self.help, self.labels, self.buckets = name, help_, labels, buckets
        self.values: dict[tuple[str, ...], float | Histogram] = {}
        self.created: dict[tuple[str, ...], float] = {}
        if not labels:
            self.child(())

    def child(self, key: tuple[str, ...]) -> float | Histogram:
        """The series for these label values, made empty on first use."""
        value = self.values.get(key)
        if value is None:
            self.created[key] = time.time()
            value = self.values[key] = Histogram(self.buckets) if self.buckets is not None else 0.0
        return value

    def family(self) -> Metric:
        if self.buckets is None:
            family = CounterMetricFamily(self.name, self.help, labels=self.labels)
            for key, value in self.values.items():
                family.add_metric(key, value, created=self.created[key])
        else:
            family = HistogramMetricFamily(self.name, self.help, labels=self.labels)
            for key, hist in self.values.items():
                family.add_metric(key, hist.cumulative(), hist.total)
        return family


class Families(Collector):
    def __init__(self, series: list[Series]):
        self.series = series

    def collect(self) -> Iterator[Metric]:
        for s in self.series:
            yield s.family()


class Metrics:
    def __init__(self, stats: Stats | None = None):
        self.registry = CollectorRegistry()
        self.requests = Series("radixgate_requests", "HTTP requests by route and status.", ("route", "status"))
        self.request_seconds = Series("radixgate_request_duration_seconds",
                                      "End-to-end request time, until the last body byte is sent.", ("route",),
                                      REQUEST_BUCKETS)
        self.prompt_tokens = Series("radixgate_prompt_tokens", "Prompt tokens processed.")
        self.completion_tokens = Series("radixgate_completion_tokens", "Completion tokens generated.")
        self.cached_tokens = Series("radixgate_cached_tokens", "Prompt tokens served from the radix cache.")
        self.ttft = Series("radixgate_time_to_first_token_seconds", "Time from request to first token.",
                           buckets=TTFT_BUCKETS)
        self.itl = Series("radixgate_inter_token_latency_seconds", "Time between consecutive streamed tokens.",
                          buckets=ITL_BUCKETS)
        self.overhead = Series("radixgate_gateway_overhead_seconds",
                               "Request time spent in the gateway itself, not waiting on the backend.",
                               buckets=OVERHEAD_BUCKETS)
        self.registry.register(Families([self.requests, self.request_seconds, self.prompt_tokens,
                                         self.completion_tokens, self.cached_tokens, self.ttft, self.itl,
                                         self.overhead]))
        if stats is not None:
            self.registry.register(BackendGauges(stats))
        self._ttft, self._itl, self._overhead = self.ttft.values[()], self.itl.values[()], self.overhead.values[()]

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        key = (route, str(status))
        self.requests.values[key] = self.requests.child(key) + 1
        self.request_seconds.child((route,)).observe(seconds)

    def observe_tokens(self, prompt: int, completion: int, cached: int) -> None:
        self.prompt_tokens.values[()] += prompt
        self.completion_tokens.values[()] += completion
        self.cached_tokens.values[()] += cached

    def observe_ttft(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def observe_itl(self, seconds: float) -> None:
        self._itl.observe(seconds)

    def observe_overhead(self, seconds: float) -> None:
        self._overhead.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The body and content type for GET /metrics (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
