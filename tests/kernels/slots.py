"""Pools and slot tables for kernel tests: slots shuffled across the pool, stale table entries past each
sequence's length, one layer's view of a multi-layer pool, queries as strided views of a fused QKV."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

LAYERS = 2
ON_GPU = torch.cuda.is_available()
GPU_ONLY = [pytest.mark.gpu, pytest.mark.skipif(not ON_GPU, reason="too large for the interpreter; needs CUDA")]
# Triton's interpreter (3.9) rounds float32 -> bfloat16 casts toward zero, where a GPU rounds to nearest
# even; results that a kernel casts to bf16 are exact only on a GPU, within a few bf16 steps otherwise.
BF16_CASTS_EXACT = ON_GPU


def assert_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Kernel output against a float32 reference: bf16 allows its own rounding (attention probabilities
    are rounded to bf16 before multiplying V, as in every fast kernel); float32 allows the GPU's
    three-pass TF32 products and approximate exp2."""
    tol = 2e-2 if out.dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def kv_layer(num_slots: int, kv_heads: int, dim: int, dtype: torch.dtype, device: str,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 1 of a random [LAYERS, slots, kv_heads, dim] K and V pool (slot 0 random too, so a read of
    a padding slot would show)."""
    shape = (LAYERS, num_slots, kv_heads, dim)
    k = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    v = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    return k[1], v[1]


def slot_table(lens: list[int], num_slots: int, device: str, gen: torch.Generator,
               width: int | None = None) -> torch.Tensor:
    """[len(lens), width] int32: distinct shuffled slots 1.. for each sequence's tokens, then stale ids."""
    width = width or max(lens, default=1) + 7
    assert sum(lens) < num_slots
    perm = (torch.randperm(num_slots - 1, generator=gen) + 1).int()
    table = torch.randint(1, num_slots, (len(lens), width), generator=gen, dtype=torch.int32)
    used = 0
    for b, n in enumerate(lens):
        table[b, :n] = perm[used:used + n]
        used += n
    return table.to(device)


def query(tokens: int, heads: int, kv_heads: int, dim: int, dtype: torch.dtype, device: str,
          gen: torch.Generator) -> torch.Tensor:
    """[tokens, heads, dim] as the q part of a fused QKV projection output (rows strided)."""
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim, generator=gen).to(device=device, dtype=dtype)
    return qkv[:, :heads * dim].view(tokens, heads, dim)


def launch_all() -> list[tuple[str, Callable[[], object]]]:
    """One call per kernel configuration worth compiling (for tests.kernels.sm_compile), on CPU tensors."""
    from kernels.decode_attention import decode_attention
    from kernels.extend_attention import extend_attention
    from kernels.kv_store import kv_store
    from kernels.rmsnorm import add_rmsnorm

    gen = torch.Generator().manual_seed(0)
    calls = []
    shapes = ((32, 8, 64, None), (32, 8, 128, None), (28, 4, 80, 4096), (64, 1, 128, None))
    for dtype in (torch.bfloat16, torch.float32):
        # float32 (the exactness path) shares its tiles across head dims; two shapes cover it.
        for heads, kv_heads, dim, window in shapes if dtype == torch.bfloat16 else shapes[1:3]:
            name = f"{str(dtype)[6:]} h{heads}/{kv_heads} d{dim}{' w' if window else ''}"
            k, v = kv_layer(64, kv_heads, dim, dtype, "cpu", gen)
            lens = [5, 40]
            table, seq = slot_table(lens, 64, "cpu", gen), torch.tensor(lens, dtype=torch.int32)
            q = query(2, heads, kv_heads, dim, dtype, "cpu", gen)
            calls.append((f"decode {name}",
                          lambda q=q, k=k, v=v, t=table, s=seq, w=window: decode_attention(q, k, v, t, s, 0.1, w)))
            qe = query(sum(lens), heads, kv_heads, dim, dtype, "cpu", gen)
            calls.append((f"extend {name}",
                          lambda q=qe, k=k, v=v, t=table, s=seq, w=window: extend_attention(
                              q, k, v, t, s, s, 0.1, w, max_extend=40)))
            if kv_heads > 1:
                calls.append((f"kv_store {name}", lambda k=k, v=v: kv_store(k[:3], v[:3], k, v, torch.arange(3))))
        for hidden in (2048, 4096):
            x = torch.randn(3, hidden, dtype=dtype)
            calls.append((f"add_rmsnorm {str(dtype)[6:]} {hidden}",
                          lambda x=x: add_rmsnorm(x, x[0], 1e-6, residual=x.clone())))
    calls += gemv_launches()
    from kernels.bitmask import apply_token_bitmask
    calls.append(("bitmask", lambda: apply_token_bitmask(torch.zeros(2, 5000), torch.full((2, 157), -1, dtype=torch.int32))))
    return calls


def gemv_launches() -> list[tuple[str, Callable[[], object]]]:
    """The batch-1 decode products of the 1B shape (kernels.gemv), each epilogue once, in bf16."""
    from kernels.gemv import gemv_add_residual, norm_gemv_rope_store, norm_gemv_silu_mul
    bf = dict(dtype=torch.bfloat16)
    res, nw, cache = torch.randn(1, 2048, **bf), torch.ones(2048, **bf), torch.zeros(4, 8, 64, **bf)
    return [
        ("gemv qkv rope store", lambda: norm_gemv_rope_store(
            res, nw, 1e-5, torch.randn(48 * 64, 2048, **bf), None, torch.tensor([3]), torch.rand(32), cache, cache,
            torch.tensor([1]), 32, 8)),
        ("gemv gate_up silu", lambda: norm_gemv_silu_mul(res, nw, 1e-5, torch.randn(2 * 8192, 2048, **bf))),
        ("gemv down residual", lambda: gemv_add_residual(torch.randn(1, 8192, **bf), torch.randn(2048, 8192, **bf),
                                                         res)),
        ("gemv o residual, early launch", lambda: gemv_add_residual(
            torch.randn(1, 2048, **bf), torch.randn(2048, 2048, **bf), res, launch_next_early=True)),
    ]
