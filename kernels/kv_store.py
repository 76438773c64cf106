"""Scatter the new tokens' K and V into one layer of the slot pool: cache[out_slots[t]] = new[t].

One program copies one token's K and V rows (all kv heads); stores cast to the pool's dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _kv_store_kernel(
    Knew, Vnew, KCache, VCache, Slots,
    stride_knt, stride_knh, stride_vnt, stride_vnh, stride_ks, stride_kh, stride_vs, stride_vh,
    KVH: tl.constexpr, D: tl.constexpr, H_P2: tl.constexpr, D_P2: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(Slots + t).to(tl.int64)
    h = tl.arange(0, H_P2)[:, None]
    d = tl.arange(0, D_P2)[None, :]
    ok = (h < KVH) & (d < D)
    k = tl.load(Knew + t * stride_knt + h * stride_knh + d, mask=ok)
    v = tl.load(Vnew + t * stride_vnt + h * stride_vnh + d, mask=ok)
    tl.store(KCache + slot * stride_ks + h * stride_kh + d, k, mask=ok)
    tl.store(VCache + slot * stride_vs + h * stride_vh + d, v, mask=ok)


def kv_store(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             out_slots: torch.Tensor) -> None:
    """k, v: [tokens, KVH, D] (rows may be strided views of a fused QKV output); k_cache, v_cache:
    [slots, KVH, D]; out_slots: [tokens] int32 or int64, distinct. Writes in place."""
    tokens, kv_heads, dim = k.shape
    assert v.shape == k.shape and k_cache.shape[1:] == v_cache.shape[1:] == (kv_heads, dim)
    assert out_slots.shape == (tokens,) and not out_slots.dtype.is_floating_point
    assert k.stride(2) == v.stride(2) == k_cache.stride(2) == v_cache.stride(2) == 1
    if tokens == 0:
        return
    h_p2, d_p2 = triton.next_power_of_2(kv_heads), triton.next_power_of_2(dim)
    _kv_store_kernel[(tokens,)](
        k, v, k_cache, v_cache, out_slots,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
        KVH=kv_heads, D=dim, H_P2=h_p2, D_P2=d_p2, num_warps=4 if h_p2 * d_p2 >= 1024 else 1,
    )


def kv_store_ref(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 out_slots: torch.Tensor) -> None:
    k_cache[out_slots.long()] = k.to(k_cache.dtype)
    v_cache[out_slots.long()] = v.to(v_cache.dtype)
