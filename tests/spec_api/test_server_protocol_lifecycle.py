"""gateway/api/server_protocol.py over a connection's life: idle connections closed after the keep-alive
timeout, a hang-up heard as `http.disconnect` by every waiting receive, a graceful shutdown; and the
gateway's own app on this protocol over a socket (413 and 400 as OpenAI errors, pipelined chats).
The echo app and the in-memory transport are test_server_protocol's."""
from __future__ import annotations

import asyncio
import json
import socket

from tests.spec_api.test_server_protocol import Transport, answers, connected, exchange, heard, post, turns


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_a_busy_one_is_not():
    async def main():
        transport = Transport()
        protocol = connected(transport, timeout_keep_alive=0.1)
        protocol.data_received(post("/late", b""))       # answered after 0.01 s, then idle
        await asyncio.sleep(0.08)
        assert not transport.closed
        protocol.data_received(post("/whole", b""))      # used again: the idle spell starts over
        await asyncio.sleep(0.08)
        assert not transport.closed
        await asyncio.sleep(0.1)
        assert transport.closed
    asyncio.run(main())


def test_a_hang_up_is_heard_by_a_waiting_receive():
    async def main():
        transport = Transport()
        protocol = connected(transport)
        heard.clear()
        protocol.data_received(post("/hang-up"))
        await turns()
        assert heard == []
        protocol.connection_lost(None)
        await turns()
        assert heard == ["http.disconnect"]
    asyncio.run(main())


def test_receives_waiting_at_once_all_hear_the_hang_up():
    async def main():
        transport = Transport()
        protocol = connected(transport)
        heard.clear()
        protocol.data_received(post("/hang-up-twice"))
        await turns()
        protocol.connection_lost(None)
        await turns()
        assert heard == ["http.disconnect", "http.disconnect"]
    asyncio.run(main())


def test_shutdown_closes_an_idle_connection_at_once_and_a_busy_one_after_its_answer():
    async def main():
        idle, busy = Transport(), Transport()
        connected(idle).shutdown()
        assert idle.closed
        protocol = connected(busy)
        protocol.data_received(post("/late", b""))
        await turns()
        protocol.shutdown()
        assert not busy.closed
        await asyncio.sleep(0.05)
        assert busy.closed and answers(b"".join(busy.writes)) == [b"late!"]
    asyncio.run(main())


# ----- the gateway's own app on this protocol, over a socket ------------------------------------------

def gateway_exchange(base: str, request: bytes, until: bytes) -> tuple[bytes, dict]:
    host, port = base.removeprefix("http://").split(":")
    data = b"".join(exchange(int(port), request, until=until))
    head, _, body = data.partition(b"\r\n\r\n")
    return head, json.loads(body)


def chat_request(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def test_gateway_bodies_over_the_limit_and_bad_json_are_openai_errors(live_server, instant_backend):
    from gateway.config import ServeConfig
    base = live_server(instant_backend, ServeConfig(max_body_bytes=1000))
    head, error = gateway_exchange(base, chat_request(b"{" + b" " * 2000 + b"}"), b"}}")
    assert head.startswith(b"HTTP/1.1 413") and error["error"]["code"] == "request_too_large"
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"100\r\n" + b" " * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n")
    head, error = gateway_exchange(base, chunked, b"}}")
    assert head.startswith(b"HTTP/1.1 413") and error["error"]["code"] == "request_too_large"
    head, error = gateway_exchange(base, chat_request(b"{not json"), b"}}")
    assert head.startswith(b"HTTP/1.1 400") and error["error"]["code"] == "invalid_json"


def test_gateway_pipelined_chat_requests_are_answered_in_order(live_server, instant_backend):
    base = live_server(instant_backend)
    model = instant_backend.models()[0].id
    bodies = [json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": k}).encode()
              for k in (1, 2, 3)]
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"".join(chat_request(b) for b in bodies))
        data = b""
        while data.count(b"HTTP/1.1 200") < 3 or len(answers(data)[-1]) < int(data.rsplit(b"content-length: ", 1)[1]
                                                                             .split(b"\r\n")[0]):
            data += s.recv(65536)
    assert [json.loads(a)["usage"]["completion_tokens"] for a in answers(data)] == [1, 2, 3]
