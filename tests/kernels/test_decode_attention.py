"""Decode attention (split-KV) against its float32 reference: head dims 64/80/128, grouped-query ratios
1/4/8, ragged lengths from 1 to past a thousand, windows, slots shuffled across the pool."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.decode_attention import MAX_SPLITS, choose_max_splits, decode_attention, decode_attention_ref
from tests.kernels.slots import GPU_ONLY, ON_GPU, assert_close, kv_layer, query, slot_table

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.bfloat16, id="bf16")]
KV_HEADS = 8 if ON_GPU else 2


def run(device, gen, dtype, lens, group, dim, window=None, kv_heads=KV_HEADS, max_splits=None):
    num_slots = sum(lens) + 500
    k, v = kv_layer(num_slots, kv_heads, dim, dtype, device, gen)
    table = slot_table(lens, num_slots, device, gen)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
    q = query(len(lens), group * kv_heads, kv_heads, dim, dtype, device, gen)
    out = decode_attention(q, k, v, table, seq_lens, dim ** -0.5, window, max_splits=max_splits)
    return out, decode_attention_ref(q, k, v, table, seq_lens, dim ** -0.5, window)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [64, 80, 128])
@pytest.mark.parametrize("group", [1, 4, 8])
def test_matches_reference(device, gen, dtype, dim, group):
    lens = [1, 37, 1100] + ([4000, 513, 64, 2, 129] if ON_GPU else [])
    out, ref = run(device, gen, dtype, lens, group, dim)
    assert out.dtype == dtype and out.shape == ref.shape
    assert_close(out, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [1, 64, 500])
def test_sliding_window(device, gen, dtype, window):
    out, ref = run(device, gen, dtype, [1, 64, 65, 700], group=4, dim=128, window=window)
    assert_close(out, ref)


@pytest.mark.parametrize("max_splits", [1, 4, *(pytest.param(n, marks=GPU_ONLY) for n in (16, MAX_SPLITS))])
def test_any_split_count_gives_the_same_result(device, gen, max_splits):
    out, ref = run(device, gen, torch.float32, [3, 200, 1500, 64], group=8, dim=64, max_splits=max_splits)
    assert_close(out, ref)


def test_empty_sequence_gives_zeros(device, gen):
    """A batch padded for a CUDA graph may carry rows of length 0."""
    out, ref = run(device, gen, torch.bfloat16, [0, 50, 0], group=4, dim=64)
    assert out[0].eq(0).all() and out[2].eq(0).all()
    assert_close(out, ref)


def test_more_query_heads_per_kv_head_than_one_program_holds(device, gen):
    out, ref = run(device, gen, torch.bfloat16, [5, 300], group=128 if ON_GPU else 32, dim=80, kv_heads=1)
    assert_close(out, ref)


def test_split_count_depends_on_shapes_only():
    cpu = torch.device("cpu")
    for batch in (1, 3, 64, 256):
        for max_len in (1, 100, 8192, 131072):
            n = choose_max_splits(batch, 8, max_len, cpu)
            assert 1 <= n <= MAX_SPLITS and n & (n - 1) == 0
            assert n == choose_max_splits(batch, 8, max_len, cpu)


@pytest.mark.parametrize("dim", [pytest.param(64, marks=GPU_ONLY), pytest.param(128, marks=GPU_ONLY)])
def test_replays_in_a_cuda_graph_with_new_lengths(gen, dim):
    """The split plan lives on the device: one captured graph serves any lengths and slot tables."""
    lens, width, num_slots = [1, 700, 3000, 40], 4096, 16384
    k, v = kv_layer(num_slots, 8, dim, torch.bfloat16, "cuda", gen)
    table = slot_table(lens, num_slots, "cuda", gen, width=width)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device="cuda")
    q = query(len(lens), 32, 8, dim, torch.bfloat16, "cuda", gen)
    out = torch.empty(q.shape, dtype=q.dtype, device="cuda")
    decode_attention(q, k, v, table, seq_lens, 0.125, out=out)      # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_attention(q, k, v, table, seq_lens, 0.125, out=out)
    for new_lens in ([4000, 1, 129, 2048], [64, 65, 1, 3333]):
        table.copy_(slot_table(new_lens, num_slots, "cuda", gen, width=width))
        seq_lens.copy_(torch.tensor(new_lens, dtype=torch.int32))
        q.copy_(torch.randn(q.shape, generator=gen).to(q))
        graph.replay()
        assert_close(out, decode_attention_ref(q, k, v, table, seq_lens, 0.125))
