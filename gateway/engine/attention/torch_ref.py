"""The plain-torch reference backend: exact, sequence by sequence, in float32.

Every faster backend is tested against this one; it reads K/V only through slot ids, so it proves
the slot indirection the radix cache relies on.
"""
from __future__ import annotations

from gateway.engine.attention.base import AttentionBackend, AttentionMetadata
from gateway.engine.kv_pool import KVPool
from kernels.attention_ref import extend_attention_ref


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
        return extend_attention_ref(q, self.pool.k[layer], self.pool.v[layer], meta.token_table, meta.seq_lens_cpu,
                                    meta.extend_lens_cpu, scale, window).to(q.dtype)
