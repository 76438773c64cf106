"""One HTTP/1.1 request's ASGI `receive` and `send` on radixgate's server protocol (server_protocol.py).

`receive` hands over the body as it arrived (a request that came whole is one message, without a wait),
sends `100 Continue` first when the client asked for it, and once the body is consumed waits for the
answer's end or the client's hang-up (then `http.disconnect`, as a stream's listener expects).

`send` frames the answer as uvicorn does (the server's default headers, Content-Length or chunked,
HEAD and bodiless statuses, `connection: close`), and gathers what a request writes within one turn
of the event loop into one write: the write that ends the answer sends everything, else the loop's
next turn does, so a stream's events still leave as they come; only a Content-Length head waits for
its body's first part. A small JSON answer is then one write and one loopback segment instead of two.
"""
from __future__ import annotations

import asyncio
import http
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.api.server_protocol import GatewayHttpProtocol

HEADER_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# Header lines that passed the checks, so a repeated one (most of every answer's head) skips the regular
# expressions; bounded, as values vary (content-length, date).
CHECKED: set[tuple[bytes, bytes]] = set()
CHECKED_MAX = 4096
HIGH_WATER = 65536                      # a request body buffered past this pauses reading until received
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINE = {status: status_line(status) for status in range(100, 600)}


class Cycle:
    """One request and its answer; `protocol` is the connection it came on."""
    __slots__ = ("body", "chunked", "complete", "disconnected", "expect_continue", "forwarded", "head", "keep_alive",
                 "length", "more_body", "out", "protocol", "scheduled", "scope", "started", "waiter")

    def __init__(self, protocol: GatewayHttpProtocol, scope: dict, keep_alive: bool, expect_continue: bool):
        self.protocol, self.scope = protocol, scope
        self.keep_alive, self.expect_continue = keep_alive, expect_continue
        self.body: list[bytes] = []         # arrived and not yet received
        self.more_body: bool | None = True  # more of the body to come; None: all of it was received
        self.waiter: asyncio.Future | None = None
        self.started = self.complete = self.disconnected = False
        self.forwarded = False              # has X-Forwarded-* headers (for uvicorn's proxy-headers middleware)
        self.chunked = False
        self.head = False                   # the head is gathered and no body part has followed yet
        self.length = 0                     # a Content-Length answer's bytes still to send
        self.out: list[bytes] = []          # gathered writes
        self.scheduled = False              # a flush at the loop's next turn is due

    # ----- the protocol's side -------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def lost(self) -> None:
        """The connection is gone: nothing more is written; a waiting receive hears the hang-up."""
        if not self.complete:
            self.disconnected = True
        self.out.clear()
        self.wake()

    # ----- ASGI ----------------------------------------------------------------------------------

    async def receive(self) -> dict:
        protocol = self.protocol
        if self.expect_continue:
            self.expect_continue = False
            if not protocol.transport.is_closing():
                protocol.transport.write(CONTINUE)
        if self.more_body is None:                      # the whole body was received: wait for the end
            while not (self.disconnected or self.complete):
                await self.arrival()
        while not self.body and self.more_body and not (self.disconnected or self.complete):
            protocol.resume_reading()
            await self.arrival()
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        body, more = self.body, self.more_body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        if not more:
            self.more_body = None
        protocol.resume_reading()
        return {"type": "http.request", "body": data, "more_body": more}

    async def arrival(self) -> None:
        """Until the next wake; receives waiting at once (a listener beside a reader) share it, and a
        cancelled one leaves it to the others."""
        if self.waiter is None:
            self.waiter = self.protocol.loop.create_future()
        await asyncio.shield(self.waiter)

    def send(self, message: dict) -> Awaitable[None]:
        """ASGI `send`, done at once (a finished future is returned, no coroutine made per message) unless the
        transport's buffer is above its high-water mark: then a coroutine that waits for it to drain first."""
        if self.protocol.write_paused and not self.disconnected:
            return self.send_drained(message)
        self.deliver(message)
        return self.protocol.sent

    async def send_drained(self, message: dict) -> None:
        await self.protocol.drain()
        self.deliver(message)

    def deliver(self, message: dict) -> None:
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.start(message["status"], message.get("headers", ()))
        elif not self.complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
            self.body_part(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")

    def start(self, status: int, headers) -> None:
        self.started = True
        self.expect_continue = False
        protocol = self.protocol
        if protocol.access_log:
            protocol.log_access(self.scope, status)
        content = [STATUS_LINE[status]]
        length = None
        closing = False
        for line in (*protocol.server_state.default_headers, *headers):
            name, value = line
            if type(line) is not tuple or line not in CHECKED:
                if HEADER_NAME.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                if HEADER_VALUE.search(value):
                    raise RuntimeError("Invalid HTTP header value.")
                if type(line) is tuple and len(CHECKED) < CHECKED_MAX:
                    CHECKED.add(line)
            name = name.lower()
            if name == b"content-length" and length is None and not self.chunked:
                length = int(value.decode())
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                length, self.chunked = None, True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self.keep_alive, closing = False, True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not closing:
            content.append(b"connection: close\r\n")
        bodiless = self.scope["method"] == "HEAD" or status in (204, 304)
        if length is None and not self.chunked and not bodiless:
            self.chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.length = length or 0
        self.out.append(b"".join(content))
        if self.scope["method"] == "HEAD":
            self.chunked, self.length = False, 0
            self.flush()                                # no body follows: the head is the answer
        elif self.chunked:
            self.later()
        else:
            self.head = True                            # waits for its body's first part

    def body_part(self, body: bytes, more: bool) -> None:
        if self.chunked:
            if body:
                self.out += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more:
                self.out.append(LAST_CHUNK)
        elif self.scope["method"] != "HEAD":
            if len(body) > self.length:
                raise RuntimeError("Response content longer than Content-Length")
            self.length -= len(body)
            if body:
                self.out.append(body)
        if more:
            if self.head:
                self.head = False
                self.flush()                            # a head and its first part leave together
            else:
                self.later()
            return
        if self.length != 0:
            raise RuntimeError("Response content shorter than Content-Length")
        self.complete = True
        self.flush()
        self.wake()
        self.protocol.answered(self)

    def later(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.protocol.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport = self.protocol.transport
            if not transport.is_closing():
                transport.write(data)
