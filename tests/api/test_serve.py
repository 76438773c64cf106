"""`radixgate serve` as a user starts it: no --model, no npm, a fresh cache."""
from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
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
    yield base
    proc.terminate()
    proc.wait(timeout=30)


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
