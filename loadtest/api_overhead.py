"""What the API layer costs per request: the gateway over a backend that answers at once, against a
bare Starlette endpoint that sends the very same bytes, both measured with the same client in one run.

    python -m loadtest.api_overhead [--seconds 2.0] [--levels 1,8,32,128]

With InstantBackend, end-to-end latency IS the gateway's overhead (parse, validate, auth and limits
middleware, metrics, shaping, SSE) plus the client's and the HTTP server's own cost; the peer carries
those last two only, so `added` = gateway - peer is what radixgate itself adds. Each server runs in its
own process (one uvicorn worker); the client (raw HTTP/1.1 on asyncio) runs here, `level` requests in flight.
The InstantBackend and the in-thread server come from loadtest/servers.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from dataclasses import dataclass

import httpx

PLAIN = {"model": "instant", "messages": [{"role": "user", "content": "How much does the gateway cost?"}],
         "max_tokens": 3}
STREAM = PLAIN | {"stream": True, "stream_options": {"include_usage": True}}


# ----- the two servers, each in its own process -------------------------------------------------

def peer_app(plain: bytes, stream: bytes):
    """Starlette with nothing in between: read the body, send back the gateway's own answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]

    async def chat(request: Request) -> Response:
        raw = await request.body()
        if b'"stream":true' not in raw and b'"stream": true' not in raw:
            return Response(plain, media_type="application/json")

        async def sse():
            for e in events:
                yield e
        return StreamingResponse(sse(), media_type="text/event-stream")
    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def run_server(kind: str, bodies: tuple[bytes, bytes] | None, urls: mp.Queue, stop: mp.Event) -> None:
    from loadtest.servers import InstantBackend, serve
    if kind == "gateway":
        from gateway.api.app import create_app
        app = create_app(InstantBackend())
    else:
        app = peer_app(*bodies)
    with serve(app) as url:
        urls.put(url)
        stop.wait()


class Server:
    def __init__(self, kind: str, bodies: tuple[bytes, bytes] | None = None):
        ctx = mp.get_context("spawn")
        urls, self.stop = ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(target=run_server, args=(kind, bodies, urls, self.stop), daemon=True)
        self.proc.start()
        self.url = urls.get(timeout=60)

    def close(self) -> None:
        self.stop.set()
        self.proc.join(timeout=30)


# ----- the client: plain HTTP/1.1 over asyncio streams, keep-alive, one connection per client ----------
# (httpx.AsyncClient's pool saturates near 500 req/s on one core, well below these servers.)

@dataclass(slots=True)
class Cell:
    latencies: list[float]
    seconds: float

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


def http_request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer bench\r\nContent-Length: %d\r\n\r\n" % len(data)) + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
    if b"content-length" in headers:
        return int(head[9:12]), await reader.readexactly(int(headers[b"content-length"]))
    body = bytearray()                                  # chunked
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return int(head[9:12]), bytes(body)


async def drive(url: str, body: dict, level: int, seconds: float, warmup: float = 0.3) -> Cell:
    """`level` clients back to back for warmup + seconds; latencies of the requests after warmup."""
    host, port = url.removeprefix("http://").split(":")
    raw, streaming = http_request(body), bool(body.get("stream"))
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while (t0 := time.perf_counter()) < until:
            writer.write(raw)
            status, answer = await read_response(reader)
            if status != 200 or (streaming and not answer.rstrip().endswith(b"[DONE]")):
                raise RuntimeError(f"{url} answered {status}: {answer[:200]!r}")
            if t0 >= measure_from:
                latencies.append(time.perf_counter() - t0)
        writer.close()
    await asyncio.gather(*(one_client() for _ in range(level)))
    return Cell(latencies, time.perf_counter() - measure_from)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    ap.add_argument("--levels", default="1,8,32,128", help="requests in flight")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    gateway = Server("gateway")
    with httpx.Client(base_url=gateway.url) as c:
        bodies = (c.post("/v1/chat/completions", json=PLAIN).content, c.post("/v1/chat/completions", json=STREAM).content)
    peer = Server("peer", bodies)
    print(f"gateway over InstantBackend vs bare Starlette sending the same bytes "
          f"({len(bodies[0])} B plain, {bodies[1].count(b'data:')} SSE events streamed); "
          f"{args.seconds:g} s per cell, latencies in ms")
    head = (f"{'mode':<7}{'conc':>5} | {'gw p50':>7}{'gw p99':>8}{'gw req/s':>9} | {'peer p50':>8}{'peer p99':>9}"
            f"{'peer req/s':>11} | {'added p50':>9}{'added p99':>10}{'per req':>8}{'x peer':>7}")
    print(head + "\n" + "-" * len(head))
    try:
        for mode, body in (("plain", PLAIN), ("stream", STREAM)):
            for level in levels:
                gw = asyncio.run(drive(gateway.url, body, level, args.seconds))
                pe = asyncio.run(drive(peer.url, body, level, args.seconds))
                print(f"{mode:<7}{level:>5} | {gw.pct(.5):7.2f}{gw.pct(.99):8.2f}{gw.rps:9.0f} | {pe.pct(.5):8.2f}"
                      f"{pe.pct(.99):9.2f}{pe.rps:11.0f} | {gw.pct(.5) - pe.pct(.5):9.2f}{gw.pct(.99) - pe.pct(.99):10.2f}"
                      f"{1e3 / gw.rps - 1e3 / pe.rps:8.3f}{gw.pct(.5) / pe.pct(.5):7.2f}")
    finally:
        gateway.close()
        peer.close()
    print(f"added = gateway - peer; 'per req' = 1/throughput difference, the server time radixgate adds to each "
          f"request once it is saturated; x peer = p50 ratio. One uvicorn worker per server; client and servers "
          f"share {mp.cpu_count()} cores.")


if __name__ == "__main__":
    main()
