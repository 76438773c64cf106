"""The plain-torch reference backend: exact, sequence by sequence, in float32.

Every faster backend is tested against this one; it reads K/V only through slot ids, so it proves
the slot indirection the radix cache relies on.
"""
from __future__ import annotations

import torch

from gateway.engine.attention.base import AttentionBackend, AttentionMetadata
from gateway.engine.kv_pool import KVPool


class TorchAttention(AttentionBackend):
    def __init__(self, pool: KVPool):
        self.pool = pool
        self.meta: AttentionMetadata | None = None

    def prepare(self, meta: AttentionMetadata) -> None:
        self.meta = meta

    def forward(self, q, k, v, layer, scale, window=None):
        meta = self.meta
        assert meta is not None and q.shape[0] == sum(meta.extend_lens_cpu), "prepare() the batch first"
        self.pool.store(layer, meta.out_slots, k, v)
        out = torch.empty_like(q)
        group = q.shape[1] // k.shape[1]
        start = 0
        for i, (seq_len, ext) in enumerate(zip(meta.seq_lens_cpu, meta.extend_lens_cpu)):
            slots = meta.token_table[i, :seq_len].long()
            keys = self.pool.k[layer, slots].float().repeat_interleave(group, dim=1)     # [S, H, D]
            values = self.pool.v[layer, slots].float().repeat_interleave(group, dim=1)
            query = q[start:start + ext].float()                                         # [E, H, D]
            scores = torch.einsum("ehd,shd->hes", query, keys) * scale
            q_pos = torch.arange(seq_len - ext, seq_len, device=q.device)[:, None]
            k_pos = torch.arange(seq_len, device=q.device)[None, :]
            visible = k_pos <= q_pos
            if window is not None:
                visible &= k_pos > q_pos - window
            scores = scores.masked_fill(~visible, float("-inf"))
            out[start:start + ext] = torch.einsum("hes,shd->ehd", scores.softmax(-1), values).to(q.dtype)
            start += ext
        return out
