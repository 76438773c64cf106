"""Extend (prefill) attention: each sequence's new tokens attend causally to its cached prefix and to
each other, every key read through the slot table.

The new tokens' K/V are already in the pool (see kernels.kv_store), so prefix and new keys are one
range of table positions, [0, seq_len), and one loop covers both. One program handles a tile of
BLOCK_M new tokens of one sequence for one query head.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.attention_ref import extend_attention_ref  # noqa: F401  (its reference, beside it)
from kernels.common import capability, dot_in_f32, dot_precision

LOG2E = 1.4426950408889634


@triton.jit
def _extend_kernel(
    Q, K, V, Out, Table, SeqLens, ExtendLens, QStarts,
    qk_scale, window,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_ks, stride_kh, stride_vs, stride_vh, stride_tb,
    GROUP: tl.constexpr, D: tl.constexpr, D_P2: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr, DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    # Heads vary fastest in launch order, then tiles of one sequence: programs running side by side
    # read the same K/V (a kv head's group, a shared prefix), so it comes from L2.
    head = tl.program_id(0)
    first = tl.program_id(1) * BLOCK_M
    b = tl.program_id(2).to(tl.int64)
    kv_head = head // GROUP
    seq_len = tl.load(SeqLens + b)
    ext = tl.load(ExtendLens + b)
    prefix = seq_len - ext
    rows = first + tl.arange(0, BLOCK_M)
    row_ok = rows < ext
    q_pos = prefix + rows
    tokens = tl.load(QStarts + b).to(tl.int64) + rows
    d = tl.arange(0, D_P2)
    d_ok = d < D

    # Keys past this tile's last query are invisible to all of it; a tile past the extend has no work.
    hi = tl.where(first < ext, tl.minimum(seq_len, prefix + first + BLOCK_M), 0)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(prefix + first - window + 1, 0)

    q = tl.load(Q + tokens[:, None] * stride_qt + head * stride_qh + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    # A finite floor keeps exp2(m_old - m_new) defined while a row's scores so far are all masked.
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_P2], tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        key_ok = pos < hi
        slots = tl.load(Table + b * stride_tb + pos, mask=key_ok, other=0).to(tl.int64)
        k = tl.load(K + slots[None, :] * stride_ks + kv_head * stride_kh + d[:, None],
                    mask=key_ok[None, :] & d_ok[:, None], other=0.0)
        v = tl.load(V + slots[:, None] * stride_vs + kv_head * stride_vh + d[None, :],
                    mask=key_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_F32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, k, input_precision=PRECISION) * qk_scale
        visible = key_ok[None, :] & (pos[None, :] <= q_pos[:, None])
        if HAS_WINDOW:
            visible = visible & (pos[None, :] > q_pos[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + tokens[:, None] * stride_ot + head * stride_oh + d[None, :], out,
             mask=row_ok[:, None] & d_ok[None, :])


def _tiles(dim_p2: int, dtype: torch.dtype, arch: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): the largest tiles that compile without register spills for sm_80
    and sm_90 (checked by tests/kernels/sm_compile.py); float32's three-pass dots need small ones, and
    so does the interpreter (arch 0), whose dot costs per multiply, padding rows included, and whose
    every loop iteration costs milliseconds."""
    if arch == 0:
        return 16, 128, 4
    if dtype == torch.float32:
        return 16, 64, 4
    if dim_p2 <= 64:
        return 128, 64, 4
    return (128, 64, 8) if arch >= 90 else (128, 32, 8)


def extend_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     token_table: torch.Tensor, seq_lens: torch.Tensor, extend_lens: torch.Tensor,
                     scale: float, window: int | None = None, max_extend: int | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [sum extend_lens, H, D], sequence by sequence; k_cache, v_cache: [slots, KVH, D] already holding
    the new tokens' K/V; token_table: [B, >= max seq_len] int32; seq_lens, extend_lens: [B] int32 with
    1 <= extend_len <= seq_len. Returns [tokens, H, D] in q's dtype. `max_extend` (the largest extend
    length, known to the scheduler) sizes the grid; without it this call reads it from the device."""
    tokens, heads, dim = q.shape
    batch = seq_lens.shape[0]
    kv_heads = k_cache.shape[1]
    assert heads % kv_heads == 0, f"{heads} query heads cannot share {kv_heads} kv heads"
    assert q.stride(2) == k_cache.stride(2) == v_cache.stride(2) == 1 and token_table.stride(1) == 1
    assert seq_lens.dtype == extend_lens.dtype == token_table.dtype == torch.int32
    assert window is None or window > 0
    if out is None:
        out = torch.empty_like(q)
    assert out.shape == q.shape and out.stride(2) == 1
    if tokens == 0:
        return out
    if max_extend is None:
        max_extend = int(extend_lens.max())
    q_starts = (torch.cumsum(extend_lens, 0, dtype=torch.int32) - extend_lens).to(torch.int32)
    d_p2 = max(16, triton.next_power_of_2(dim))
    block_m, block_n, warps = _tiles(d_p2, q.dtype, capability(q.device))
    _extend_kernel[(heads, triton.cdiv(max_extend, block_m), batch)](
        q, k_cache, v_cache, out, token_table, seq_lens, extend_lens, q_starts,
        scale * LOG2E, window or 0,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), k_cache.stride(0), k_cache.stride(1),
        v_cache.stride(0), v_cache.stride(1), token_table.stride(0),
        GROUP=heads // kv_heads, D=dim, D_P2=d_p2, BLOCK_M=block_m, BLOCK_N=block_n,
        HAS_WINDOW=window is not None, DOT_F32=dot_in_f32(q.dtype), PRECISION=dot_precision(q.dtype),
        num_warps=warps, num_stages=2,
    )
    return out
