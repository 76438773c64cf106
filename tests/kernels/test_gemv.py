"""Batch-1 decode products with their fused prologue/epilogue (kernels.gemv) against the unfused modules'
references, on odd shapes: within a bf16 step on a GPU (only the products' summation order differs).
The interpreter truncates bf16 casts where a GPU rounds, and those errors compound through a norm, a
product and an epilogue, so there bf16 is checked loosely and float32 checks the logic."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from gateway.engine.models.layers import rope_inv_freq
from tests.kernels.slots import BF16_CASTS_EXACT
from kernels.gemv import (gemv_add_residual, gemv_add_residual_ref, gemv, gemv_ref, norm_gemv_rope_store,
                          norm_gemv_rope_store_ref, norm_gemv_silu_mul, norm_gemv_silu_mul_ref)

BF16 = dict(rtol=2 ** -6, atol=2 ** -6)      # a bf16 rounding apart


def _tol(dtype):
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=1e-5)
    return BF16 if BF16_CASTS_EXACT else dict(rtol=2 ** -4, atol=2 ** -4)


def _rand(gen, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("n,k", [(64, 96), (200, 1000), (48, 2048)])
def test_gemv_add_residual(device, gen, dtype, n, k):
    x = _rand(gen, 1, k).to(device=device, dtype=dtype)
    w = _rand(gen, n, k, scale=k ** -0.5).to(device=device, dtype=dtype)
    residual = _rand(gen, 1, n).to(device=device, dtype=dtype)
    expected = residual.clone()
    gemv_add_residual_ref(x, w, expected)
    gemv_add_residual(x, w, residual)
    torch.testing.assert_close(residual, expected, **_tol(dtype))


def test_a_product_launched_early_still_reads_what_the_one_before_wrote(device, gen):
    """o then gate/up, as a layer runs them: with `launch_next_early` the gate/up kernel may start before
    the o product ends (PDL on sm_90), yet must normalise the residual the o product left."""
    bf = dict(device=device, dtype=torch.bfloat16)
    x, residual = _rand(gen, 1, 2048).to(**bf), _rand(gen, 1, 512).to(**bf)
    w_o, w_gu = _rand(gen, 512, 2048, scale=0.05).to(**bf), _rand(gen, 2 * 1024, 512, scale=0.05).to(**bf)
    norm_w = torch.ones(512, **bf)
    expected = residual.clone()
    gemv_add_residual_ref(x, w_o, expected)
    gemv_add_residual(x, w_o, residual, launch_next_early=True)
    act = norm_gemv_silu_mul(residual, norm_w, 1e-5, w_gu)
    torch.testing.assert_close(residual, expected, **_tol(torch.bfloat16))
    torch.testing.assert_close(act, norm_gemv_silu_mul_ref(residual, norm_w, 1e-5, w_gu), **_tol(torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("inter,k", [(40, 64), (300, 520)])
def test_norm_gemv_silu_mul(device, gen, dtype, inter, k):
    residual = _rand(gen, 1, k, scale=3.0).to(device=device, dtype=dtype)
    norm_w = (1 + 0.1 * _rand(gen, k)).to(device=device, dtype=dtype)
    w = _rand(gen, 2 * inter, k, scale=2 * k ** -0.5).to(device=device, dtype=dtype)
    before = residual.clone()
    out = norm_gemv_silu_mul(residual, norm_w, 1e-5, w)
    torch.testing.assert_close(out, norm_gemv_silu_mul_ref(residual, norm_w, 1e-5, w), **_tol(dtype))
    assert torch.equal(residual, before), "the norm reads the residual stream, never writes it"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("n,k", [(90, 64), (1002, 200)])
@pytest.mark.parametrize("normed", [False, True], ids=["", "norm"])
def test_gemv(device, gen, dtype, n, k, normed):
    """The logits of one token, with or without the final norm before (1002: an odd row count per set)."""
    x = _rand(gen, 1, k, scale=3.0).to(device=device, dtype=dtype)
    norm = ((1 + 0.1 * _rand(gen, k)).to(device=device, dtype=dtype), 1e-6) if normed else None
    w = _rand(gen, n, k, scale=k ** -0.5).to(device=device, dtype=dtype)
    torch.testing.assert_close(gemv(x, w, norm), gemv_ref(x, w, norm), **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_gemv_into_a_float32_buffer_holds_the_same_values(device, gen, dtype):
    """The logits of a captured step go straight into its float32 buffer: the values the product gives in
    the activation dtype, widened, so a caller sees what `.float()` of the plain product would give."""
    x = _rand(gen, 1, 200, scale=3.0).to(device=device, dtype=dtype)
    norm = ((1 + 0.1 * _rand(gen, 200)).to(device=device, dtype=dtype), 1e-6)
    w = _rand(gen, 1002, 200, scale=200 ** -0.5).to(device=device, dtype=dtype)
    out = torch.full((1, 1002), float("nan"), device=device)
    assert gemv(x, w, norm, out=out) is out
    assert torch.equal(out, gemv(x, w, norm).float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("head_dim,heads,kv_heads,bias,embedded", [
    (64, 4, 4, False, False), (64, 4, 4, True, False), (80, 8, 2, False, False), (80, 8, 2, True, False),
    (128, 8, 1, False, False), (128, 8, 1, True, False), (80, 8, 2, True, True)])
def test_norm_gemv_rope_store(device, gen, dtype, head_dim, heads, kv_heads, bias, embedded):
    """embedded: the first layer's product, whose residual is the token's embedding row, looked up there."""
    k = 96
    table = _rand(gen, 50, k, scale=2.0).to(device=device, dtype=dtype)
    residual = _rand(gen, 1, k, scale=2.0).to(device=device, dtype=dtype)
    norm_w = (1 + 0.1 * _rand(gen, k)).to(device=device, dtype=dtype)
    rows = (heads + 2 * kv_heads) * head_dim
    w = _rand(gen, rows, k, scale=k ** -0.5).to(device=device, dtype=dtype)
    b = _rand(gen, rows).to(device=device, dtype=dtype) if bias else None
    inv_freq = rope_inv_freq(head_dim, 500000.0, {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    inv_freq = inv_freq.to(device)
    caches = [torch.zeros(9, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(4)]
    for position, slot, token in ((0, 3, 0), (4095, 7, 49), (131000, 1, 17)):
        positions = torch.tensor([position], device=device)
        slots = torch.tensor([slot], device=device)
        embed = (table, torch.tensor([token], device=device)) if embedded else None
        residual_ref = residual.clone()
        q = norm_gemv_rope_store(residual, norm_w, 1e-5, w, b, positions, inv_freq, caches[0], caches[1], slots,
                                 heads, kv_heads, embed)
        q_ref = norm_gemv_rope_store_ref(residual_ref, norm_w, 1e-5, w, b, positions, inv_freq, caches[2],
                                         caches[3], slots, heads, kv_heads, embed)
        assert torch.equal(residual, table[token:token + 1] if embedded else residual_ref)
        torch.testing.assert_close(q, q_ref, **_tol(dtype))
        torch.testing.assert_close(caches[0], caches[2], **_tol(dtype))     # k, rotated, at the slot only
        torch.testing.assert_close(caches[1], caches[3], **_tol(dtype))     # v
        assert caches[0][slot].abs().sum() > 0 and caches[1][slot].abs().sum() > 0
