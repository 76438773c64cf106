"""Decode attention with shared prefixes read once per group (kernels.shared_prefix) against the plain
float32 reference over every key: groups larger than one tile, ragged suffixes, rows in no group,
prefixes longer than a split, head dims 64/80/128 and grouped-query ratios 1/4/8."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.decode_attention import decode_attention, decode_attention_ref
from kernels.shared_prefix import SharedPrefixes, members_per_tile
from tests.kernels.slots import ON_GPU, assert_close, kv_layer, query, slot_table

KV_HEADS = 8 if ON_GPU else 2


def run(device, gen, dtype, prefixes: list[tuple[int, list[int]]], lone: list[int], group: int, dim: int,
        tiles: int | None = None):
    """prefixes: (shared length, each member's own suffix length); lone: lengths of rows in no group."""
    lens = [p + s for p, suffixes in prefixes for s in suffixes] + lone
    num_slots = sum(lens) + 500
    k, v = kv_layer(num_slots, KV_HEADS, dim, dtype, device, gen)
    table = slot_table(lens, num_slots, "cpu", gen)
    groups, row = [], 0
    for length, suffixes in prefixes:
        rows = list(range(row, row + len(suffixes)))
        table[rows[1:], :length] = table[rows[0], :length]       # the members share the prefix's slots
        groups.append((rows, length))
        row += len(suffixes)
    table = table.to(device)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
    q = query(len(lens), group * KV_HEADS, KV_HEADS, dim, dtype, device, gen)
    shared = SharedPrefixes.build(len(lens), groups, group, dtype, torch.device(device), tiles=tiles)
    out = decode_attention(q, k, v, table, seq_lens, dim ** -0.5, shared=shared)
    return out, decode_attention_ref(q, k, v, table, seq_lens, dim ** -0.5)


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="f32"), pytest.param(torch.bfloat16, id="bf16")])
@pytest.mark.parametrize("dim,group", [(64, 4), (80, 1), (128, 8)])
def test_equals_attention_over_every_key(device, gen, dtype, dim, group):
    tile = members_per_tile(group, dtype)
    prefixes = [(300, [1, 5, 64, 2]), (700 if ON_GPU else 520, [3] * (tile + 1))]
    out, ref = run(device, gen, dtype, prefixes, lone=[1, 90], group=group, dim=dim)
    assert_close(out, ref)


def test_a_batch_without_groups_is_plain_decode(device, gen):
    out, ref = run(device, gen, torch.bfloat16, [], lone=[7, 300], group=4, dim=64)
    assert_close(out, ref)


def test_groups_past_the_tiles_decode_plainly(device, gen):
    """A captured batch has a fixed number of group tiles: the largest group takes the one tile, the
    smaller groups' rows read their own prefix, and every output still equals the reference."""
    prefixes = [(260, [2, 4]), (300, [1, 5, 9]), (120, [3, 3])]
    out, ref = run(device, gen, torch.bfloat16, prefixes, lone=[40], group=4, dim=64, tiles=1)
    assert_close(out, ref)
