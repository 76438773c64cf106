"""What a client sees when the backend fails: 503 when it is down, 429 with Retry-After when it is
overloaded, and an error event when it fails after the stream has started; the server serves on."""
from __future__ import annotations

import json

import httpx

from gateway.protocol import BackendUnavailable, Delta, Overloaded
from loadtest.servers import INSTANT_MODEL, InstantBackend
from tests.api.openapi import check_response

CHAT = {"model": INSTANT_MODEL, "messages": [{"role": "user", "content": "hi"}]}


class FailingBackend(InstantBackend):
    def __init__(self, failure: Exception | None, after_first: bool = False):
        super().__init__()
        self.failure, self.after_first = failure, after_first

    async def generate(self, req):
        if self.failure is not None and not self.after_first:
            raise self.failure
        yield Delta(0, "partial", [1])
        if self.failure is not None:
            raise self.failure


def test_backend_down_is_503_and_overloaded_is_429(live_server):
    for failure, status, header in ((BackendUnavailable("engine stopped"), 503, None),
                                    (Overloaded("queue full", retry_after=3), 429, "3")):
        url = live_server(FailingBackend(failure))
        for stream in (False, True):
            r = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": stream})
            check_response(r)
            assert r.status_code == status and r.headers.get("retry-after") == header
        assert httpx.get(f"{url}/health").status_code == 200


def test_failure_after_the_stream_started_is_an_error_event(live_server):
    url = live_server(FailingBackend(RuntimeError("device lost"), after_first=True))
    r = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    events = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["type"] == "server_error" and "device lost" in events[-1]
    assert "[DONE]" not in events
    plain = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    check_response(plain)
    assert plain.status_code == 500 and plain.json()["error"]["code"] == "backend_error"
