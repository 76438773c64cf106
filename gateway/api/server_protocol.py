"""The HTTP/1.1 protocol radixgate is served with: uvicorn's httptools protocol, except that what a request
writes within one turn of the event loop leaves in one write.

uvicorn writes a response's head at `http.response.start` and each body part at its `http.response.body`:
a small JSON answer is two send calls and two loopback segments, and a stream whose events are all at
hand (an upstream's short answer arrives in one read) is one segment per event, each waking the client.
Here a request's writes are gathered until the write that ends its answer (the body's last byte of a
Content-Length, the last chunk of a chunked one, a HEAD answer's head), which sends them all, or else
until the loop's next turn: a stream's events still leave as they come, never held past one turn. Only
a Content-Length head waits longer: for its body's first part (radixgate sends it at once). On
the proxy's hot path (loadtest/proxy_bench.py) one write instead of two took about 26 us of CPU and
0.05 ms of p50 latency off each proxied plain request (interleaved A/B on the loaded 2-core machine).

    uvicorn.run(app, http=server_protocol())      # falls back to uvicorn's choice without httptools
"""
from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:                         # pragma: no cover - httptools is a dependency, but optional
    HttpToolsProtocol = None

CONTINUE = b"HTTP/1.1 100 "                 # an interim answer goes out as it is
LAST_CHUNK = b"0\r\n\r\n"


class Gathered:
    """One request cycle's transport: writes gathered as the module says. `cycle` is uvicorn's
    RequestResponseCycle, which sets its framing (and counts down a Content-Length) before each write."""
    __slots__ = ("cycle", "headed", "loop", "parts", "scheduled", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, cycle) -> None:
        self.transport, self.loop, self.cycle = transport, loop, cycle
        self.parts: list[bytes] = []
        self.headed = False                 # the response head was written (or is gathered)
        self.scheduled = False              # a flush at the loop's next turn is due

    def write(self, data: bytes) -> None:
        head, self.headed = not self.headed, True
        if head and data.startswith(CONTINUE):
            self.headed = False
            self.transport.write(data)
            return
        self.parts.append(data)
        if self.ends_answer(data):
            self.flush()
        elif head and not self.cycle.chunked_encoding:
            pass                            # a Content-Length head waits for its body's first part
        elif not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def ends_answer(self, data: bytes) -> bool:
        cycle = self.cycle
        if cycle.scope["method"] == "HEAD":
            return True
        if cycle.chunked_encoding:
            return data.endswith(LAST_CHUNK)     # (a chunk that merely ends so only flushes early)
        return cycle.expected_content_length == 0

    def flush(self) -> None:
        self.scheduled = False
        parts = self.parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            if data and not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str):       # is_closing, get_extra_info, ...: the transport's
        return getattr(self.transport, name)


if HttpToolsProtocol is not None:
    class GatewayHttpProtocol(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle = self.cycle              # made just now (its task has not run yet), unless an upgrade
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = Gathered(self.transport, self.loop, cycle)
else:                                       # pragma: no cover
    GatewayHttpProtocol = None


def server_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's `http` setting: this protocol where httptools is installed, else uvicorn's own choice."""
    return GatewayHttpProtocol if GatewayHttpProtocol is not None else "auto"
