"""Answers written straight to the ASGI `send`: a whole JSON body (one start and one body message,
so the HTTP server can write them back to back) and a server-sent event stream's framing.

Starlette's JSONResponse and sse-starlette's EventSourceResponse do the same with more machinery per
request (a fresh encoder, a task group of three tasks per stream); on the proxy's hot path that
machinery was a measurable share of what radixgate adds to a request (loadtest/proxy_bench.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.api.jsonio import dumps

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                  (b"x-accel-buffering", b"no")]         # nginx and the like: pass events on at once
PING = b": ping\n\n"


def header_list(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


class JsonAnswer:
    """`after` runs once the body is handed to the server (bookkeeping that need not delay the answer)."""
    __slots__ = ("after", "body", "headers", "status")

    def __init__(self, content: Any, status: int = 200, headers: dict[str, str] | None = None,
                 after: Callable[[], None] | None = None):
        self.body, self.status, self.headers, self.after = dumps(content), status, headers, after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = [(b"content-length", b"%d" % len(self.body)), *JSON_HEADERS]
        if self.headers:
            head += header_list(self.headers)
        await send({"type": "http.response.start", "status": self.status, "headers": head})
        await send({"type": "http.response.body", "body": self.body})
        if self.after is not None:
            self.after()


class Listener:
    """Beside a stream being written: cancels the writing task when the client hangs up (so the backend's
    generation stops), and sends a comment line after `ping` seconds without an event, so proxies in
    between keep the connection open. One task (the receive) and one timer per stream."""

    def __init__(self, receive: Receive, send: Send, ping: float = 15.0):
        self.loop = asyncio.get_running_loop()
        self.writer = asyncio.current_task()
        self.send, self.ping = send, ping
        self.gone = False                   # the client hung up and the writer was cancelled for it
        self.last = self.loop.time()        # when the writer last sent
        self.pinging: asyncio.Future | None = None
        self.heard = asyncio.ensure_future(receive())
        self.heard.add_done_callback(self.hung_up)
        self.timer = self.loop.call_at(self.last + ping, self.quiet)

    def sent(self) -> None:
        self.last = self.loop.time()

    def hung_up(self, heard: asyncio.Future) -> None:
        if not heard.cancelled() and heard.exception() is None and heard.result()["type"] == "http.disconnect":
            self.gone = True
            self.writer.cancel()

    def quiet(self) -> None:
        due = self.last + self.ping
        if self.loop.time() >= due and (self.pinging is None or self.pinging.done()):
            self.pinging = asyncio.ensure_future(self.send({"type": "http.response.body", "body": PING,
                                                            "more_body": True}))
            self.last, due = self.loop.time(), self.loop.time() + self.ping
        self.timer = self.loop.call_at(due, self.quiet)

    def stop(self) -> None:
        """Before the last message: after this, nothing here sends (a ping waiting to be written is dropped)."""
        self.timer.cancel()
        self.heard.remove_done_callback(self.hung_up)
        self.heard.cancel()
        if self.pinging is not None:
            self.pinging.cancel()

    def absorbed(self) -> bool:
        """Whether a CancelledError being handled was the hang-up's; then it is taken back."""
        if not self.gone:
            return False
        uncancel: Callable[[], int] | None = getattr(self.writer, "uncancel", None)     # Python >= 3.11
        if uncancel is not None:
            uncancel()
        return True
