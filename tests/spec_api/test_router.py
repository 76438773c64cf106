"""The Router over plain Backends (no network): least outstanding requests, prefix affinity, models,
fallback between engine-like replicas, the circuit breaker, health, and cleanup on cancellation."""
from __future__ import annotations

import asyncio
import collections
from contextlib import aclosing

import pytest

from gateway.protocol import (BackendUnavailable, Delta, GenerateRequest, InvalidRequest, ModelCard, Overloaded,
                              UpstreamError, Usage)
from gateway.spec_api.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.spec_api.router import Member, Router
from gateway.spec_api.upstream_config import RouterConfig
from loadtest.servers import InstantBackend

CFG = RouterConfig(breaker_failures=2, breaker_cooldown=0.2, backoff=0.0, max_retry_wait=0.5)


class Stub(InstantBackend):
    """An InstantBackend that can pause, fail the next requests, and remembers which requests it took."""

    def __init__(self, name: str = "m", pause: float = 0.0):
        super().__init__(name)
        self.pause, self.failures, self.took = pause, collections.deque(), []
        self.closed = 0

    async def generate(self, req):
        self.took.append(req.request_id)
        if self.failures:
            raise self.failures.popleft()
        try:
            if self.pause:
                await asyncio.sleep(self.pause)
            async for d in super().generate(req):
                yield d
        finally:
            self.closed += 1


def ask(i: int = 0, system: str | None = None, model: str | None = None) -> GenerateRequest:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": f"q{i}"}]
    return GenerateRequest(f"r{i}", messages=messages, model=model)


async def text(router: Router, req: GenerateRequest) -> str:
    return "".join([d.text async for d in router.generate(req)])


def router_of(*stubs: Stub, cfg: RouterConfig = CFG, **member) -> Router:
    return Router([Member(f"b{i}", s, **member) for i, s in enumerate(stubs)], cfg)


def test_least_outstanding_spreads_concurrent_requests():
    stubs = [Stub(pause=0.2) for _ in range(3)]
    router = router_of(*stubs, cfg=RouterConfig(affinity=False))

    async def main():
        await asyncio.gather(*(text(router, ask(i)) for i in range(30)))
    asyncio.run(main())
    assert [len(s.took) for s in stubs] == [10, 10, 10] and router.outstanding == 0


def test_weights_share_the_load():
    heavy, light = Stub(pause=0.2), Stub(pause=0.2)
    router = Router([Member("heavy", heavy, weight=3), Member("light", light)], RouterConfig(affinity=False))

    async def main():
        await asyncio.gather(*(text(router, ask(i)) for i in range(40)))
    asyncio.run(main())
    assert len(heavy.took) == 30 and len(light.took) == 10


def test_prefix_affinity_keeps_a_prefix_on_one_backend_until_it_is_far_busier():
    stubs = [Stub(pause=0.01) for _ in range(4)]
    router = router_of(*stubs)

    async def main():
        for i in range(8):                                         # one conversation prefix, sequential
            await text(router, ask(0, system="You are a pirate."))
        homes = {s.took[-1] for s in stubs if s.took}
        assert len(homes) == 1
        for s in stubs:
            s.took.clear()
        await asyncio.gather(*(text(router, ask(i, system=f"persona {i}")) for i in range(40)))
        assert all(s.took for s in stubs)                          # many prefixes spread
        for s in stubs:
            s.took.clear()
        await asyncio.gather(*(text(router, ask(0, system="You are a pirate.")) for _ in range(40)))
        # all 40 share one prefix: its home takes them until it has affinity_slack more in flight
        busiest = max(len(s.took) for s in stubs)
        assert CFG.affinity_slack < busiest < 40
    asyncio.run(main())


def test_models_route_to_the_backends_serving_them():
    a, b = Stub("alpha"), Stub("beta")
    router = router_of(a, b)
    assert [c.id for c in router.models()] == ["alpha", "beta"]
    asyncio.run(text(router, ask(1, model="beta")))
    asyncio.run(text(router, ask(2, model="alpha")))
    assert a.took == ["r2"] and b.took == ["r1"]


@pytest.mark.parametrize("failure", [BackendUnavailable("engine stopped"), Overloaded("queue full", 0.01),
                                     UpstreamError(502, "bad gateway")])
def test_replica_failures_fall_back_to_another_replica(failure):
    a, b = Stub(), Stub()
    router = router_of(a, b, cfg=RouterConfig(affinity=False))
    a.failures.append(failure)
    b.failures.append(failure)
    assert asyncio.run(text(router, ask())) == "Hello, world"
    assert len(a.took) + len(b.took) == 3


@pytest.mark.parametrize("failure", [InvalidRequest("context too long", "messages"),
                                     UpstreamError(400, "bad", "invalid_request_error")])
def test_client_errors_are_never_retried(failure):
    a, b = Stub(), Stub()
    router = router_of(a, b)
    a.failures.append(failure)
    b.failures.append(failure)
    with pytest.raises(type(failure)):
        asyncio.run(text(router, ask()))
    assert len(a.took) + len(b.took) == 1
    assert all(m.breaker.state == CLOSED and m.breaker.failures == 0 for m in router.members)


def test_breaker_opens_then_probes_once_after_cooldown():
    now = [0.0]
    b = CircuitBreaker(failures_to_open=2, cooldown=5, clock=lambda: now[0])
    b.failure()
    assert b.usable() and b.state == CLOSED
    b.failure()
    assert b.state == OPEN and not b.usable()
    now[0] = 5.0
    assert b.usable() and b.view()["state"] == HALF_OPEN
    b.admit()
    assert b.state == HALF_OPEN and not b.usable()                # one probe at a time
    b.failure()
    assert b.state == OPEN and not b.usable()                     # a failed probe opens it again
    now[0] = 10.0
    b.admit()
    b.success()
    assert b.state == CLOSED and b.usable() and b.failures == 0


def test_open_circuits_are_skipped_and_health_shows_them():
    a, b = Stub(), Stub()
    router = router_of(a, b, max_retries=0)
    a.failures.extend([UpstreamError(503, "down")] * 2)
    b.failures.extend([UpstreamError(503, "down")] * 2)

    async def main():
        for _ in range(2):
            with pytest.raises(UpstreamError) as err:
                await text(router, ask())
            assert err.value.status == 503
        health = await router.health()
        assert health["status"] == "unavailable"
        assert [v["state"] for v in health["backends"]] == [OPEN, OPEN]
        with pytest.raises(UpstreamError) as err:                  # no attempt: every circuit is open
            await text(router, ask())
        assert err.value.status == 503 and err.value.code == "upstream_unavailable"
        await asyncio.sleep(CFG.breaker_cooldown)
        assert (await router.health())["status"] == "ok"
        assert await text(router, ask()) == "Hello, world"        # the half-open probe succeeds
        assert {m.breaker.state for m in router.members} >= {CLOSED}
    asyncio.run(main())
    assert len(a.took) + len(b.took) == 5


def test_a_failure_after_the_first_delta_is_not_retried():
    class Breaks(Stub):
        async def generate(self, req):
            self.took.append(req.request_id)
            yield Delta(0, "part")
            raise UpstreamError(502, "gone", code="upstream_disconnected")
    a, b = Breaks(), Breaks()
    router = router_of(a, b)

    async def main():
        got = []
        with pytest.raises(UpstreamError):
            async for d in router.generate(ask()):
                got.append(d.text)
        assert got == ["part"]
    asyncio.run(main())
    assert len(a.took) + len(b.took) == 1 and router.outstanding == 0


def test_cancelled_requests_free_their_backend():
    stubs = [Stub(pause=5.0), Stub(pause=5.0)]
    router = router_of(*stubs)

    async def main():
        tasks = [asyncio.create_task(text(router, ask(i))) for i in range(6)]
        await asyncio.sleep(0.05)
        assert router.outstanding == 6
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert router.outstanding == 0 and sum(s.closed for s in stubs) == 6
        async with aclosing(router.generate(ask(9))) as it:       # a consumer that stops early
            stubs[0].pause = stubs[1].pause = 0
            await it.__anext__()
        assert router.outstanding == 0
        assert len(asyncio.all_tasks()) == 1
    asyncio.run(main())
    assert all(not m.breaker.probing for m in router.members)


def test_a_short_retry_after_is_waited_out_and_a_long_one_goes_back_to_the_client():
    a = Stub()
    router = router_of(a, max_retries=1)
    a.failures.append(UpstreamError(429, "slow down", "rate_limit_exceeded", retry_after=0.1))

    async def main():
        loop = asyncio.get_running_loop()
        t = loop.time()
        assert await text(router, ask()) == "Hello, world"
        assert loop.time() - t >= 0.1
        a.failures.append(UpstreamError(429, "slow down", "rate_limit_exceeded", retry_after=30))
        with pytest.raises(UpstreamError) as err:
            await text(router, ask())
        assert err.value.status == 429 and err.value.retry_after >= 29
    asyncio.run(main())
    assert router.members[0].breaker.state == CLOSED                # rate limits are no strikes


def test_usage_passes_through_the_router():
    router = router_of(Stub())

    async def main():
        return [d async for d in router.generate(ask())]
    deltas = asyncio.run(main())
    assert isinstance(deltas[-1].usage, Usage) and deltas[-1].usage.completion_tokens == 3
    assert [c.id for c in router.models()] == ["m"] and isinstance(router.models()[0], ModelCard)
