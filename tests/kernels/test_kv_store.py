"""The KV store kernel writes exactly what index_put writes, and nothing else."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.kv_store import kv_store, kv_store_ref
from tests.kernels.slots import BF16_CASTS_EXACT, ON_GPU, kv_layer


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, id="f32"), pytest.param(torch.bfloat16, id="bf16")])
@pytest.mark.parametrize("kv_heads,dim,tokens,slot_dtype", [
    (1, 64, 1, torch.int64), (2, 80, 7, torch.int32), (8, 128, 300 if ON_GPU else 40, torch.int64),
    (3, 128, 7, torch.int32)])
def test_matches_index_put(device, gen, dtype, kv_heads, dim, tokens, slot_dtype):
    num_slots = 4 * tokens + 1
    k_cache, v_cache = kv_layer(num_slots, kv_heads, dim, dtype, device, gen)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    # New K and V as the k and v parts of a fused QKV output: strided rows.
    qkv = torch.randn(tokens, (4 + 2) * kv_heads * dim, generator=gen).to(device=device, dtype=dtype)
    k = qkv[:, 4 * kv_heads * dim:5 * kv_heads * dim].view(tokens, kv_heads, dim)
    v = qkv[:, 5 * kv_heads * dim:].view(tokens, kv_heads, dim)
    slots = (torch.randperm(num_slots - 1, generator=gen)[:tokens] + 1).to(device=device, dtype=slot_dtype)
    kv_store(k, v, k_cache, v_cache, slots)
    kv_store_ref(k, v, ref_k, ref_v, slots)
    assert torch.equal(k_cache, ref_k) and torch.equal(v_cache, ref_v)


def test_casts_to_the_pool_dtype(device, gen):
    k_cache, v_cache = kv_layer(50, 2, 64, torch.bfloat16, device, gen)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    k, v = (torch.randn(5, 2, 64, generator=gen).to(device) for _ in range(2))
    slots = torch.tensor([7, 3, 49, 1, 20], device=device)
    kv_store(k, v, k_cache, v_cache, slots)
    kv_store_ref(k, v, ref_k, ref_v, slots)
    if BF16_CASTS_EXACT:
        assert torch.equal(k_cache, ref_k) and torch.equal(v_cache, ref_v)
    else:
        torch.testing.assert_close(k_cache, ref_k, rtol=2**-7, atol=0)
        torch.testing.assert_close(v_cache, ref_v, rtol=2**-7, atol=0)


def test_no_tokens_is_a_no_op(device, gen):
    k_cache, v_cache = kv_layer(10, 2, 64, torch.bfloat16, device, gen)
    before = k_cache.clone()
    empty = torch.empty(0, 2, 64, dtype=torch.bfloat16, device=device)
    kv_store(empty, empty, k_cache, v_cache, torch.empty(0, dtype=torch.int64, device=device))
    assert torch.equal(k_cache, before)


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA")
@pytest.mark.gpu
def test_slot_offsets_past_two_to_the_31_elements(gen):
    """Slot ids times the row stride exceed int32 in a large pool; the kernel computes offsets in int64."""
    kv_heads, dim = 8, 128
    num_slots = 2**31 // (kv_heads * dim) + 64                      # a 4 GiB bf16 K cache, and as much V
    k_cache = torch.zeros(num_slots, kv_heads, dim, dtype=torch.bfloat16, device="cuda")
    v_cache = torch.zeros_like(k_cache)
    k, v = (torch.randn(3, kv_heads, dim, generator=gen).to("cuda", torch.bfloat16) for _ in range(2))
    slots = torch.tensor([num_slots - 1, 5, num_slots - 60], device="cuda")
    kv_store(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache[slots], k) and torch.equal(v_cache[slots], v)
    assert k_cache[6:num_slots - 60].eq(0).all()
