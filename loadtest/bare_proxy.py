"""The least a Python proxy can do, as the floor for loadtest/proxy_bench.py: a Starlette route that
forwards the request body to the upstream through the same HTTP client radixgate uses
(gateway/spec_api/http1.py) and sends back the upstream's bytes, with no parsing, checking or routing.
What radixgate adds beyond this is what its own work costs; what this adds is the extra hop itself.

    python -m loadtest.bare_proxy --upstream http://127.0.0.1:9000/v1 --port 9001
"""
from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.server_protocol import server_protocol
from gateway.spec_api.http1 import Origin


def bare_app(upstream: str) -> Starlette:
    origin = Origin(upstream, {}, timeout=30.0)

    async def forward(request: Request) -> Response:
        body = await request.body()
        # as radixgate's client is used: a plain call's answer is awaited whole, a stream's by its head
        exchange = await origin.post("/chat/completions", body, whole=b'"stream"' not in body)
        kind = exchange.headers.get("content-type", "application/json")
        if "event-stream" not in kind:
            try:
                return Response(await exchange.body(), exchange.status, media_type=kind)
            finally:
                exchange.close()

        async def parts():
            try:
                async for part in exchange.parts():
                    yield part
            finally:
                exchange.close()
        return StreamingResponse(parts(), exchange.status, media_type=kind)

    async def health(_: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


def main() -> None:
    import uvicorn
    ap = argparse.ArgumentParser(description="a bare pass-through proxy (the floor for proxy_bench)")
    ap.add_argument("--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:9000/v1")
    ap.add_argument("--port", type=int, default=9001)
    args = ap.parse_args()
    uvicorn.run(bare_app(args.upstream), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                backlog=4096, http=server_protocol())      # the same server protocol as radixgate's


if __name__ == "__main__":
    main()
