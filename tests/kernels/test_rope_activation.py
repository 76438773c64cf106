"""Fused RoPE of q and k, and fused SiLU-and-mul, against their torch references: RoPE bit-exact
on a GPU (same rounding points), within a bf16 step under the interpreter (its casts truncate)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from gateway.engine.models.layers import RotaryEmbedding, apply_rotary
from kernels.rope import rope_qk, rope_qk_ref
from tests.kernels.slots import BF16_CASTS_EXACT


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("head_dim", [64, 80, 128])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (8, 2), (16, 2)])
def test_matches_reference_on_a_fused_qkv_output(device, gen, dtype, head_dim, heads, kv_heads):
    tokens = 7
    rotary = RotaryEmbedding(head_dim, 500000.0, {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    positions = torch.tensor([0, 1, 5, 100, 4095, 9000, 131000])
    cos, sin = (t.to(device=device, dtype=dtype) for t in rotary.to(device)(positions.to(device)))
    qkv = (2 * torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, generator=gen)).to(device=device, dtype=dtype)
    ref = qkv.clone()
    views = lambda buf: (buf[:, :heads * head_dim].view(tokens, heads, head_dim),
                         buf[:, heads * head_dim:(heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim))
    q, k = views(qkv)
    q_ref, k_ref = views(ref)
    expected_q = apply_rotary(q_ref, cos, sin)                      # the engine's torch path
    rope_qk_ref(q_ref, k_ref, cos, sin)
    assert torch.equal(q_ref, expected_q)
    rope_qk(q, k, cos, sin)
    if BF16_CASTS_EXACT or dtype == torch.float32:
        tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=0, atol=0)
    else:
        tol = dict(rtol=2 ** -6, atol=2 ** -6)
    torch.testing.assert_close(qkv, ref, **tol)                    # v, q and k: v untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("tokens,n", [(1, 8192), (3, 1000), (5, 64)])
def test_silu_and_mul_matches_reference(device, gen, dtype, tokens, n):
    from kernels.activation import silu_and_mul, silu_and_mul_ref
    x = (4 * torch.randn(tokens, 2 * n, generator=gen)).to(device=device, dtype=dtype)
    out, ref = silu_and_mul(x), silu_and_mul_ref(x)
    # Triton's exp may differ from torch's in the last float32 bit: at most one bf16 rounding apart.
    steps = 2 ** -7 if BF16_CASTS_EXACT else 2 ** -6
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == torch.float32 else dict(rtol=steps, atol=steps)
    torch.testing.assert_close(out, ref, **tol)
