"""Fixtures for the upstream tests: fake upstreams on loopback (loadtest/fake_upstream.py), radixgate
serving them through the Router, and the official client with every response checked against
OpenAI's OpenAPI description. At teardown nothing may be left in flight: no request outstanding in
the router, no response open at a fake upstream, no pooled upstream connection still busy."""
from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from gateway.spec_api import upstream_router
from gateway.spec_api.router import Router
from gateway.spec_api.upstream_config import PoolConfig, RouterConfig, UpstreamConfig
from loadtest.fake_upstream import FakeUpstream
from loadtest.servers import serve
from tests.api.test_openai_client import Recorder

MODEL = "gpt-test"
FAST = RouterConfig(breaker_failures=3, breaker_cooldown=0.5, max_retry_wait=1.0, backoff=0.01)


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def busy_connections(router: Router) -> int:
    return sum(m.backend.origin.in_use for m in router.members)


def settled(router: Router, fakes: list[FakeUpstream], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = (router.outstanding, sum(f.open_responses for f in fakes), busy_connections(router))
        if state == (0, 0, 0):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left in flight (router outstanding, open upstream responses, busy "
                                 f"connections): {state}")
        time.sleep(0.02)


class Stack:
    """Fake upstreams and radixgates in front of them, all stopped (and checked for leaks) at teardown."""

    def __init__(self, stack: contextlib.ExitStack, recorder: Recorder):
        self.stack, self.recorder = stack, recorder
        self.fakes: list[FakeUpstream] = []
        self.routers: list[Router] = []

    def upstream(self, fake: FakeUpstream | None = None) -> tuple[FakeUpstream, str]:
        fake = fake or FakeUpstream()
        self.fakes.append(fake)
        return fake, self.stack.enter_context(serve(fake.app)) + "/v1"

    def gateway(self, urls: list[str], router: RouterConfig = FAST, **upstream) -> tuple[str, Router]:
        """radixgate over `urls`, each serving MODEL as the fake's model; returns (base URL, router)."""
        from gateway.api.app import create_app
        settings = {"models": {MODEL: "fake-model"}, "timeout": 2.0, **upstream}
        pool = PoolConfig([UpstreamConfig(f"up{i}", url, **settings) for i, url in enumerate(urls)], router)
        r = upstream_router(pool)
        self.routers.append(r)
        return self.stack.enter_context(serve(create_app(r))), r

    def client(self, base: str, strict: bool = True, timeout: float = 10.0) -> openai.OpenAI:
        http = httpx.Client(event_hooks={"response": [self.recorder]}, timeout=timeout)
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0, http_client=http,
                          _strict_response_validation=strict)
        self.stack.callback(c.close)
        return c

    def check_settled(self) -> None:
        for r in self.routers:
            settled(r, self.fakes)


@pytest.fixture
def proxy() -> Iterator[Stack]:
    recorder = Recorder()
    with contextlib.ExitStack() as stack:
        s = Stack(stack, recorder)
        yield s
        s.check_settled()
    assert not recorder.failures, "\n\n".join(map(str, recorder.failures))


@dataclass
class One:
    fake: FakeUpstream
    client: openai.OpenAI
    router: Router
    base: str


@pytest.fixture
def one(proxy: Stack) -> One:
    """One fake upstream behind radixgate."""
    fake, url = proxy.upstream()
    base, router = proxy.gateway([url])
    return One(fake, proxy.client(base), router, base)


def chat(client: openai.OpenAI, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], **kw)


def stream_events(base: str, body: dict, timeout: float = 10.0) -> list:
    """The data events of a streamed chat request, parsed; the last may be an error."""
    import json
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL, "stream": True, **body}, timeout=timeout)
    assert r.status_code == 200, r.text
    return [e if e == "[DONE]" else json.loads(e)
            for e in (line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: "))]

