"""Small layers every family shares: RMSNorm (with the residual add fused in), SiLU-and-mul, RoPE
(fused for q and k on CUDA)."""
from __future__ import annotations

import functools
import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def triton_kernel(module: str, name: str):
    """kernels.<module>.<name>, or None where triton does not import (the torch path serves)."""
    try:
        return getattr(importlib.import_module(f"kernels.{module}"), name)
    except ImportError:
        return None


class RMSNorm(nn.Module):
    """RMSNorm computed in float32, as the reference does. With `residual`, first adds it and also
    returns the sum, so a decoder layer keeps one running residual stream. On a CUDA device with triton,
    rows of hidden states go through one Triton kernel (kernels.rmsnorm) that rounds at the same points
    and adds into `residual` in place, where torch would launch about nine kernels."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim), requires_grad=False)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        fused = triton_kernel("rmsnorm", "add_rmsnorm") if x.is_cuda and x.dim() == 2 else None
        if fused is not None:
            out = fused(x, self.weight, self.eps, residual)
            return out if residual is None else (out, residual)
        if residual is None:
            return self._norm(x)
        x = x + residual
        return self._norm(x), x


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of a fused gate/up output; one kernel on CUDA (kernels.activation, same rounding)."""
    fused = triton_kernel("activation", "silu_and_mul") if gate_up.is_cuda and gate_up.dim() == 2 else None
    if fused is not None:
        return fused(gate_up)
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None) -> torch.Tensor:
    """Inverse frequencies for rotary embeddings, with 'linear' or Llama-3.1 'llama3' scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    factor = float(scaling["factor"])
    if scaling["rope_type"] == "linear":
        return inv_freq / factor
    # llama3: long wavelengths divided by factor, short ones kept, a smooth blend between.
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_ctx = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < old_ctx / high) & ~(wavelen > old_ctx / low)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """cos/sin for given positions, computed in float32 from the inverse frequencies (exact for any
    position, no table to size), applied neox-style (rotate halves) as HF checkpoints expect."""

    def __init__(self, head_dim: int, theta: float, scaling: dict | None):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta, scaling), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def rotate_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k rotated: on a CUDA device with triton in place by one kernel (kernels.rope, same
    rounding), else by `apply_rotary`."""
    fused = triton_kernel("rope", "rope_qk") if q.is_cuda else None
    if fused is None:
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    fused(q, k, cos, sin)
    return q, k


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [tokens, heads, head_dim]; cos/sin: [tokens, head_dim] in float32."""
    cos, sin = cos.to(x.dtype)[:, None, :], sin.to(x.dtype)[:, None, :]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
