"""The Triton backend: kernels.kv_store, then kernels.decode_attention when every sequence extends by one
token, else kernels.extend_attention; all over the same KVPool and slot tables as the torch reference.

A decode forward reads only the metadata's device tensors and launches grids that depend only on the
batch size and the table's width (the split count is computed on the device), so it never waits on the
host and a captured decode stays valid for any lengths: `supports_graphs`. A decode whose metadata names
groups of sequences sharing a prefix reads each prefix once per group (kernels.shared_prefix): as device
tensors rewritten in place when captured (`meta.shared_prefixes`), else built here from the host groups.
"""
from __future__ import annotations

from gateway.engine.attention.base import AttentionBackend, AttentionMetadata
from gateway.engine.kv_pool import KVPool
from kernels.decode_attention import decode_attention
from kernels.extend_attention import extend_attention
from kernels.kv_store import kv_store
from kernels.shared_prefix import SharedPrefixes


class TritonAttention(AttentionBackend):
    supports_graphs = True
    supports_shared_prefixes = True

    def __init__(self, pool: KVPool):
        self.pool = pool
        self.meta: AttentionMetadata | None = None
        self.decode = False
        self.max_extend = 0
        self.shared: SharedPrefixes | None = None

    def prepare(self, meta: AttentionMetadata) -> None:
        self.meta = meta
        self.decode = meta.is_decode
        self.max_extend = max(meta.extend_lens_cpu, default=0)     # sizes the extend grid, known on the host
        self.shared = None                  # the groups as device tensors, built by the first layer

    def forward(self, q, k, v, layer, scale, window=None):
        meta = self.meta
        assert meta is not None and q.shape[0] == len(meta.out_slots), "prepare() the batch first"
        k_cache, v_cache = self.pool.k[layer], self.pool.v[layer]
        kv_store(k, v, k_cache, v_cache, meta.out_slots)
        if self.decode:
            return self.attend_stored(q, layer, scale, window)
        return extend_attention(q, k_cache, v_cache, meta.token_table, meta.seq_lens, meta.extend_lens, scale,
                                window, max_extend=self.max_extend)

    def stored_decode_target(self, layer):
        return (self.pool.k[layer], self.pool.v[layer], self.meta.out_slots) if self.decode else None

    def attend_stored(self, q, layer, scale, window=None):
        meta = self.meta
        assert self.decode and q.shape[0] == len(meta.out_slots), "a prepared decode"
        k_cache, v_cache = self.pool.k[layer], self.pool.v[layer]
        shared = meta.shared_prefixes if window is None else None
        if shared is None and meta.shared and window is None:
            if self.shared is None:
                self.shared = SharedPrefixes.build(q.shape[0], meta.shared, q.shape[1] // k_cache.shape[1],
                                                   q.dtype, q.device)
            shared = self.shared
        return decode_attention(q, k_cache, v_cache, meta.token_table, meta.seq_lens, scale, window, shared=shared)
