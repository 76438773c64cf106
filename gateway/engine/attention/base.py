"""What an attention backend needs to know about one forward pass, and the interface it serves."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from gateway.engine.transfer import to_device


@dataclass(slots=True)
class AttentionMetadata:
    """One forward over a batch of sequences, each extended by `extend_lens[i]` new tokens.

    The new tokens are packed in sequence order; sequence i's tokens (cached + new) occupy the
    slots `token_table[i, :seq_lens[i]]`, the last `extend_lens[i]` of which receive the new K/V.
    A decode step is the case extend_lens == 1 for every sequence.
    """
    seq_lens: torch.Tensor      # [batch] int32, cached + new tokens
    extend_lens: torch.Tensor   # [batch] int32, new tokens
    token_table: torch.Tensor   # [batch, >= max seq_len] int32 slot ids (rows of req_to_token)
    out_slots: torch.Tensor     # [sum extend_lens] int64, where each new token's K/V goes
    seq_lens_cpu: list[int]
    extend_lens_cpu: list[int]
    shared: list[tuple[list[int], int]] | None = None    # decode: sequences sharing a prefix (prefix_groups)
    shared_prefixes: Any = None     # the same as a backend's device tensors, filled in place (CUDA graphs)

    @property
    def is_decode(self) -> bool:
        return max(self.extend_lens_cpu, default=0) == 1

    @classmethod
    def build(cls, seq_lens: list[int], extend_lens: list[int], token_table: torch.Tensor) -> "AttentionMetadata":
        assert len(seq_lens) == len(extend_lens) == token_table.shape[0]
        assert all(0 < e <= s <= token_table.shape[1] for s, e in zip(seq_lens, extend_lens)), \
            "each sequence extends by at least one token and fits its table row"
        device = token_table.device
        seq = to_device(seq_lens, torch.int64, device)
        ext = to_device(extend_lens, torch.int64, device)
        rows = torch.arange(len(seq_lens), device=device).repeat_interleave(ext, output_size=sum(extend_lens))
        first_new = (seq - ext).repeat_interleave(ext, output_size=sum(extend_lens))
        offset = torch.arange(sum(extend_lens), device=device) - (ext.cumsum(0) - ext).repeat_interleave(
            ext, output_size=sum(extend_lens))
        return cls(
            seq_lens=seq.int(),
            extend_lens=ext.int(),
            token_table=token_table,
            out_slots=token_table[rows, first_new + offset].long(),
            seq_lens_cpu=list(seq_lens),
            extend_lens_cpu=list(extend_lens),
        )


class AttentionBackend(ABC):
    """Stores new K/V into the pool and attends each new query to its sequence's slots."""

    # A backend that supports graphs reads only the metadata's device tensors in a decode forward and
    # launches work whose shape depends only on the batch size, so a decode captured once in a CUDA
    # graph replays correctly for any lengths written into the same tensors (see engine.cuda_graphs).
    supports_graphs: bool = False
    # A backend that supports shared prefixes attends `meta.shared` groups' prefixes once per group.
    supports_shared_prefixes: bool = False

    def stored_decode_target(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(k_cache, v_cache, out_slots) of `layer` when this forward is a decode whose new K/V a fused
        kernel may store itself; None where the backend must store it. A backend that returns a target
        also has `attend_stored(q, layer, scale, window)`: `forward` without the store."""
        return None

    @abstractmethod
    def prepare(self, meta: AttentionMetadata) -> None:
        """Called once per forward, before any layer runs."""

    @abstractmethod
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int,
                scale: float, window: int | None = None) -> torch.Tensor:
        """q: [tokens, heads, head_dim]; k, v: [tokens, kv_heads, head_dim] for the new tokens.
        Returns [tokens, heads, head_dim]: causal attention over cached + new keys, limited to the
        last `window` positions when given (Mistral-style sliding window)."""
