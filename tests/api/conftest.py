"""Fixtures for the HTTP tests: a live uvicorn server in a thread, the tiny CPU engine, and an
InstantBackend that answers at once (for fuzzing and for measuring the API layer's own cost)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import ServeConfig
from gateway.protocol import Backend
from loadtest.servers import InstantBackend, serve


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """`live_server(backend, cfg=None) -> base URL`; every server started is stopped at teardown."""
    from gateway.api.app import create_app
    with contextlib.ExitStack() as stack:
        def start(backend: Backend, cfg: ServeConfig | None = None) -> str:
            return stack.enter_context(serve(create_app(backend, cfg)))
        yield start


@pytest.fixture
def instant_backend() -> InstantBackend:
    return InstantBackend()


# ---------------------------------------------------------------------------------------------
# The tiny Qwen3 engine on CPU: the real tokenizer (npm, cached) when it can be had, else a trained BPE.
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
    from gateway.modelgen.builder import make_model
    from gateway.modelgen.shapes import PRESETS
    from gateway.modelgen.tokenizer_files import TokenizerFetchError
    dest = tmp_path_factory.mktemp("api-models") / "tiny-qwen3"
    try:
        return make_model(PRESETS["tiny-qwen3"], dest, tokenizer="npm")
    except TokenizerFetchError:
        return make_model(PRESETS["tiny-qwen3"], dest, tokenizer="trained")


@pytest.fixture(scope="session")
def tiny_engine(tiny_qwen3_dir: Path):
    from gateway.engine.engine import Engine
    engine = Engine(tiny_qwen3_dir, name="tiny-qwen3", device="cpu", dtype="float32", kv_slots=16384,
                    max_running=256, max_context=1024)
    yield engine
    engine.shutdown()
