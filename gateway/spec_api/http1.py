"""A small HTTP/1.1 client for the upstream hot path: POST a JSON body, read the answer's status and
headers, then its body line by line, on keep-alive connections to one origin.

Why not httpx (or the openai SDK on it): on this project's 2-core reference machine a streamed call
through the SDK costs about 3.2 ms of CPU and through httpx alone about 2.0 ms, against about 0.7 ms
here (0.5 ms of it the bare socket round trip), and what the proxy adds per request is a goal measured
in fractions of a millisecond (loadtest/proxy_bench.py). Only what an OpenAI-compatible upstream needs is here: one request per
connection at a time, Content-Length or chunked bodies, TLS for https, and a timeout that covers
connecting and every wait for the next part of the answer. A connection goes back to the pool only
after its answer was read to the end.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

BROKEN = (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError)


class Timeout(Exception):
    """No answer (or no next part of it) within the timeout."""


class Unreachable(Exception):
    """The connection could not be made, or broke off before the answer was complete."""


class Exchange:
    """One request and its answer on one connection. A single watchdog timer aborts the connection
    once no read has finished for `timeout` seconds; reads only note the time, and the timer re-arms
    itself when it fires early, so a long stream costs one timer, not one per read."""

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.origin, self.reader, self.writer = origin, reader, writer
        self.loop = asyncio.get_running_loop()
        self.timeout = origin.timeout
        self.last = self.loop.time()
        self.fired = False
        self.timer = self.loop.call_at(self.last + self.timeout, self.check)
        self.status, self.headers = 0, {}
        self.chunked, self.length, self.reusable, self.finished = False, None, False, False

    def check(self) -> None:
        due = self.last + self.timeout
        if self.loop.time() >= due:
            self.fired = True
            self.writer.transport.abort()
        else:
            self.timer = self.loop.call_at(due, self.check)

    async def read(self, pending: Awaitable[bytes]) -> bytes:
        try:
            data = await pending
        except BROKEN as err:
            if self.fired:
                raise Timeout(f"no answer within {self.timeout:g} s") from None
            raise Unreachable(f"the connection broke off: {err!r}") from None
        if self.fired:                          # a read that ended at the abort's end of file
            raise Timeout(f"no answer within {self.timeout:g} s")
        self.last = self.loop.time()
        return data

    async def start(self, request: bytes) -> None:
        self.writer.write(request)
        head = (await self.read(self.reader.readuntil(b"\r\n\r\n"))).decode("latin-1").split("\r\n")
        self.status = int(head[0][9:12])
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name:
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.length = int(self.headers["content-length"]) if "content-length" in self.headers else None
        self.reusable = (self.chunked or self.length is not None) and \
            self.headers.get("connection", "").lower() != "close"

    async def parts(self) -> AsyncIterator[bytes]:
        read, reader = self.read, self.reader
        if self.chunked:
            while size := int((await read(reader.readuntil(b"\r\n"))).split(b";", 1)[0], 16):
                yield (await read(reader.readexactly(size + 2)))[:-2]
            while await read(reader.readuntil(b"\r\n")) != b"\r\n":       # trailers
                pass
        elif self.length is not None:
            if self.length:
                yield await read(reader.readexactly(self.length))
        else:
            while part := await read(reader.read(65536)):
                yield part
        self.finished = True

    async def lines(self) -> AsyncIterator[bytes]:
        rest = b""
        async for part in self.parts():
            *done, rest = (rest + part).split(b"\n")
            for line in done:
                yield line
        if rest:
            yield rest

    async def body(self, limit: int = 1 << 20) -> bytes:
        """The whole body, or its first `limit` bytes and more (then the connection is not reused)."""
        if self.length is not None and not self.chunked:
            if self.length > limit:
                return await self.read(self.reader.readexactly(limit + 1))
            out = await self.read(self.reader.readexactly(self.length)) if self.length else b""
            self.finished = True
            return out
        out = b""
        async for part in self.parts():
            out += part
            if len(out) > limit:
                break
        return out

    def close(self) -> None:
        """Back to the pool when read to the end, else the connection is dropped."""
        if self.writer is None:
            return
        self.timer.cancel()
        self.origin.in_use -= 1
        if self.finished and self.reusable and len(self.origin.idle) < self.origin.max_idle:
            self.origin.idle.append((self.reader, self.writer))
        else:
            self.writer.close()
        self.writer = None


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
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.in_use = 0                         # exchanges not closed yet

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(
                self.host, self.port, ssl=self.tls, limit=1 << 20), self.connect_timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"could not connect within {self.connect_timeout:g} s") from None
        except OSError as err:
            raise Unreachable(f"could not connect: {err.strerror or err}") from None

    async def post(self, path: str, body: bytes) -> Exchange:
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            (self.prefix + path).encode(), self.head, len(body), body)
        while self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                return await self.send(reader, writer, request)
            except Unreachable:                 # closed by the server while idle, most likely: one fresh try
                break
        return await self.send(*await self.connect(), request)

    async def send(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> Exchange:
        self.in_use += 1
        exchange = Exchange(self, reader, writer)
        try:
            await exchange.start(request)
        except BaseException:
            exchange.close()
            raise
        return exchange

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
