"""A small HTTP/1.1 client for the upstream hot path: POST a JSON body, read the answer's status and
headers, then its body line by line, on keep-alive connections to one origin.

Why not httpx (or the openai SDK on it): on this project's 2-core reference machine a streamed call
through the SDK costs about 3.2 ms of CPU and through httpx alone about 2.0 ms, against about 0.7 ms
here (0.5 ms of it the bare socket round trip), and what the proxy adds per request is a goal measured
in fractions of a millisecond (loadtest/proxy_bench.py). Only what an OpenAI-compatible upstream needs is here: one request per
connection at a time, Content-Length or chunked bodies, TLS for https, and a timeout that covers
connecting and every wait for the next part of the answer. A connection goes back to the pool only
after its answer was read to the end.

Each connection is an asyncio Protocol that parses the answer as its bytes arrive (head, then a
Content-Length, chunked or until-close body) and wakes its reader with everything that arrived; a
plain call's reader wakes once, when the whole answer is in, where asyncio's StreamReader woke it for
the head and again for the body whenever they came in separate segments.
"""
from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

HEAD_LIMIT = 1 << 20             # a longer head (or chunk-size line) is a broken answer
PAUSE, RESUME = 1 << 20, 1 << 18  # a streamed answer's unread bytes: stop reading the socket, then go on

# Where the parser is in an answer.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, DONE = range(8)


class Timeout(Exception):
    """No answer (or no next part of it) within the timeout."""


class Unreachable(Exception):
    """The connection could not be made, or broke off before the answer was complete."""


class BrokenAnswer(Unreachable):
    """Part of the answer had arrived when the connection broke off or the answer stopped parsing: the
    upstream was reached and took the request, so it is not sent again on another connection here."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; its bytes go to the exchange under way.

    One watchdog timer per connection aborts an exchange once nothing has arrived for `timeout` seconds:
    arrivals and new exchanges only note the time, and the timer re-arms itself when it fires early
    (or stops when it finds the connection idle), so neither a long stream nor a run of short calls
    costs a timer each."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False                     # end of file or lost: never reused
        self.loop = asyncio.get_running_loop()
        self.timeout = 0.0
        self.last = 0.0                         # when the exchange under way started or last heard
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.exchange is not None:
            self.last = self.loop.time()
            self.exchange.feed(data)
        else:                                   # bytes nobody asked for: the connection is out of step
            self.closed = True
            self.transport.close()

    def eof_received(self) -> bool:
        self.closed = True
        if self.exchange is not None:
            self.exchange.ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if self.exchange is not None:
            self.exchange.ended(exc)

    def check(self) -> None:
        self.watchdog = None
        exchange = self.exchange
        if exchange is None:
            return                              # idle: the next exchange arms it again
        due = self.last + self.timeout
        if self.loop.time() >= due:
            exchange.fail(Timeout(f"no answer within {self.timeout:g} s"))
            self.transport.abort()
        else:
            self.watchdog = self.loop.call_at(due, self.check)


class Exchange:
    """One request and its answer on one connection (its timeout watched by the connection)."""
    __slots__ = ("buffer", "chunked", "conn", "failure", "finished", "headers", "length", "limit", "loop", "origin",
                 "paused", "ready", "remaining", "reusable", "state", "status", "streaming", "unread", "waiter",
                 "whole")

    def __init__(self, origin: Origin, conn: Connection):
        self.origin, self.conn = origin, conn
        self.loop = conn.loop
        self.status, self.headers = 0, {}
        self.chunked, self.length, self.reusable, self.finished = False, None, False, False
        self.state, self.remaining, self.buffer = HEAD, 0, b""
        self.ready: deque[bytes] = deque()      # body bytes arrived and not yet taken
        self.unread = 0
        self.streaming = self.paused = False
        self.failure: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.whole = False                      # the reader waits for the end of the body (or `limit` bytes)
        self.limit = 0
        conn.exchange = self
        conn.timeout, conn.last = origin.timeout, conn.loop.time()     # Connection.check watches from here
        if conn.watchdog is None:
            conn.watchdog = conn.loop.call_at(conn.last + conn.timeout, conn.check)

    # ----- the protocol's side -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.buffer += data
        try:
            self.parse()
        except ValueError as err:
            self.fail(BrokenAnswer(f"a malformed answer: {err}"))
            self.conn.transport.abort()
        if self.streaming and not self.paused and self.unread > PAUSE:
            self.paused = True
            self.conn.transport.pause_reading()
        if not self.whole or self.finished or self.unread > self.limit or self.failure is not None:
            self.wake()

    def ended(self, exc: Exception | None) -> None:
        if self.state == UNTIL_CLOSE and exc is None:
            self.state, self.finished = DONE, True
        elif self.state != DONE:
            broke = BrokenAnswer if self.state != HEAD or self.buffer else Unreachable
            self.fail(broke(f"the connection broke off: {exc!r}" if exc else "the connection broke off"))
        self.wake()

    def fail(self, failure: Exception) -> None:
        if self.failure is None:
            self.failure = failure

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def parse(self) -> None:
        buf, state = self.buffer, self.state
        while buf or state == DONE:
            if state == HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > HEAD_LIMIT:
                        raise ValueError("the head is too long")
                    break
                self.read_head(buf[:end])
                buf = buf[end + 4:]
                if self.chunked:
                    state = CHUNK_SIZE
                elif self.length is not None:
                    state, self.remaining = (LENGTH, self.length) if self.length else (DONE, 0)
                else:
                    state = UNTIL_CLOSE
            elif state in (LENGTH, CHUNK_DATA):
                take = buf[:self.remaining]
                buf = buf[len(take):]
                self.take(take)
                self.remaining -= len(take)
                if not self.remaining:
                    state = DONE if state == LENGTH else CHUNK_END
            elif state == CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > HEAD_LIMIT:
                        raise ValueError("a chunk size line is too long")
                    break
                self.remaining = int(buf[:end].split(b";", 1)[0], 16)
                buf = buf[end + 2:]
                state = CHUNK_DATA if self.remaining else TRAILERS
            elif state == CHUNK_END:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ValueError("a chunk does not end with CRLF")
                buf, state = buf[2:], CHUNK_SIZE
            elif state == TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                buf, state = buf[end + 2:], (TRAILERS if end else DONE)
            elif state == UNTIL_CLOSE:
                self.take(buf)
                buf = b""
            else:                               # DONE
                self.finished = True
                if buf:                         # more than the answer: the connection is out of step
                    self.reusable, buf = False, b""
                break
        self.buffer, self.state = buf, state

    def read_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 status line: {lines[0][:80]!r}")
        self.status = int(lines[0][9:12])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.length = int(self.headers["content-length"]) if "content-length" in self.headers else None
        if self.length is not None and self.length < 0:
            raise ValueError("a negative Content-Length")
        self.reusable = (self.chunked or self.length is not None) and \
            self.headers.get("connection", "").lower() != "close"

    def take(self, part: bytes) -> None:
        if part:
            self.ready.append(part)
            self.unread += len(part)

    # ----- the reader's side ---------------------------------------------------------------------

    async def arrival(self) -> None:
        """Until more has arrived (or the answer failed)."""
        if self.failure is not None:
            raise self.failure
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def taken(self) -> bytes:
        data = b"".join(self.ready) if len(self.ready) != 1 else self.ready[0]
        self.ready.clear()
        self.unread = 0
        return data

    async def parts(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything that came, then the failure if the answer broke off."""
        self.streaming = True
        while True:
            if self.ready:
                yield self.taken()
                if self.paused:
                    self.paused = False
                    self.conn.transport.resume_reading()
            elif self.finished:
                return
            else:
                await self.arrival()

    async def lines(self) -> AsyncIterator[bytes]:
        rest = b""
        async for part in self.parts():
            *done, rest = (rest + part).split(b"\n")
            for line in done:
                yield line
        if rest:
            yield rest

    async def wait_whole(self, limit: int) -> None:
        """Until the whole body, or more than `limit` bytes of it, arrived: one wake-up, not one per part."""
        self.whole, self.limit = True, limit
        try:
            while not self.finished and self.unread <= limit:
                await self.arrival()
        finally:
            self.whole = False

    async def body(self, limit: int = 1 << 20) -> bytes:
        """The whole body, or its first `limit` bytes and more (then the connection is not reused)."""
        if not self.finished and self.unread <= limit:
            await self.wait_whole(limit)
        return self.taken()

    def close(self) -> None:
        """Back to the pool when read to the end, else the connection is dropped."""
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        conn.exchange = None
        self.origin.in_use -= 1
        if self.finished and self.reusable and not self.ready and not conn.closed \
                and len(self.origin.idle) < self.origin.max_idle:
            self.origin.idle.append(conn)
        else:
            conn.transport.close()


class Origin:
    """Keep-alive connections to one base URL; `post` sends a JSON body and returns the started Exchange,
    which the caller must close."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, connect_timeout: float = 10.0,
                 max_idle: int = 512):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.host, self.prefix = url.hostname, url.path.rstrip("/")
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if url.scheme == "https" else None
        self.timeout, self.connect_timeout, self.max_idle = timeout, connect_timeout, max_idle
        fixed = {"Host": url.netloc.rpartition("@")[2], "Content-Type": "application/json",
                 "Accept": "text/event-stream, application/json", "User-Agent": "radixgate", **headers}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.targets: dict[str, bytes] = {}     # path -> the request line and fixed headers
        self.idle: list[Connection] = []
        self.in_use = 0                         # exchanges not closed yet

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                Connection, self.host, self.port, ssl=self.tls), self.connect_timeout)
            return conn
        except asyncio.TimeoutError:
            raise Timeout(f"could not connect within {self.connect_timeout:g} s") from None
        except OSError as err:
            raise Unreachable(f"could not connect: {err.strerror or err}") from None

    async def post(self, path: str, body: bytes, whole: bool = False) -> Exchange:
        """`whole`: return once the whole answer (up to 1 MiB of body) is in, rather than once its head is."""
        target = self.targets.get(path)
        if target is None:
            target = self.targets[path] = b"POST %s HTTP/1.1\r\n%s" % ((self.prefix + path).encode(), self.head)
        request = b"%sContent-Length: %d\r\n\r\n%s" % (target, len(body), body)
        while self.idle:
            conn = self.idle.pop()
            if conn.closed or conn.transport.is_closing():
                conn.transport.close()
                continue
            try:
                return await self.send(conn, request, whole)
            except BrokenAnswer:
                raise
            except Unreachable:                 # closed by the server while idle, most likely: one fresh try
                break
        return await self.send(await self.connect(), request, whole)

    async def send(self, conn: Connection, request: bytes, whole: bool) -> Exchange:
        self.in_use += 1
        exchange = Exchange(self, conn)
        try:
            conn.transport.write(request)
            if whole:
                await exchange.wait_whole(1 << 20)
            while exchange.state == HEAD:
                await exchange.arrival()
        except BaseException:
            exchange.close()
            raise
        return exchange

    async def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()
