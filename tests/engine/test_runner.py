"""The runner's choices that need no model run: which attention backend, how many KV slots fit a memory
share, and random weights drawn in place of a checkpoint."""
from __future__ import annotations

import sys
from importlib.util import find_spec

import pytest
import torch

from gateway.engine.attention import TorchAttention
from gateway.engine.kv_pool import KVPool
from gateway.engine.runner import ModelRunner, kv_slots_within, select_backend

GiB = 1 << 30


@pytest.fixture
def pool() -> KVPool:
    return KVPool(1, 4, 1, 8, torch.float32, "cpu")


def test_auto_is_torch_off_cuda_and_names_are_checked(pool):
    assert type(select_backend("auto", pool, torch.device("cpu"))) is TorchAttention
    assert type(select_backend("torch", pool, torch.device("cuda"))) is TorchAttention
    with pytest.raises(ValueError, match="'flash' is not supported"):
        select_backend("flash", pool, torch.device("cpu"))


@pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")
def test_triton_off_cuda_only_in_the_interpreter(pool, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("the interpreter is for machines without CUDA")
    assert type(select_backend("triton", pool, torch.device("cpu"))).__name__ == "TritonAttention"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        select_backend("triton", pool, torch.device("cpu"))


def test_without_triton_auto_falls_back_and_triton_is_refused(pool, monkeypatch):
    monkeypatch.setitem(sys.modules, "gateway.engine.attention.triton_backend", None)    # import fails
    assert type(select_backend("auto", pool, torch.device("cuda"))) is TorchAttention
    with pytest.raises(ValueError, match="needs triton installed"):
        select_backend("triton", pool, torch.device("cuda"))


def test_kv_slots_within_a_memory_share():
    # 80 GiB device, 1 GiB already in use: 0.9 * 80 - 1 - 16 (weights) - 1 (tables) = 54 GiB of KV.
    assert kv_slots_within(0.9, 79 * GiB, 80 * GiB, 16 * GiB, GiB, 128 << 10) == 54 * GiB // (128 << 10)
    with pytest.raises(ValueError, match="leaves no memory for the KV cache"):
        kv_slots_within(0.2, 79 * GiB, 80 * GiB, 16 * GiB, GiB, 128 << 10)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        kv_slots_within(1.5, 79 * GiB, 80 * GiB, 16 * GiB, GiB, 128 << 10)


def test_mem_fraction_needs_cuda(model_dirs):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ModelRunner(model_dirs["qwen3"], torch.device("cpu"), mem_fraction=0.5)


def test_random_weights_replace_the_checkpoint(model_dirs):
    loaded = ModelRunner(model_dirs["llama"], torch.device("cpu"), kv_slots=64, max_running=2)
    drawn = ModelRunner(model_dirs["llama"], torch.device("cpu"), kv_slots=64, max_running=2, random_weights=True)
    params = dict(drawn.model.named_parameters())
    assert params.keys() == dict(loaded.model.named_parameters()).keys()
    assert all(torch.isfinite(p).all() for p in params.values())
    assert 0.9 < params["model.norm.weight"].mean() < 1.1
    down = params["model.layers.0.mlp.down_proj.weight"]
    assert abs(down.std() * down.shape[1] ** 0.5 - 1) < 0.1, "matrices scaled by 1/sqrt(fan-in)"
    slots = drawn.pool.alloc(5)
    drawn.req_pool.table[0, :5] = torch.tensor(slots, dtype=torch.int32)
    logits = drawn.run([1, 2, 3, 4, 5], list(range(5)), [5], [5], [0])
    assert logits.shape == (1, drawn.cfg.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mem_fraction_sizes_the_pool_from_free_memory(model_dirs):
    free, total = torch.cuda.mem_get_info()
    share = (total - free + 64 * 2**20) / total             # what is in use now, plus 64 MiB
    runner = ModelRunner(model_dirs["qwen3"], torch.device("cuda"), "float32", max_running=4, max_context=512,
                         mem_fraction=share, cuda_graphs=False)
    cfg = runner.cfg
    slot = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 4
    weights = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    expected = (64 * 2**20 - weights - 2 * 4 * 512 * 4) // slot
    assert abs(runner.pool.num_slots - expected) <= 0.05 * expected, (runner.pool.num_slots, expected)
