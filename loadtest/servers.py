"""Servers for load tests and the HTTP tests: a Backend that answers at once (so what is measured
is the gateway itself), and a uvicorn server in a background thread on a free loopback port."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn

from gateway.api.server_protocol import server_protocol
from gateway.protocol import Delta, GenerateRequest, InvalidRequest, ModelCard, TokenLogprob, Usage

INSTANT_MODEL = "instant"
INSTANT_PIECES = ("Hello", ",", " world")


class InstantBackend:
    """A Backend with no model: each choice gets up to three fixed pieces (fewer under max_tokens),
    one token each, then finishes with 'length' if max_tokens cut it short, else 'stop'. Like the
    engine, it refuses max_tokens beyond its context length."""

    def __init__(self, name: str = INSTANT_MODEL, max_context: int = 4096):
        self.card = ModelCard(name, max_context=max_context)
        self.aborted: list[str] = []

    def models(self) -> list[ModelCard]:
        return [self.card]

    async def health(self) -> dict:
        return {"status": "ok"}

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]:
        p = req.params
        if p.max_tokens is not None and p.max_tokens > self.card.max_context:
            raise InvalidRequest(f"This model's maximum context length is {self.card.max_context} tokens.",
                                 "messages" if req.messages is not None else "prompt")
        pieces = INSTANT_PIECES[:len(INSTANT_PIECES) if p.max_tokens is None else p.max_tokens]
        finish = "length" if len(pieces) < len(INSTANT_PIECES) else "stop"
        prompt_tokens = len(req.prompt_token_ids or []) or len(str(req.prompt or req.messages).split())
        for i in range(req.n):
            for j, piece in enumerate(pieces):
                top = [(k, f"t{k}", -1.0 - k) for k in range(p.top_logprobs)]
                logprobs = [TokenLogprob(j, piece, -0.5, top)] if p.logprobs else None
                yield Delta(i, piece, [j], logprobs)
            last = i == req.n - 1
            yield Delta(i, finish_reason=finish,
                        usage=Usage(prompt_tokens, len(pieces) * req.n) if last else None)


# ---------------------------------------------------------------------------------------------
# A live server: uvicorn in a background thread on a socket bound here, so the port never races.
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def serve(app, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` on a free loopback port in a background thread; yield its base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response split in two writes waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=5,
                            backlog=4096, http=server_protocol())     # as `radixgate serve` runs
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"
