"""The kernels serve the engine's attention contract: on the same pool and AttentionMetadata, storing
with kv_store then attending with extend_attention (or decode_attention) gives what TorchAttention,
the engine's reference backend, gives. The kernels package never imports gateway; this test does."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from gateway.engine.attention import AttentionMetadata, TorchAttention
from gateway.engine.kv_pool import KVPool
from kernels.decode_attention import decode_attention
from kernels.extend_attention import extend_attention
from kernels.kv_store import kv_store
from tests.kernels.slots import assert_close

LAYER = 1


def attend_both(device, gen, seq_lens, extend_lens, window, dtype=torch.float32, heads=4, kv_heads=2, dim=80):
    pool = KVPool(2, 600, kv_heads, dim, dtype, device)
    pool.k.normal_()
    pool.v.normal_()
    table = torch.zeros(len(seq_lens), max(seq_lens), dtype=torch.int32)
    for i, n in enumerate(seq_lens):
        slots = pool.alloc(n)
        table[i, :n] = torch.tensor(slots)[torch.randperm(n, generator=gen)]
    meta = AttentionMetadata.build(seq_lens, extend_lens, table.to(device))
    tokens = sum(extend_lens)
    q = torch.randn(tokens, heads, dim, generator=gen).to(device, dtype)
    k, v = (torch.randn(tokens, kv_heads, dim, generator=gen).to(device, dtype) for _ in range(2))
    ours_k, ours_v = pool.k[LAYER].clone(), pool.v[LAYER].clone()

    backend = TorchAttention(pool)
    backend.prepare(meta)
    expected = backend.forward(q, k, v, LAYER, dim ** -0.5, window)

    kv_store(k, v, ours_k, ours_v, meta.out_slots)
    assert torch.equal(ours_k, pool.k[LAYER]) and torch.equal(ours_v, pool.v[LAYER])
    if meta.is_decode:
        got = decode_attention(q, ours_k, ours_v, meta.token_table, meta.seq_lens, dim ** -0.5, window)
    else:
        got = extend_attention(q, ours_k, ours_v, meta.token_table, meta.seq_lens, meta.extend_lens,
                               dim ** -0.5, window, max_extend=max(meta.extend_lens_cpu))
    return got, expected


@pytest.mark.parametrize("window", [None, 30])
def test_extend_matches_torch_backend(device, gen, window):
    got, expected = attend_both(device, gen, [5, 120, 60], [5, 20, 1], window)
    assert_close(got, expected)


@pytest.mark.parametrize("window", [None, 30])
def test_decode_matches_torch_backend(device, gen, window):
    got, expected = attend_both(device, gen, [1, 120, 300], [1, 1, 1], window)
    assert_close(got, expected)
