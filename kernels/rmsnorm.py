"""RMSNorm fused with the residual add a decoder layer performs before it.

    residual = x + residual                                   (rounded to the activation dtype)
    out = weight * (residual * rsqrt(mean(residual^2) + eps)) (normalised in float32, rounded, then
                                                               multiplied by the weight and rounded)

These are the rounding points of the engine's RMSNorm module, so the fused kernel changes no result
beyond the last bit. One program normalises one row, which fits in registers (hidden <= 16384).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_rmsnorm_kernel(X, Residual, Weight, Out, stride_x, stride_r, stride_o, eps,
                        N: tl.constexpr, BLOCK: tl.constexpr, HAS_RESIDUAL: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < N
    x = tl.load(X + row * stride_x + cols, mask=ok, other=0.0)
    if HAS_RESIDUAL:
        x = (x.to(tl.float32) + tl.load(Residual + row * stride_r + cols, mask=ok, other=0.0).to(tl.float32))
        x = x.to(Out.dtype.element_ty)
        tl.store(Residual + row * stride_r + cols, x, mask=ok)
    h = x.to(tl.float32)
    h = h * tl.rsqrt(tl.sum(h * h, 0) / N + eps)
    w = tl.load(Weight + cols, mask=ok, other=0.0).to(tl.float32)
    out = w * h.to(Out.dtype.element_ty).to(tl.float32)
    tl.store(Out + row * stride_o + cols, out, mask=ok)


def add_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """x: [rows, hidden]; weight: [hidden]. With `residual` ([rows, hidden], x's dtype), adds x into it
    in place and normalises the sum; returns the normalised rows, in x's dtype."""
    rows, hidden = x.shape
    assert weight.shape == (hidden,) and x.stride(1) == 1 and weight.stride(0) == 1
    assert hidden <= 16384, "one row per program keeps the whole row in registers"
    out = torch.empty_like(x)
    if residual is not None:
        assert residual.shape == x.shape and residual.dtype == x.dtype and residual.stride(1) == 1
    if rows == 0:
        return out
    block = triton.next_power_of_2(hidden)
    _add_rmsnorm_kernel[(rows,)](
        x, residual if residual is not None else x, weight, out,
        x.stride(0), residual.stride(0) if residual is not None else 0, out.stride(0), eps,
        N=hidden, BLOCK=block, HAS_RESIDUAL=residual is not None,
        num_warps=min(16, max(1, block // 256)),
    )
    return out


def add_rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    residual: torch.Tensor | None = None) -> torch.Tensor:
    """The same in torch, in float32 between the rounding points; updates `residual` in place."""
    if residual is not None:
        residual.copy_((x.float() + residual.float()).to(x.dtype))
        x = residual
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * h.to(x.dtype).float()).to(x.dtype)
