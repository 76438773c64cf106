"""`radixgate serve` as a user starts it: no --model, no npm, a fresh cache."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tmp) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "RADIXGATE_CACHE": str(tmp / "cache"), "RADIXGATE_NPM": str(tmp / "no-npm")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"server did not come up:\n{proc.stdout.read()}")
    return proc, base


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, base = start_serve(tmp_path_factory.mktemp("serve"))
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def test_sigterm_drains_every_stream_then_exits_0(tmp_path):
    """SIGTERM with 50 streams in flight: each still gets all its tokens, its usage and [DONE], and
    the process exits 0, after which nothing listens."""
    proc, base = start_serve(tmp_path)
    model = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
    started = asyncio.Event()
    first_chunks = 0

    async def stream(client: httpx.AsyncClient, i: int) -> tuple[dict, bool]:
        nonlocal first_chunks
        body = {"model": model, "messages": [{"role": "user", "content": f"count {i}"}], "stream": True,
                "max_tokens": 32, "ignore_eos": True, "stream_options": {"include_usage": True}}
        chunks, done, usage = 0, False, None
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunks += 1
                    if chunks == 2:
                        first_chunks += 1
                        if first_chunks == 50:
                            started.set()
                    usage = json.loads(line[6:]).get("usage") or usage
        return usage, done

    async def main():
        async with httpx.AsyncClient(timeout=120) as client:
            tasks = [asyncio.create_task(stream(client, i)) for i in range(50)]
            await asyncio.wait_for(started.wait(), 120)
            proc.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*tasks)
            return results

    results = asyncio.run(main())
    assert all(done for _, done in results), "every stream ended with [DONE]"
    assert all(usage["completion_tokens"] == 32 for usage, _ in results), "every token was generated"
    assert proc.wait(timeout=60) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/health", timeout=2)
    assert "POST /v1/chat/completions" not in proc.stdout.read(), "no access log line unless --access-log"


def test_health_and_models_name_the_demo(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    listing = httpx.get(f"{server}/v1/models").json()
    assert listing["object"] == "list"
    [card] = listing["data"]
    assert card["id"] == "radixgate-demo-random-weights" and card["object"] == "model"
    assert httpx.get(f"{server}/v1/models/{card['id']}").json()["id"] == card["id"]


def test_unknown_model_and_route_are_openai_404s(server):
    for path in ("/v1/models/gpt-9", "/v1/nothing-here"):
        r = httpx.get(f"{server}{path}")
        assert r.status_code == 404
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
