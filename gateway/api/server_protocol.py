"""The HTTP/1.1 protocol radixgate is served with: uvicorn's httptools protocol, except that a response's
head leaves in one write with the first part of its body.

uvicorn writes a response's head at `http.response.start` and its body at `http.response.body`: two
send calls, two loopback segments, and on the client often two wake-ups for one small JSON answer or
for a stream's first event. Here the head is held back and written with the next write of the same
request, if that comes before the event loop's next turn (a whole answer's body, a stream's first
events: radixgate sends both right after the start), else on that next turn by itself; so a head is
never held longer than one turn of the loop, whatever the app. On the proxy's hot path
(loadtest/proxy_bench.py) one write instead of two took about 26 us of CPU and 0.05 ms of p50 latency
off each proxied request (interleaved A/B on the loaded 2-core reference machine).

    uvicorn.run(app, http=server_protocol())      # falls back to uvicorn's choice without httptools
"""
from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:                         # pragma: no cover - httptools is a dependency, but optional
    HttpToolsProtocol = None

CONTINUE = b"HTTP/1.1 100 "                 # an interim answer goes out as it is


class HeldHead:
    """One request cycle's transport: its first write (the response head) is held until the next write
    or the loop's next turn, whichever comes first, and closing writes it out first."""
    __slots__ = ("head", "loop", "started", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.loop = transport, loop
        self.head: bytes | None = None
        self.started = False                # the head was written or is held

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + data, None
        elif not self.started and not data.startswith(CONTINUE):
            self.started, self.head = True, data
            self.loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        head, self.head = self.head, None
        if head is not None and not self.transport.is_closing():
            self.transport.write(head)

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
                cycle.transport = HeldHead(self.transport, self.loop)
else:                                       # pragma: no cover
    GatewayHttpProtocol = None


def server_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's `http` setting: this protocol where httptools is installed, else uvicorn's own choice."""
    return GatewayHttpProtocol if GatewayHttpProtocol is not None else "auto"
