"""Decode attention over a prefix that several sequences share (cascade attention): the prefix's K/V is
read once per group of sequences instead of once per sequence.

Sequences that share their first `length` keys (the same slots: a radix-cache prefix such as a system
prompt) form a group. One program per (group, kv head, split) loads the group's queries of that kv head,
members x query heads as the rows of one tile, and reduces its chunk of the prefix to a partial output
and log-sum-exp per (member, head), written where kernels.decode_attention's merge finds them: after
the sequence's own splits, which cover only its keys past the prefix. The merge combines both, so the
result equals plain decode attention over all the keys (decode_attention_ref is the reference).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.common import dot_in_f32, dot_precision
from kernels.online_softmax import attend_tile

BLOCK_N = 64
MIN_SPLIT = 256     # fewest prefix keys worth a split of their own
# Splits per prefix. Fixed, so a launch's compiled variant does not change with the batch: 4 splits of
# a group of 16 sequences make 4 x kv heads programs of 64 query rows each.
MAX_SPLITS = 4
# Group tiles of a captured batch of n sequences: n // TILE_SHARE. Every padding tile is a program per
# kv head and split that loads its length and exits, so n // 2 (the most groups of two) cost more in
# empty programs than the rare batch of many small groups gains; groups past the tiles decode plainly.
TILE_SHARE = 8


@dataclass(slots=True)
class SharedPrefixes:
    """Groups of a decode batch's sequences (row indices) sharing a prefix, as device tensors. The
    group tiles are padded with empty ones (members -1, length 0), which the kernel skips, so one
    object of fixed shapes serves every step of a captured CUDA graph (`fill` rewrites it in place)."""
    starts: torch.Tensor          # [B] int32: the prefix length of a member's group, 0 elsewhere
    members: torch.Tensor         # [tiles, MEMBERS] int32 row indices, -1 padded
    lengths: torch.Tensor         # [tiles] int32, 0 for an empty tile
    prefix_splits: torch.Tensor   # [B] int32, written by the group kernel (0 for non-members)
    per_group: int                # MEMBERS

    @classmethod
    def build(cls, batch: int, groups: list[tuple[list[int], int]], heads_per_kv: int, dtype: torch.dtype,
              device: torch.device, tiles: int | None = None) -> "SharedPrefixes":
        """groups: (rows, shared length) with rows disjoint, two or more per group, each length below
        every member's seq_len. `tiles` (default: as many as the groups need) fixes the tile count."""
        per_group = members_per_tile(heads_per_kv, dtype)
        starts, members, lengths = _host_rows(batch, groups, per_group, tiles, device)
        return cls(starts.to(device, non_blocking=True), members.to(device, non_blocking=True),
                   lengths.to(device, non_blocking=True), torch.zeros(batch, dtype=torch.int32, device=device),
                   per_group)

    def fill(self, groups: list[tuple[list[int], int]]) -> None:
        """Rewrite the groups in place (same batch and tile count), in stream order."""
        rows = _host_rows(self.starts.shape[0], groups, self.per_group, self.lengths.shape[0], self.starts.device)
        for buffer, values in zip((self.starts, self.members, self.lengths), rows):
            buffer.copy_(values, non_blocking=True)

    @staticmethod
    def tiles_for(batch: int) -> int:
        return max(1, batch // TILE_SHARE)

    def view(self, batch: int) -> "SharedPrefixes":
        """The first `batch` rows and `tiles_for(batch)` tiles: a smaller captured batch's share."""
        tiles = self.tiles_for(batch)
        return SharedPrefixes(self.starts[:batch], self.members[:tiles], self.lengths[:tiles],
                              self.prefix_splits[:batch], self.per_group)


def _host_rows(batch: int, groups: list[tuple[list[int], int]], per_group: int, tiles: int | None,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(starts, members, lengths) on the host, pinned for a CUDA device (so the copies are queued: the
    device may be busy). A group larger than a tile is cut into near-equal tiles, so every tile of a
    group of two or more holds two or more. With `tiles` fixed, the largest groups take them; rows of
    groups left over read their prefix as rows in no group do."""
    starts, members, lengths = [0] * batch, [], []
    room = tiles
    for rows, length in sorted(groups, key=lambda g: -len(g[0])) if tiles is not None else groups:
        assert length > 0 and len(rows) >= 2
        parts = -(-len(rows) // per_group)
        if room is not None:
            if parts > room:
                continue
            room -= parts
        for i in range(parts):
            part = rows[i * len(rows) // parts:(i + 1) * len(rows) // parts]
            members.append(part + [-1] * (per_group - len(part)))
            lengths.append(length)
            for r in part:
                assert starts[r] == 0, f"row {r} is in two groups"
                starts[r] = length
    tiles = len(lengths) if tiles is None else tiles
    assert len(lengths) <= tiles, f"{len(lengths)} group tiles do not fit {tiles}"
    members += [[-1] * per_group] * (tiles - len(lengths))
    lengths += [0] * (tiles - len(lengths))
    pin = device.type == "cuda"
    return (torch.tensor(starts, dtype=torch.int32, pin_memory=pin),
            torch.tensor(members, dtype=torch.int32, pin_memory=pin).reshape(tiles, per_group),
            torch.tensor(lengths, dtype=torch.int32, pin_memory=pin))


def members_per_tile(heads_per_kv: int, dtype: torch.dtype) -> int:
    """Sequences per group tile: rows = members x query heads of a kv head, 64 for 16-bit operands (16
    for float32's three-pass dots, which spill registers beyond that), at least 16 rows for tl.dot."""
    rows = 16 if dtype == torch.float32 else 64
    return max(1, rows // triton.next_power_of_2(heads_per_kv))


@triton.jit
def _group_split_kernel(
    Q, K, V, Table, Members, Lengths, PartO, PartLse, PrefixSplits,
    qk_scale, num_heads, base, split_stride,
    stride_qb, stride_qh, stride_ks, stride_kh, stride_vs, stride_vh, stride_tb,
    GROUP: tl.constexpr, GROUP_P2: tl.constexpr, MEMBERS: tl.constexpr, D: tl.constexpr, D_P2: tl.constexpr,
    BLOCK_N: tl.constexpr, MAX_SPLITS: tl.constexpr, MIN_SPLIT: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    g = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    r = tl.arange(0, MEMBERS * GROUP_P2)
    member = tl.load(Members + g * MEMBERS + r // GROUP_P2)
    in_group = r % GROUP_P2
    row_ok = (member >= 0) & (in_group < GROUP)
    b = tl.where(row_ok, member, 0).to(tl.int64)
    heads = kv_head * GROUP + in_group
    d = tl.arange(0, D_P2)
    d_ok = d < D

    # The prefix [0, length) in n_splits chunks of `chunk` keys, as the decode split kernel cuts a sequence.
    length = tl.load(Lengths + g)
    first = tl.load(Members + g * MEMBERS).to(tl.int64)     # every member's row holds the prefix's slots
    wanted = tl.minimum(tl.maximum((length + MIN_SPLIT - 1) // MIN_SPLIT, 1), MAX_SPLITS)
    chunk = tl.maximum(((length + wanted - 1) // wanted + BLOCK_N - 1) // BLOCK_N * BLOCK_N, BLOCK_N)
    n_splits = tl.maximum((length + chunk - 1) // chunk, 1)
    first_program = (split == 0) & (kv_head == 0)
    tl.store(PrefixSplits + b, n_splits + b * 0, mask=tl.where(first_program, row_ok & (in_group == 0), False))
    lo = split * chunk
    hi = tl.minimum(lo + chunk, length)

    q = tl.load(Q + b[:, None] * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    m_i = tl.full([MEMBERS * GROUP_P2], -1.0e30, tl.float32)
    l_i = tl.zeros([MEMBERS * GROUP_P2], tl.float32)
    acc = tl.zeros([MEMBERS * GROUP_P2, D_P2], tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        key_ok = pos < hi
        slots = tl.load(Table + first * stride_tb + pos, mask=key_ok, other=0).to(tl.int64)
        k = tl.load(K + slots[None, :] * stride_ks + kv_head * stride_kh + d[:, None],
                    mask=key_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + slots[:, None] * stride_vs + kv_head * stride_vh + d[None, :],
                    mask=key_ok[:, None] & d_ok[None, :], other=0.0)
        m_i, l_i, acc = attend_tile(q, k, v, key_ok, m_i, l_i, acc, qk_scale, DOT_F32, PRECISION)

    has_keys = l_i > 0
    l_safe = tl.where(has_keys, l_i, 1.0)
    lse = tl.where(has_keys, m_i + tl.log2(l_safe), float("-inf"))
    row = (b * num_heads + heads) * split_stride + base + split
    used = tl.where(split < n_splits, row_ok, False)
    tl.store(PartLse + row, lse, mask=used)
    tl.store(PartO + row[:, None] * D_P2 + d[None, :], acc / l_safe[:, None], mask=used[:, None])


def shared_prefix_splits(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, token_table: torch.Tensor,
                         shared: SharedPrefixes, part_o: torch.Tensor, part_lse: torch.Tensor, base: int,
                         qk_scale: float) -> None:
    """Fill the prefix splits [base, base + MAX_SPLITS) of part_o / part_lse ([B, H, stride, ...]) and
    shared.prefix_splits, for kernels.decode_attention's merge."""
    groups = shared.members.shape[0]
    if groups == 0:
        return
    heads, dim = q.shape[1], q.shape[2]
    kv_heads = k_cache.shape[1]
    group = heads // kv_heads
    assert shared.members.shape[1] == shared.per_group and part_o.shape[2] >= base + MAX_SPLITS
    shared.prefix_splits.zero_()           # a row in no group this step may have been in one before
    _group_split_kernel[(groups, kv_heads, MAX_SPLITS)](
        q, k_cache, v_cache, token_table, shared.members, shared.lengths, part_o, part_lse, shared.prefix_splits,
        qk_scale, heads, base, part_o.shape[2],
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
        token_table.stride(0),
        GROUP=group, GROUP_P2=triton.next_power_of_2(group), MEMBERS=shared.per_group, D=dim,
        D_P2=part_o.shape[3], BLOCK_N=BLOCK_N, MAX_SPLITS=MAX_SPLITS, MIN_SPLIT=MIN_SPLIT,
        DOT_F32=dot_in_f32(q.dtype), PRECISION=dot_precision(q.dtype),
        num_warps=4, num_stages=2,
    )
