"""One tile of keys folded into a running attention result (online softmax), as the decode kernels share it."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def attend_tile(q, k, v, key_ok, m_i, l_i, acc, qk_scale, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    """q [M, D_P2]; k [D_P2, BLOCK_N], v [BLOCK_N, D_P2]; masked keys weigh 0. Scores are in log2 units
    (qk_scale carries log2 e). Returns the new running max, sum and unnormalised output."""
    if DOT_F32:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    s = tl.dot(q, k, input_precision=PRECISION) * qk_scale
    s = tl.where(key_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc
