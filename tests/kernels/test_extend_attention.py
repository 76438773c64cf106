"""Extend attention against its float32 reference: head dims 64/80/128, grouped-query ratios 1/4/8,
ragged extends from 1 token, prefixes from 0 to past a thousand, windows, shuffled slots."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.decode_attention import decode_attention
from kernels.extend_attention import extend_attention, extend_attention_ref
from tests.kernels.slots import ON_GPU, assert_close, kv_layer, query, slot_table

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.bfloat16, id="bf16")]
KV_HEADS = 8 if ON_GPU else 1
# (cached prefix, new tokens) per sequence
RAGGED = [(0, 1), (0, 33), (1000, 3), (5, 40), (37, 1)] + (
    [(3000, 300), (0, 1000), (100, 257), (2047, 129), (1, 130)] if ON_GPU else [])


def setup(device, gen, dtype, seqs, group, dim, kv_heads=KV_HEADS):
    seq_lens = [p + e for p, e in seqs]
    num_slots = sum(seq_lens) + 500
    k, v = kv_layer(num_slots, kv_heads, dim, dtype, device, gen)
    table = slot_table(seq_lens, num_slots, device, gen)
    q = query(sum(e for _, e in seqs), group * kv_heads, kv_heads, dim, dtype, device, gen)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    ext = torch.tensor([e for _, e in seqs], dtype=torch.int32, device=device)
    return q, k, v, table, lens, ext


def run(device, gen, dtype, seqs, group, dim, window=None, **kw):
    q, k, v, table, lens, ext = setup(device, gen, dtype, seqs, group, dim, **kw)
    out = extend_attention(q, k, v, table, lens, ext, dim ** -0.5, window, max_extend=max(e for _, e in seqs))
    return out, extend_attention_ref(q, k, v, table, lens, ext, dim ** -0.5, window)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [64, 80, 128])
@pytest.mark.parametrize("group", [1, 4, 8])
def test_matches_reference(device, gen, dtype, dim, group):
    out, ref = run(device, gen, dtype, RAGGED, group, dim)
    assert out.dtype == dtype and out.shape == ref.shape
    assert_close(out, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [1, 16, 200])
def test_sliding_window(device, gen, dtype, window):
    out, ref = run(device, gen, dtype, [(0, 40), (1000, 3), (150, 20)], group=4, dim=64, window=window,
                   kv_heads=2)
    assert_close(out, ref)


def test_grid_sized_from_the_device_without_max_extend(device, gen):
    q, k, v, table, lens, ext = setup(device, gen, torch.bfloat16, [(3, 20), (0, 150)], 4, 80)
    out = extend_attention(q, k, v, table, lens, ext, 0.1)
    assert_close(out, extend_attention_ref(q, k, v, table, lens, ext, 0.1))


@pytest.mark.parametrize("window", [None, 100])
def test_one_new_token_each_is_decode(device, gen, window):
    q, k, v, table, lens, ext = setup(device, gen, torch.float32, [(0, 1), (400, 1), (63, 1)], 4, 128,
                                      kv_heads=2)
    ours = extend_attention(q, k, v, table, lens, ext, 0.1, window, max_extend=1)
    torch.testing.assert_close(ours, decode_attention(q, k, v, table, lens, 0.1, window), atol=1e-5, rtol=1e-5)
