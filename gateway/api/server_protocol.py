"""The HTTP/1.1 protocol radixgate is served with: uvicorn's httptools protocol, except that a whole answer
(one with a Content-Length) leaves in one write, its head held back until the body's first part.

uvicorn writes a response's head at `http.response.start` and its body at `http.response.body`: two
send calls, two loopback segments, and on the client often two wake-ups for one small JSON answer. On
the proxy's hot path (loadtest/proxy_bench.py) that second write cost about 0.06 ms of CPU per request
on the 2-core reference machine. Streams (chunked), HEAD answers and bodiless statuses are written as
uvicorn writes them: their head goes out at once.

    uvicorn.run(app, http=server_protocol())      # falls back to uvicorn's choice without httptools
"""
from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:                         # pragma: no cover - httptools is a dependency, but optional
    HttpToolsProtocol = None


class HeldHead:
    """One request cycle's transport: its first write (the response head) is held when the answer has
    a Content-Length and a body to come, and written with the next write."""
    __slots__ = ("cycle", "head", "started", "transport")

    def __init__(self, transport: asyncio.Transport, cycle) -> None:
        self.transport, self.cycle = transport, cycle
        self.head: bytes | None = None
        self.started = False                # the head was written or is held

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + data, None
        elif not self.started and not data.startswith(b"HTTP/1.1 100 "):
            self.started = True
            cycle = self.cycle              # uvicorn has read the head's framing before writing it
            if cycle.chunked_encoding is False and cycle.expected_content_length > 0 \
                    and cycle.scope["method"] != "HEAD":
                self.head = data
                return
        self.transport.write(data)

    def __getattr__(self, name: str):       # close, is_closing, get_extra_info, ...: the transport's
        return getattr(self.transport, name)


if HttpToolsProtocol is not None:
    class GatewayHttpProtocol(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle = self.cycle              # created here; its task has not run yet
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = HeldHead(self.transport, cycle)
else:                                       # pragma: no cover
    GatewayHttpProtocol = None


def server_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's `http` setting: this protocol where httptools is installed, else uvicorn's own choice."""
    return GatewayHttpProtocol if GatewayHttpProtocol is not None else "auto"
