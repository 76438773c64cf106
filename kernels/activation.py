"""SiLU-and-mul of a fused gate/up projection: out = silu(x[:, :N]) * x[:, N:].

Rounding points of the torch reference (`silu_and_mul_ref`, the engine's torch path): silu in float32
rounded to the activation dtype, then the product rounded (Triton's exp may differ from torch's in the
last float32 bit, so a result may sit one rounding away). One kernel where torch launches two
(and writes the silu output to memory between them).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _silu_and_mul_kernel(X, Out, stride_x, stride_o, N, BLOCK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < N
    gate = tl.load(X + t * stride_x + cols, mask=ok, other=0.0)
    up = tl.load(X + t * stride_x + N + cols, mask=ok, other=0.0)
    g = gate.to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(gate.dtype)
    tl.store(Out + t * stride_o + cols, (silu.to(tl.float32) * up.to(tl.float32)).to(gate.dtype), mask=ok)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x: [tokens, 2N] (gate then up); returns [tokens, N] in x's dtype."""
    tokens, width = x.shape
    assert width % 2 == 0 and x.stride(1) == 1
    n = width // 2
    out = torch.empty((tokens, n), dtype=x.dtype, device=x.device)
    if tokens:
        _silu_and_mul_kernel[(tokens, triton.cdiv(n, BLOCK))](x, out, x.stride(0), out.stride(0), n, BLOCK=BLOCK,
                                                              num_warps=4)
    return out


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up
