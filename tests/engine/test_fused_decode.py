"""A one-sequence decode through fused weight reads (models.fused_decode) gives the general path's logits
and writes the same K/V, for each fusable family variant (plain, q/k/v bias (Qwen2), sliding window); families it
cannot serve (per-head q/k norm) keep the general path. Under the interpreter on a CPU in float32; on a
GPU also in bf16 and replayed from a CUDA graph."""
from __future__ import annotations

import random
from importlib.util import find_spec

import pytest
import torch

from gateway.engine.runner import ModelRunner

pytestmark = pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"


def decode_three(path, dtype: str, fused: bool, graphs: bool = False):
    """Logits of three decode steps after a 9-token prompt, and the pool's K/V afterwards."""
    runner = ModelRunner(path, torch.device(DEVICE), dtype, kv_slots=64, max_running=2, max_context=64,
                         attention="triton", cuda_graphs=graphs and ON_GPU)
    runner.model.model.fused_decode = fused and runner.model.model.fused_decode
    rng = random.Random(3)
    prompt = [rng.randrange(1000) for _ in range(9)]
    row = runner.req_pool.alloc()
    runner.req_pool.table[row, :12] = torch.tensor(runner.pool.alloc(12), dtype=torch.int32)
    runner.run(prompt, list(range(9)), [9], [9], [row])
    logits = [runner.run([rng.randrange(1000)], [9 + i], [10 + i], [1], [row]) for i in range(3)]
    return torch.cat(logits), runner.pool.k.clone(), runner.pool.v.clone()


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral"])
def test_fused_decode_gives_the_general_paths_logits(model_dirs, name, monkeypatch):
    import kernels.common
    import kernels.gemv
    calls = []
    original = kernels.gemv.norm_gemv_rope_store
    monkeypatch.setattr(kernels.gemv, "norm_gemv_rope_store", lambda *a, **k: calls.append(1) or original(*a, **k))
    dtypes = [("float32", 1e-4)] + ([("bfloat16", 6e-2)] if ON_GPU else [])
    for dtype, tol in dtypes:
        calls.clear()
        logits, k, v = decode_three(model_dirs[name], dtype, fused=True)
        assert len(calls) == 3 * 2, "each decode step took the fused path in both layers"
        expected, k_ref, v_ref = decode_three(model_dirs[name], dtype, fused=False)
        assert len(calls) == 6, "the general path does not"
        torch.testing.assert_close(logits, expected, atol=tol, rtol=tol)
        torch.testing.assert_close(k, k_ref, atol=tol, rtol=tol)
        torch.testing.assert_close(v, v_ref, atol=tol, rtol=tol)
        if ON_GPU:
            replayed, _, _ = decode_three(model_dirs[name], dtype, fused=True, graphs=True)
            torch.testing.assert_close(replayed, logits, atol=tol, rtol=tol)
            # Launched as programmatic dependents (sm_90) or plainly: the same arithmetic, bit for bit.
            monkeypatch.setattr(kernels.common, "USE_PDL", False)
            plain, _, _ = decode_three(model_dirs[name], dtype, fused=True, graphs=True)
            monkeypatch.setattr(kernels.common, "USE_PDL", True)
            assert torch.equal(plain, replayed)


def test_per_head_qk_norm_keeps_the_general_path(model_dirs):
    runner = ModelRunner(model_dirs["qwen3"], torch.device("cpu"), "float32", kv_slots=16, max_running=1,
                         max_context=16, attention="torch")
    assert runner.model.model.fused_decode is False
