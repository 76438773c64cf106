"""Plain-torch references of the attention kernels: the specifications the Triton kernels are tested
against, importable without triton (the engine's torch backend runs extend_attention_ref itself)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

Lengths = torch.Tensor | Sequence[int]


def _host(lengths: Lengths) -> list[int]:
    return lengths.tolist() if isinstance(lengths, torch.Tensor) else list(lengths)


def decode_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         token_table: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                         window: int | None = None) -> torch.Tensor:
    """Decode attention (one query per sequence) in float32; returns float32 [B, H, D]."""
    batch, heads, dim = q.shape
    group = heads // k_cache.shape[1]
    out = torch.zeros((batch, heads, dim), dtype=torch.float32, device=q.device)
    for b, seq_len in enumerate(seq_lens.tolist()):
        start = 0 if window is None else max(0, seq_len - window)
        if seq_len == 0:
            continue
        slots = token_table[b, start:seq_len].long()
        keys = k_cache[slots].float().repeat_interleave(group, dim=1)          # [S, H, D]
        values = v_cache[slots].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,shd->hs", q[b].float(), keys) * scale
        out[b] = torch.einsum("hs,shd->hd", scores.softmax(-1), values)
    return out


def extend_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         token_table: torch.Tensor, seq_lens: Lengths, extend_lens: Lengths,
                         scale: float, window: int | None = None) -> torch.Tensor:
    """Extend attention in float32, sequence by sequence; returns float32 [tokens, H, D]. It is also
    the engine's torch backend (TorchAttention), which passes host lists to avoid device syncs."""
    group = q.shape[1] // k_cache.shape[1]
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    start = 0
    for b, (seq_len, ext) in enumerate(zip(_host(seq_lens), _host(extend_lens))):
        slots = token_table[b, :seq_len].long()
        keys = k_cache[slots].float().repeat_interleave(group, dim=1)           # [S, H, D]
        values = v_cache[slots].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("ehd,shd->hes", q[start:start + ext].float(), keys) * scale
        q_pos = torch.arange(seq_len - ext, seq_len, device=q.device)[:, None]
        k_pos = torch.arange(seq_len, device=q.device)[None, :]
        visible = k_pos <= q_pos
        if window is not None:
            visible &= k_pos > q_pos - window
        scores = scores.masked_fill(~visible, float("-inf"))
        out[start:start + ext] = torch.einsum("hes,shd->ehd", scores.softmax(-1), values)
        start += ext
    return out
