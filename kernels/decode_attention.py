"""Decode attention: one query token per sequence attends to its sequence's slots, with split-KV.

Stage 1 runs one program per (sequence, kv head, head block, split): the query heads that share a
kv head read each K/V tile once and reduce their chunk of the sequence to a partial output and its
log-sum-exp. Stage 2 merges a sequence's splits. The launch grid depends only on the batch size and
`max_splits`; how many splits a sequence actually uses is computed from `seq_lens` on the device by
stage 1 and handed to stage 2, so one grid serves every length and a captured CUDA graph stays valid.
On sm_90 both stages launch as programmatic dependents (kernels.common.pdl): each starts while the
kernel before it ends and waits for it before reading what it wrote. Stage 1 reads its first tile of
older keys before that wait, so it requires that only the newest key of a sequence (position
seq_len - 1) be stored by the kernels of the same step; every decode stores exactly that one.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.attention_ref import decode_attention_ref  # noqa: F401  (its reference, beside it)
from kernels.common import dot_in_f32, dot_precision, gdc_launch_dependents, gdc_wait, num_sms, pdl
from kernels.online_softmax import attend_tile
from kernels.shared_prefix import MAX_SPLITS as PREFIX_SPLITS
from kernels.shared_prefix import SharedPrefixes, shared_prefix_splits

LOG2E = 1.4426950408889634
BLOCK_N = 64        # keys per tile
MIN_SPLIT = 64      # fewest keys worth a split of their own
MAX_SPLITS = 64


@triton.jit
def _decode_split_kernel(
    Q, K, V, Table, SeqLens, Starts, PartO, PartLse, NumSplits,
    qk_scale, window, num_heads, split_stride,
    stride_qb, stride_qh, stride_ks, stride_kh, stride_vs, stride_vh, stride_tb,
    GROUP: tl.constexpr, HEAD_BLOCKS: tl.constexpr, D: tl.constexpr, D_P2: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, MAX_SPLITS: tl.constexpr, MIN_SPLIT: tl.constexpr,
    HAS_STARTS: tl.constexpr, HAS_WINDOW: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:             # launched while the kernel before (the one storing q and this token's K/V) ends
        gdc_launch_dependents()
    b = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1) // HEAD_BLOCKS
    in_group = (tl.program_id(1) % HEAD_BLOCKS) * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = in_group < GROUP
    heads = kv_head * GROUP + in_group
    split = tl.program_id(2)
    d = tl.arange(0, D_P2)
    d_ok = d < D

    # The visible keys [start, seq_len) split into n_splits non-empty chunks of `chunk` keys (a multiple
    # of BLOCK_N), n_splits <= MAX_SPLITS. Integer ceilings are spelled out: tl.cdiv is a nested jit
    # call, slow in the interpreter.
    seq_len = tl.load(SeqLens + b)
    start = seq_len * 0
    if HAS_STARTS:                 # keys before it are a shared prefix, attended by the group kernel
        start = tl.load(Starts + b)
    if HAS_WINDOW:
        start = tl.maximum(seq_len - window, 0)
    length = seq_len - start
    wanted = tl.minimum(tl.maximum((length + MIN_SPLIT - 1) // MIN_SPLIT, 1), MAX_SPLITS)
    chunk = tl.maximum(((length + wanted - 1) // wanted + BLOCK_N - 1) // BLOCK_N * BLOCK_N, BLOCK_N)
    n_splits = tl.maximum((length + chunk - 1) // chunk, 1)
    lo = start + split * chunk
    hi = tl.minimum(lo + chunk, seq_len)
    if split >= n_splits:          # an idle split (the grid fits the longest table row) ends at once
        return

    # Until gdc_wait this reads only what was in place before the step began: the lengths and slot table
    # (staged before it) and the keys before the newest (stored by earlier steps). So the first tile's
    # table lookup and K/V reads overlap the kernel before; only q and the newest key, which that kernel
    # writes, are read after the wait. (Without PDL the plain loop below reads every tile: no registers
    # held across a wait, which sm_80's MQA tiles could not spare.)
    if PDL:
        newest = seq_len - 1
        pos = lo + tl.arange(0, BLOCK_N)
        key_ok = pos < hi
        slots = tl.load(Table + b * stride_tb + pos, mask=key_ok, other=0).to(tl.int64)
        old = key_ok & (pos < newest)
        k = tl.load(K + slots[None, :] * stride_ks + kv_head * stride_kh + d[:, None],
                    mask=old[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + slots[:, None] * stride_vs + kv_head * stride_vh + d[None, :],
                    mask=old[:, None] & d_ok[None, :], other=0.0)
        gdc_wait()
        fresh = key_ok & (pos == newest)
        k = tl.where(fresh[None, :], tl.load(K + slots[None, :] * stride_ks + kv_head * stride_kh + d[:, None],
                                             mask=fresh[None, :] & d_ok[:, None], other=0.0), k)
        v = tl.where(fresh[:, None], tl.load(V + slots[:, None] * stride_vs + kv_head * stride_vh + d[None, :],
                                             mask=fresh[:, None] & d_ok[None, :], other=0.0), v)
    tl.store(NumSplits + b, n_splits, mask=(split == 0) & (tl.program_id(1) == 0))
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=head_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    # A finite floor keeps exp2(m_old - m_new) defined while every score so far is masked.
    m_i = tl.full([BLOCK_H], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, D_P2], tl.float32)
    first = lo
    if PDL:
        m_i, l_i, acc = attend_tile(q, k, v, key_ok, m_i, l_i, acc, qk_scale, DOT_F32, PRECISION)
        first = lo + BLOCK_N
    for n0 in range(first, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        key_ok = pos < hi
        slots = tl.load(Table + b * stride_tb + pos, mask=key_ok, other=0).to(tl.int64)
        k = tl.load(K + slots[None, :] * stride_ks + kv_head * stride_kh + d[:, None],
                    mask=key_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + slots[:, None] * stride_vs + kv_head * stride_vh + d[None, :],
                    mask=key_ok[:, None] & d_ok[None, :], other=0.0)
        m_i, l_i, acc = attend_tile(q, k, v, key_ok, m_i, l_i, acc, qk_scale, DOT_F32, PRECISION)

    # Stage 2 reads only splits below n_splits; a sequence without keys leaves its split 0 at -inf.
    has_keys = l_i > 0
    l_safe = tl.where(has_keys, l_i, 1.0)
    lse = tl.where(has_keys, m_i + tl.log2(l_safe), float("-inf"))
    row = (b * num_heads + heads) * split_stride + split
    used = tl.where(split < n_splits, head_ok, False)     # (tensor & scalar bool breaks the interpreter)
    tl.store(PartLse + row, lse, mask=used)
    tl.store(PartO + row[:, None] * D_P2 + d[None, :], acc / l_safe[:, None], mask=used[:, None])


@triton.jit
def _decode_merge_kernel(
    PartO, PartLse, NumSplits, PrefixSplits, Out, stride_ob, stride_oh, prefix_base,
    D: tl.constexpr, D_P2: tl.constexpr, SPLIT_STRIDE: tl.constexpr, HAS_PREFIX: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:
        gdc_launch_dependents()
        gdc_wait()
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    n_splits = tl.load(NumSplits + b)
    split = tl.arange(0, SPLIT_STRIDE)
    d = tl.arange(0, D_P2)
    row = (b * tl.num_programs(1) + h) * SPLIT_STRIDE + split
    used = split < n_splits
    if HAS_PREFIX:                 # the group kernel's splits of a shared prefix follow the sequence's own
        used = used | ((split >= prefix_base) & (split < prefix_base + tl.load(PrefixSplits + b)))
    lse = tl.load(PartLse + row, mask=used, other=float("-inf"))
    top = tl.max(lse, 0)
    top = tl.where(top == float("-inf"), 0.0, top)      # a sequence with no keys yields zeros
    w = tl.exp2(lse - top)
    o = tl.load(PartO + row[:, None] * D_P2 + d[None, :], mask=used[:, None], other=0.0)
    total = tl.sum(w, 0)
    out = tl.sum(w[:, None] * o, 0) / tl.where(total > 0, total, 1.0)
    tl.store(Out + b * stride_ob + h * stride_oh + d, out, mask=d < D)


def choose_max_splits(batch: int, programs_per_seq: int, max_len: int, device: torch.device) -> int:
    """Splits per sequence for a launch: enough programs for about two waves over the device's SMs,
    no more than a table row can use. A function of shapes only, so a graph's grid never changes."""
    want = triton.cdiv(2 * num_sms(device), max(1, batch * programs_per_seq))
    useful = triton.cdiv(max(1, max_len), MIN_SPLIT)
    return triton.next_power_of_2(max(1, min(want, useful, MAX_SPLITS)))


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     token_table: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                     window: int | None = None, max_splits: int | None = None,
                     out: torch.Tensor | None = None, shared: "SharedPrefixes | None" = None) -> torch.Tensor:
    """q: [B, H, D]; k_cache, v_cache: [slots, KVH, D]; token_table: [B, >= max seq_len] int32 slot ids;
    seq_lens: [B] int32 (0 gives a zero row). Returns [B, H, D] in q's dtype: each query over the keys
    `token_table[b, max(0, seq_len - window):seq_len]`. Never synchronises with the host.

    With `shared` (no window), sequences that share a prefix of their keys read it once per group:
    kernels.shared_prefix attends the group's queries to it together, and the merge adds its splits."""
    batch, heads, dim = q.shape
    kv_heads = k_cache.shape[1]
    assert heads % kv_heads == 0, f"{heads} query heads cannot share {kv_heads} kv heads"
    assert q.stride(2) == k_cache.stride(2) == v_cache.stride(2) == 1 and token_table.stride(1) == 1
    assert seq_lens.dtype == torch.int32 and token_table.dtype == torch.int32
    assert window is None or window > 0
    group = heads // kv_heads
    d_p2 = max(16, triton.next_power_of_2(dim))
    # tl.dot needs M >= 16; float32's three-pass dots spill registers past 16 query heads per program.
    block_h = max(16, min(16 if q.dtype == torch.float32 else 64, triton.next_power_of_2(group)))
    head_blocks = triton.cdiv(group, block_h)
    if max_splits is None:
        max_splits = choose_max_splits(batch, kv_heads * head_blocks, token_table.shape[1], q.device)
    assert max_splits & (max_splits - 1) == 0, "max_splits must be a power of two"
    assert shared is None or window is None, "a shared prefix and a sliding window do not combine"
    stride = triton.next_power_of_2(max_splits + (PREFIX_SPLITS if shared is not None else 0))
    part_o = torch.empty((batch, heads, stride, d_p2), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((batch, heads, stride), dtype=torch.float32, device=q.device)
    num_splits = torch.empty(batch, dtype=torch.int32, device=q.device)
    if out is None:
        out = torch.empty_like(q)
    assert out.shape == q.shape and out.stride(2) == 1
    if batch == 0:
        return out
    dependent = pdl(q.device)
    launch = {"launch_pdl": True} if dependent else {}
    if shared is not None:
        shared_prefix_splits(q, k_cache, v_cache, token_table, shared, part_o, part_lse, max_splits, scale * LOG2E)
    _decode_split_kernel[(batch, kv_heads * head_blocks, max_splits)](
        q, k_cache, v_cache, token_table, seq_lens, shared.starts if shared is not None else seq_lens,
        part_o, part_lse, num_splits,
        scale * LOG2E, window or 0, heads, stride,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
        token_table.stride(0),
        GROUP=group, HEAD_BLOCKS=head_blocks, D=dim, D_P2=d_p2, BLOCK_H=block_h, BLOCK_N=BLOCK_N,
        MAX_SPLITS=max_splits, MIN_SPLIT=MIN_SPLIT, HAS_STARTS=shared is not None,
        HAS_WINDOW=window is not None, DOT_F32=dot_in_f32(q.dtype), PRECISION=dot_precision(q.dtype),
        PDL=dependent, num_warps=4, num_stages=2, **launch,
    )
    _decode_merge_kernel[(batch, heads)](
        part_o, part_lse, num_splits, shared.prefix_splits if shared is not None else num_splits, out,
        out.stride(0), out.stride(1), max_splits,
        D=dim, D_P2=d_p2, SPLIT_STRIDE=stride, HAS_PREFIX=shared is not None, PDL=dependent, num_warps=4, **launch,
    )
    return out
