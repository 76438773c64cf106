"""Many streaming clients at once against the tiny CPU engine, and a client that walks away mid-stream:
every stream ends in [DONE] without an error, and afterwards the engine holds no work and no KV."""
from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.api.openapi import check_body, sse_data, validate
from tests.engine.test_engine import assert_no_leak

MODEL = "tiny-qwen3"
CLIENTS = 200
MAX_TOKENS = 8


def chat_body(i: int, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Client {i} asks about radix trees."}],
            "max_tokens": MAX_TOKENS, "stream": True, "stream_options": {"include_usage": True}, **extra}


async def stream_by_hand(client: httpx.AsyncClient, body: dict) -> list[dict]:
    """POST a streaming request, read the raw SSE bytes, validate every chunk; return the chunks."""
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join([part async for part in r.aiter_bytes()])
    return check_body("/v1/chat/completions", r.status_code, r.headers.get("content-type", ""), raw)


def wait_idle(engine, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while engine.call(lambda: engine.scheduler.has_work):
        assert time.monotonic() < deadline, "the engine still has work"
        time.sleep(0.02)


def test_200_concurrent_streams_all_finish(live_server, tiny_engine):
    base = live_server(tiny_engine)

    async def run() -> list[list[dict]]:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
            return await asyncio.gather(*(stream_by_hand(client, chat_body(i)) for i in range(CLIENTS)))

    streams = asyncio.run(run())
    assert len(streams) == CLIENTS
    for chunks in streams:
        assert not any("error" in c for c in chunks), chunks
        *body, usage = chunks
        assert usage["choices"] == [] and 0 < usage["usage"]["completion_tokens"] <= MAX_TOKENS
        assert body[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert len({chunks[0]["id"] for chunks in streams}) == CLIENTS, "every request has its own id"
    wait_idle(tiny_engine)
    assert_no_leak(tiny_engine)


def test_client_gone_mid_stream_frees_the_engine(live_server, tiny_engine):
    base = live_server(tiny_engine)
    long = chat_body(0, max_tokens=900, ignore_eos=True)
    before = tiny_engine.runner.computed_tokens

    async def read_two_chunks_and_leave() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            async with client.stream("POST", "/v1/chat/completions", json=long) as r:
                assert r.status_code == 200
                seen = 0
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        validate("CreateChatCompletionStreamResponse", json.loads(line[5:]))
                        seen += 1
                        if seen == 3:
                            break           # leaving the block closes the connection mid-stream

    asyncio.run(read_two_chunks_and_leave())
    wait_idle(tiny_engine)
    computed = tiny_engine.runner.computed_tokens - before
    assert computed < 600, f"the engine computed {computed} tokens for a request abandoned after 2 of 900"
    assert_no_leak(tiny_engine)
    # The server is fine afterwards.
    with httpx.Client(base_url=base, timeout=60) as client:
        r = client.post("/v1/chat/completions", json=chat_body(1))
        chunks = check_body(r.request.url.path, r.status_code, r.headers["content-type"], r.content)
        assert chunks[-1]["usage"]["completion_tokens"] > 0
        assert sse_data(r.text)[-1] == "[DONE]"
