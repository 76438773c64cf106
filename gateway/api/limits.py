"""Per-key rate limits: requests per minute and tokens per minute, as continuously refilled buckets.

A request takes one unit from its key's request bucket when admitted; its prompt and completion
tokens are debited from the token bucket once the response is done (they are unknown before), so
the token bucket may go negative, and the key is refused until it refills above empty again.
All calls come from the event loop, so no lock is needed.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.api.errors import ApiError


@dataclass(slots=True)
class Buckets:
    requests: float
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int,
                 clock: Callable[[], float] = time.monotonic):
        if requests_per_minute < 0 or tokens_per_minute < 0:
            raise ValueError("rate limits must be >= 0 (0: unlimited)")
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._clock = clock
        self._buckets: dict[str, Buckets] = {}
        self._next_sweep = clock() + 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, key: str) -> None:
        """Take one request for `key`, or raise ApiError 429 with a Retry-After; nothing is taken then."""
        if not self.enabled:
            return
        now = self._clock()
        self._sweep(now)
        b = self._refilled(key, now)
        if self.tpm and b.tokens < 1:
            raise self._refusal(key, "tokens per min (TPM)", self.tpm, b.tokens)
        if self.rpm:
            if b.requests < 1:
                raise self._refusal(key, "requests per min (RPM)", self.rpm, b.requests)
            b.requests -= 1

    def debit(self, key: str, tokens: int) -> None:
        """Charge a finished response's prompt + completion tokens to `key`."""
        if self.tpm and tokens > 0:
            self._refilled(key, self._clock()).tokens -= tokens

    def _refilled(self, key: str, now: float) -> Buckets:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Buckets(float(self.rpm), float(self.tpm), now)
            return b
        minutes = (now - b.stamp) / 60.0
        b.requests = min(float(self.rpm), b.requests + minutes * self.rpm)
        b.tokens = min(float(self.tpm), b.tokens + minutes * self.tpm)
        b.stamp = now
        return b

    def _sweep(self, now: float) -> None:
        """Drop buckets that have refilled to full: a fresh one behaves identically, so this is exact."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for key in [k for k, b in self._buckets.items() if self._full_by(b, now)]:
            del self._buckets[key]

    def _full_by(self, b: Buckets, now: float) -> bool:
        minutes = (now - b.stamp) / 60.0
        return (not self.rpm or b.requests + minutes * self.rpm >= self.rpm) and \
               (not self.tpm or b.tokens + minutes * self.tpm >= self.tpm)

    def _refusal(self, key: str, what: str, limit: int, level: float) -> ApiError:
        wait = max(1, math.ceil((1 - level) * 60.0 / limit))
        return ApiError(429, f"Rate limit reached for {what} for {key}: Limit {limit}. Please try again in {wait}s.",
                        code="rate_limit_exceeded", headers={"Retry-After": str(wait)},
                        type_="tokens" if "token" in what else "requests")   # OpenAI's error types for 429s
