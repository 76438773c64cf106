"""gateway/api/server_protocol.py and server_cycle.py: what a request writes within one turn of the loop
leaves in one write (a whole answer; a stream's events at hand), nothing is held past the loop's next
turn (a stream's later events, a body sent late), and every answer is framed as uvicorn frames it:
streams, HEAD, bodiless statuses, 100-continue, keep-alive, Connection: close, an app that fails before
or after its head. And what uvicorn's protocol guaranteed besides: pipelined requests answered in
order, chunked request bodies, reading paused while a large body waits, sends held while the transport
is full, a malformed request a 400 (idle timeouts, hang-ups and shutdown: test_server_protocol_lifecycle)."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
import uvicorn.server

from gateway.api.server_protocol import GatewayHttpProtocol

pytestmark = pytest.mark.skipif(GatewayHttpProtocol is None, reason="httptools is not installed")


async def app(scope, receive, send):
    path = scope["path"]
    if scope["type"] != "http":
        return
    message = await receive()
    body = message.get("body", b"")
    if path == "/whole":
        answer = b'{"echo": %d}' % len(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(answer)), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})
    elif path == "/parts":                      # a Content-Length answer sent in two parts
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for k in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % k, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow-stream":                # events a while apart, the last with the end
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for k in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % k, "more_body": True})
            if k < 2:
                await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/late":                       # the body a while after the head
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"late!"})
    elif path == "/late-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"late!"})
    elif path == "/parts-apart":                # a Content-Length body in two parts a while apart
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"def"})
    elif path == "/echo-all":                   # reads the whole body, however it arrives
        while message.get("more_body", False):
            message = await receive()
            body += message.get("body", b"")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/hang-up":                    # the next receive after the body: the hang-up
        heard.append((await receive())["type"])
    elif path == "/hang-up-twice":              # two receives waiting at once, one of them given up
        given_up = asyncio.ensure_future(receive())
        both = asyncio.gather(receive(), receive())
        await asyncio.sleep(0)
        given_up.cancel()
        heard.extend(m["type"] for m in await both)
    elif path == "/client":                     # who the app thinks the client is
        answer = f"{scope['client'][0]} {scope['scheme']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fails-before":
        raise RuntimeError("a bug before the answer")
    elif path == "/fails-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        raise RuntimeError("a bug after the head")


heard: list[str] = []


@pytest.fixture(scope="module")
def server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=GatewayHttpProtocol, log_level="critical", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    srv.should_exit = True
    thread.join(10)
    sock.close()


def exchange(port: int, request: bytes, until: bytes | None = None, timeout: float = 5.0) -> list[bytes]:
    """The segments received for `request` (each recv), until the peer closes or `until` ends the data."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        got: list[bytes] = []
        while True:
            try:
                part = s.recv(65536)
            except TimeoutError:
                break
            if not part:
                break
            got.append(part)
            if until is not None and b"".join(got).endswith(until):
                break
        return got


def post(path: str, body: bytes = b"{}", extra: bytes = b"", method: bytes = b"POST") -> bytes:
    return (method + b" " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


class Transport:
    """What the protocol writes, write by write."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False
        self.reading: list[bool] = []           # pause_reading (False) and resume_reading (True), in order

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading.append(False)

    def resume_reading(self) -> None:
        self.reading.append(True)


def connected(transport: Transport, **config) -> GatewayHttpProtocol:
    cfg = uvicorn.Config(app, log_level="critical", lifespan="off", **config)
    cfg.load()
    protocol = GatewayHttpProtocol(config=cfg, server_state=uvicorn.server.ServerState(), app_state={})
    protocol.connection_made(transport)
    return protocol


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def writes_for(*requests: bytes) -> list[bytes]:
    """The protocol's writes for `requests` sent one after another on one connection."""
    async def main():
        transport = Transport()
        protocol = connected(transport)
        for request in requests:
            protocol.data_received(request)
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)
        protocol.connection_lost(None)
        return transport.writes
    return asyncio.run(main())


def test_a_whole_answer_is_one_write_per_request_on_a_kept_alive_connection():
    writes = writes_for(*(post("/whole", b"x" * k) for k in range(3)))
    assert len(writes) == 3
    for k, data in enumerate(writes):
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: %d" % len(body) in head.lower()
        assert body == b'{"echo": %d}' % k


def test_a_stream_whose_events_are_at_hand_is_one_write():
    writes = writes_for(post("/stream"))
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"".join(b"9\r\ndata: %d\n\n\r\n" % k for k in range(3)) + b"0\r\n\r\n"


def test_a_stream_whose_events_come_apart_writes_each_as_it_comes():
    writes = writes_for(post("/slow-stream"))
    head, _, first = writes[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower() and first == b"9\r\ndata: 0\n\n\r\n"
    assert writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"]


def test_a_content_length_head_waits_for_its_late_body_and_a_chunked_one_does_not():
    assert writes_for(post("/late"))[0].endswith(b"\r\n\r\nlate!")
    writes = writes_for(post("/late-stream"))
    assert writes[0].endswith(b"\r\n\r\n") and writes[1:] == [b"5\r\nlate!\r\n0\r\n\r\n"]


def test_a_content_length_body_in_parts_apart_leaves_each_part_as_it_comes():
    writes = writes_for(post("/parts-apart"))
    assert writes[0].endswith(b"\r\n\r\nabc") and writes[1:] == [b"def"]


def test_a_head_answer_is_written_though_no_body_follows():
    writes = writes_for(post("/whole", b"", method=b"HEAD"), post("/whole", b"", method=b"HEAD",
                                                                  extra=b"Connection: close\r\n"))
    assert len(writes) == 2 and all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"\r\n\r\n") for w in writes)


def test_end_to_end_a_whole_answer_on_a_kept_alive_connection(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        for k in range(3):
            s.sendall(post("/whole", b"x" * k))
            data = b""
            while not data.endswith(b'{"echo": %d}' % k):
                data += s.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 OK")


def test_a_content_length_answer_in_parts_is_complete(server):
    data = b"".join(exchange(server, post("/parts"), until=b"abcdef"))
    assert data.endswith(b"\r\n\r\nabcdef") and b"content-length: 6" in data.lower()


def test_a_stream_is_chunked_and_its_head_is_not_held(server):
    data = b"".join(exchange(server, post("/stream"), until=b"0\r\n\r\n"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"".join(b"9\r\ndata: %d\n\n\r\n" % k for k in range(3)) + b"0\r\n\r\n"


def test_head_and_bodiless_answers_are_sent_at_once(server):
    head = b"".join(exchange(server, post("/whole", b"", method=b"HEAD"), until=b"\r\n\r\n"))
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    empty = b"".join(exchange(server, post("/empty"), until=b"\r\n\r\n"))
    assert empty.startswith(b"HTTP/1.1 204")


def test_expect_100_continue_then_the_whole_answer(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"POST /whole HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"abcd")
        data = b""
        while not data.endswith(b'{"echo": 4}'):
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK")


def test_connection_close_is_honoured_after_the_answer(server):
    parts = exchange(server, post("/whole", extra=b"Connection: close\r\n"))
    data = b"".join(parts)                      # read to the server's close
    assert data.endswith(b'{"echo": 2}') and b"connection: close" in data.lower()


def test_an_app_failing_before_its_answer_gives_a_500_and_after_its_head_a_closed_connection(server):
    data = b"".join(exchange(server, post("/fails-before")))
    assert data.startswith(b"HTTP/1.1 500") and data.endswith(b"Internal Server Error")
    data = b"".join(exchange(server, post("/fails-after")))          # read to the close, as uvicorn does it
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\n")


def answers(data: bytes) -> list[bytes]:
    """The bodies of Content-Length answers written back to back."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append(rest[:length])
        data = rest[length:]
    return out


def test_pipelined_requests_are_answered_in_order(server):
    requests = post("/late", b"") + post("/whole", b"xy") + post("/echo-all", b"abc")
    data = b"".join(exchange(server, requests, until=b"abc"))
    assert answers(data) == [b"late!", b'{"echo": 2}', b"abc"]


def test_a_chunked_request_body_in_segments_is_received_whole(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(b"POST /echo-all HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        time.sleep(0.05)
        s.sendall(b"2\r\nde\r\n0\r\n\r\n")
        data = b""
        while not data.endswith(b"abcde"):
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK") and b"content-length: 5" in data.lower()


def test_a_malformed_request_is_a_400_with_an_openai_error_and_a_close(server):
    data = b"".join(exchange(server, b"NOT HTTP AT ALL\r\n\r\n"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_reading_pauses_while_a_large_body_waits_and_resumes_when_it_is_received():
    async def main():
        transport = Transport()
        protocol = connected(transport)
        head = b"POST /echo-all HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n"
        protocol.parser.feed_data(head + b"a" * 40000)   # fed within one turn: the app has not run yet
        protocol.parser.feed_data(b"b" * 40000)
        assert transport.reading == [False]
        await turns()
        assert transport.reading[-1] is True             # the app took the body: reading goes on
        protocol.data_received(b"c" * 120000)
        await turns()
        assert answers(b"".join(transport.writes)) == [b"a" * 40000 + b"b" * 40000 + b"c" * 120000]
    asyncio.run(main())


def test_a_send_waits_while_the_transport_is_full():
    async def main():
        transport = Transport()
        protocol = connected(transport)
        protocol.pause_writing()
        protocol.data_received(post("/whole", b"x"))
        await turns()
        assert transport.writes == []
        protocol.resume_writing()
        await turns()
        assert answers(b"".join(transport.writes)) == [b'{"echo": 1}']
    asyncio.run(main())


def test_forwarded_headers_from_a_trusted_proxy_are_applied_as_uvicorn_applies_them(server):
    plain = b"".join(exchange(server, post("/client"), until=b"http"))
    assert plain.endswith(b"\r\n\r\n127.0.0.1 http")
    forwarded = post("/client", extra=b"X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n")
    assert b"".join(exchange(server, forwarded, until=b"https")).endswith(b"\r\n\r\n10.1.2.3 https")
