"""A Backend over several Backends (upstream APIs, or local engine replicas): where each request goes,
and what happens when a backend fails.

Choice: among the backends serving the model whose circuit lets requests through and that are not
waiting out a 429, the least loaded (requests in flight / weight), except that a request whose prompt
prefix hashes to a backend (rendezvous hashing over the prompt's start) goes there while that backend
is not far busier than the least loaded one, so a shared prefix stays where it is cached.

Failure: before the first Delta has gone on, a retryable failure (connect error, timeout, 408/409/429,
5xx; an engine replica's BackendUnavailable / Overloaded) moves the request to another backend, or,
once all were tried, to the same ones again up to each one's max_retries after a doubling pause or the
Retry-After it asked for (up to max_retry_wait). After the first Delta nothing is retried: the failure
ends the stream as one error. Client errors (a 400 upstream) go back as they are, never retried.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from hashlib import blake2b

from gateway.protocol import (Backend, BackendUnavailable, Delta, GenerateRequest, InvalidRequest, ModelCard,
                              Overloaded, UpstreamError)
from gateway.spec_api.breaker import CLOSED, CircuitBreaker
from gateway.spec_api.upstream_config import RouterConfig

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Member:
    name: str
    backend: Backend
    weight: float = 1.0
    max_retries: int = 1
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    models: frozenset[str] = frozenset()
    outstanding: int = 0                  # requests in flight there
    blocked_until: float = 0.0            # waiting out its last 429's Retry-After


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, UpstreamError):
        return exc.retryable
    return isinstance(exc, (BackendUnavailable, Overloaded))


def wait_asked(exc: BaseException) -> float | None:
    """The Retry-After of a 'too many requests' failure, else None."""
    if isinstance(exc, Overloaded):
        return exc.retry_after
    if isinstance(exc, UpstreamError) and exc.status == 429:
        return exc.retry_after if exc.retry_after is not None else 1.0
    return None


class Router:
    def __init__(self, members: list[Member], cfg: RouterConfig | None = None):
        if not members:
            raise ValueError("a router needs at least one backend")
        self.cfg = cfg = cfg or RouterConfig()
        self.members = members
        for m in members:
            m.breaker.failures_to_open, m.breaker.cooldown = cfg.breaker_failures, cfg.breaker_cooldown
            m.models = frozenset(c.id for c in m.backend.models())
        cards = {c.id: c for m in members for c in m.backend.models()}
        self.cards = [cards[k] for k in sorted(cards)]
        self.turn = 0

    def models(self) -> list[ModelCard]:
        return self.cards

    @property
    def outstanding(self) -> int:
        return sum(m.outstanding for m in self.members)

    # ----- choosing -------------------------------------------------------------------------------

    def prefix_key(self, req: GenerateRequest) -> bytes:
        """A digest of the prompt's start: system messages and the first other message (a conversation's
        turns share them), or the first characters / token ids of a text prompt. Stable across
        processes, so several gateways in front of the same replicas agree on where a prefix lives."""
        n = self.cfg.affinity_chars
        if req.messages is not None:
            parts = []
            for m in req.messages:
                content = m.get("content")
                parts.append(content if isinstance(content, str) else repr(content))
                if m.get("role") not in ("system", "developer"):
                    break
            start = "\x00".join(parts)[:n]
        elif req.prompt is not None:
            start = req.prompt[:n]
        else:
            start = repr(req.prompt_token_ids[:n // 4])
        return blake2b(f"{req.model}\x00{start}".encode(), digest_size=8).digest()

    def pick(self, req: GenerateRequest, tried: dict[str, int], now: float) -> Member | None:
        fresh, again = [], []                           # serving it now: not tried yet, tried but retryable
        for m in self.members:
            if (req.model is None or req.model in m.models) and m.blocked_until <= now \
                    and (m.breaker.state == CLOSED or m.breaker.usable()):
                if m.name not in tried:
                    fresh.append(m)
                elif tried[m.name] <= m.max_retries:
                    again.append(m)
        pool = fresh or again
        if len(pool) <= 1:
            return pool[0] if pool else None
        self.turn += 1                                  # ties rotate, so an idle pool shares the load
        start = self.turn % len(pool)
        least = min(pool[start:] + pool[:start], key=lambda m: m.outstanding / m.weight)
        if not self.cfg.affinity:
            return least
        key = self.prefix_key(req)
        home = max(pool, key=lambda m: blake2b(key + m.name.encode(), digest_size=8).digest())   # rendezvous
        if home.outstanding <= max(2 * least.outstanding, least.outstanding + self.cfg.affinity_slack):
            return home
        return least

    def next_unblocked(self, req: GenerateRequest, tried: dict[str, int], now: float) -> float | None:
        """Seconds until a backend waiting out a 429 can be retried, when that is soon enough."""
        waits = [m.blocked_until - now for m in self.members
                 if (req.model is None or req.model in m.models) and m.blocked_until > now
                 and m.breaker.usable() and tried.get(m.name, 0) <= m.max_retries]
        return min(waits) if waits and min(waits) <= self.cfg.max_retry_wait else None

    # ----- generating -----------------------------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]:
        tried: dict[str, int] = {}
        last: BaseException | None = None
        while True:
            now = time.monotonic()
            member = self.pick(req, tried, now)
            if member is None:
                wait = self.next_unblocked(req, tried, now)
                if wait is None:
                    raise self.exhausted(req, last)
                await asyncio.sleep(wait)
                continue
            again = tried.get(member.name, 0)
            tried[member.name] = again + 1
            if again:
                await asyncio.sleep(min(self.cfg.backoff * 2 ** (again - 1), self.cfg.max_retry_wait))
                if not member.breaker.usable():         # opened, or its probe taken, while we waited
                    continue
            member.outstanding += 1
            if member.breaker.state != CLOSED:             # (the breaker is called only to change it)
                member.breaker.admit()
            started, judged = False, False
            deltas, ended = member.backend.generate(req), False
            try:
                try:
                    async for d in deltas:
                        started = True
                        yield d
                    ended = True
                finally:
                    if not ended:                       # left early: the backend's iterator is closed now
                        await deltas.aclose()
                breaker = member.breaker
                if breaker.state != CLOSED or breaker.failures or breaker.probing:
                    breaker.success()
                judged = True
                return
            except Exception as exc:
                judged = self.judge(member, exc)
                if started or not retryable(exc):
                    raise
                log.warning("backend %s failed (attempt %d): %s", member.name, again + 1, exc)
                last = exc
            finally:
                member.outstanding -= 1
                if not judged:
                    member.breaker.release()

    def judge(self, member: Member, exc: Exception) -> bool:
        """Record a failure against the backend; whether the breaker got a verdict."""
        wait = wait_asked(exc)
        if wait is not None:                            # alive but busy: wait it out, no strike
            member.blocked_until = time.monotonic() + wait
            return False
        if isinstance(exc, InvalidRequest) or isinstance(exc, UpstreamError) and exc.status < 500 \
                and not exc.retryable:
            member.breaker.success()                    # the client's error: the backend answered
            return True
        member.breaker.failure()
        return True

    def exhausted(self, req: GenerateRequest, last: BaseException | None) -> Exception:
        if isinstance(last, Overloaded):
            return last
        if isinstance(last, UpstreamError):
            if last.status == 429 and last.retry_after is not None:
                soonest = min(m.blocked_until for m in self.members) - time.monotonic()
                last.retry_after = max(last.retry_after if soonest <= 0 else soonest, 1.0)
            return last
        if last is not None:
            return last
        serving = [m for m in self.members if req.model is None or req.model in m.models]
        if not serving:
            return InvalidRequest(f"No backend serves the model '{req.model}'.", "model")
        return UpstreamError(503, f"Every backend for '{req.model or self.cards[0].id}' is unavailable "
                                  f"(circuit open after repeated failures); try again shortly.",
                             "service_unavailable", "upstream_unavailable",
                             retry_after=self.cfg.breaker_cooldown, retryable=False)

    # ----- the rest of the Backend protocol ------------------------------------------------------

    async def health(self) -> dict:
        async def one(m: Member) -> dict:
            try:
                inner = await asyncio.wait_for(m.backend.health(), 2.0)
            except Exception as exc:                    # a health probe that fails says so, never raises
                inner = {"status": "error", "error": str(exc) or type(exc).__name__}
            view = m.breaker.view()
            usable = inner.get("status") == "ok" and m.breaker.usable()
            return {"name": m.name, **view, "usable": usable, "outstanding": m.outstanding,
                    "models": sorted(m.models), "backend": inner}
        views = await asyncio.gather(*(one(m) for m in self.members))
        return {"status": "ok" if any(v["usable"] for v in views) else "unavailable", "backends": views}

    async def abort(self, request_id: str) -> None:
        await asyncio.gather(*(m.backend.abort(request_id) for m in self.members))

    async def close(self) -> None:
        for m in self.members:
            close = getattr(m.backend, "close", None)
            if close is not None:
                await close()
