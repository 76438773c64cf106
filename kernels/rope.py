"""Rotary position embedding (neox style: rotate halves) of q and k together, in place.

    x[:half] <- x[:half] * cos - x[half:] * sin
    x[half:] <- x[half:] * cos + x[:half] * sin      (cos and sin of the token's position)

The rounding points are those of the torch reference (`rope_qk_ref`, as the engine's torch path
`models.layers.apply_rotary`, in the activation dtype): each product is rounded to that dtype, then their sum. So the
kernel changes no result, and replaces the ~10 elementwise kernels the reference launches per layer
(slices, negation, concatenation, products, sum; for q and for k) by one, which is most of what a
batch-1 decode step spends outside its matrix products. One program rotates every head of one token.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(X, t, stride_t, stride_h, c, s, H: tl.constexpr, HALF: tl.constexpr,
                  H_P2: tl.constexpr, HALF_P2: tl.constexpr):
    h = tl.arange(0, H_P2)[:, None]
    d = tl.arange(0, HALF_P2)[None, :]
    ok = (h < H) & (d < HALF)
    lo_ptr = X + t * stride_t + h * stride_h + d
    lo = tl.load(lo_ptr, mask=ok)
    hi = tl.load(lo_ptr + HALF, mask=ok)
    dtype = lo.dtype
    lo32, hi32 = lo.to(tl.float32), hi.to(tl.float32)
    new_lo = (lo32 * c).to(dtype).to(tl.float32) - (hi32 * s).to(dtype).to(tl.float32)
    new_hi = (hi32 * c).to(dtype).to(tl.float32) + (lo32 * s).to(dtype).to(tl.float32)
    # In place: where the layout holds an element in several threads, none may store before all loaded.
    tl.debug_barrier()
    tl.store(lo_ptr, new_lo.to(dtype), mask=ok)
    tl.store(lo_ptr + HALF, new_hi.to(dtype), mask=ok)


@triton.jit
def _rope_kernel(Q, K, Cos, Sin, stride_qt, stride_qh, stride_kt, stride_kh, stride_ct, stride_st,
                 QH: tl.constexpr, KH: tl.constexpr, HALF: tl.constexpr,
                 QH_P2: tl.constexpr, KH_P2: tl.constexpr, HALF_P2: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, HALF_P2)[None, :]
    c = tl.load(Cos + t * stride_ct + d, mask=d < HALF).to(tl.float32)
    s = tl.load(Sin + t * stride_st + d, mask=d < HALF).to(tl.float32)
    _rotate_heads(Q, t, stride_qt, stride_qh, c, s, QH, HALF, QH_P2, HALF_P2)
    _rotate_heads(K, t, stride_kt, stride_kh, c, s, KH, HALF, KH_P2, HALF_P2)


def rope_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """q: [tokens, QH, D], k: [tokens, KH, D] (rows may be strided views of a fused QKV output), both
    in the activation dtype; cos, sin: [tokens, D] in that dtype, their halves equal. In place."""
    tokens, q_heads, dim = q.shape
    assert k.shape[0] == tokens and k.shape[2] == dim and dim % 2 == 0 and k.dtype == q.dtype
    assert cos.shape == sin.shape == (tokens, dim) and cos.dtype == sin.dtype == q.dtype
    assert q.stride(2) == k.stride(2) == cos.stride(1) == sin.stride(1) == 1
    if tokens == 0:
        return
    half = dim // 2
    _rope_kernel[(tokens,)](
        q, k, cos, sin, q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0), sin.stride(0),
        QH=q_heads, KH=k.shape[1], HALF=half, QH_P2=triton.next_power_of_2(q_heads),
        KH_P2=triton.next_power_of_2(k.shape[1]), HALF_P2=triton.next_power_of_2(half),
        num_warps=1,        # several warps compiled the bf16 roundings away (results 1 ulp off)
    )


def rope_qk_ref(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """The same in plain torch, in the activation dtype (the engine's torch path, models.layers)."""
    for x in (q, k):
        half = x.shape[-1] // 2
        c, s = cos[:, None, :], sin[:, None, :]
        x.copy_(x * c + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * s)
