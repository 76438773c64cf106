"""KVPool and ReqToTokenPool: slots and rows are handed out once, come back once, slot 0 never."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gateway.engine.kv_pool import KVPool, ReqToTokenPool


def make_pool(num_slots: int = 16) -> KVPool:
    return KVPool(num_layers=2, num_slots=num_slots, num_kv_heads=2, head_dim=4, dtype=torch.float32, device="cpu")


def test_fresh_pool_hands_out_every_slot_but_zero_once():
    pool = make_pool(16)
    assert pool.available == 15 and pool.k.shape == pool.v.shape == (2, 16, 2, 4)
    slots = pool.alloc(15)
    pool.check_integrity()
    assert sorted(slots) == list(range(1, 16))
    assert pool.available == 0 and pool.alloc(1) is None
    assert pool.alloc(0) == []
    assert not any(pool.is_free(s) for s in range(16)) and pool.free_slot_set() == set()


@pytest.mark.parametrize("num_slots,most", [(32, 8), (600, 200)])       # one-by-one and vectorized paths
def test_alloc_free_round_trips(num_slots, most):
    pool = make_pool(num_slots)
    rng = random.Random(0)
    held: list[int] = []
    for _ in range(300):
        if held and rng.random() < 0.5:
            rng.shuffle(held)
            k = rng.randint(1, len(held))
            gone, held = held[:k], held[k:]
            pool.free(gone if rng.random() < 0.5 else torch.tensor(gone, dtype=torch.int32))
        else:
            got = pool.alloc(rng.randint(0, most))
            if got is not None:
                assert not set(got) & set(held) and 0 not in got and all(type(s) is int for s in got)
                held += got
        pool.check_integrity()
        assert pool.available == num_slots - 1 - len(held)
        assert pool.free_slot_set() == set(range(1, num_slots)) - set(held)
        assert all(pool.is_free(s) != (s in held) for s in range(1, num_slots))


def test_freed_slots_come_back_in_free_order():
    pool = make_pool(16)
    a = pool.alloc(6)
    pool.free([a[4], a[1], a[2]])
    assert pool.alloc(3) == [a[4], a[1], a[2]]


def test_alloc_when_short_returns_none_and_takes_nothing():
    pool = make_pool(8)
    first = pool.alloc(5)
    assert pool.alloc(3) is None
    pool.check_integrity()
    assert pool.available == 2 and pool.free_slot_set() == set(range(1, 8)) - set(first)


@pytest.mark.parametrize("valid", [0, 100])                             # one-by-one and vectorized paths
@pytest.mark.parametrize("bad", [[0], [200], [-1], [3, 3]])
def test_free_rejects_slot_zero_out_of_range_and_repeats(bad, valid):
    pool = make_pool(200)
    slots = pool.alloc(199)
    with pytest.raises(AssertionError):
        pool.free(slots[10:10 + valid] + bad)
    pool.check_integrity()
    assert pool.available == 0, "a rejected free must free nothing"


@pytest.mark.parametrize("n", [4, 200])
def test_double_free_is_rejected_and_frees_nothing(n):
    pool = make_pool(300)
    slots = pool.alloc(n)
    pool.free(slots[:2])
    with pytest.raises(AssertionError, match="double free"):
        pool.free(slots[2:] + [slots[0]])
    pool.check_integrity()
    assert pool.free_slot_set() == set(range(1, 300)) - set(slots[2:])
    pool.free(np.array(slots[2:]))
    assert pool.available == 299


def test_store_writes_the_named_slots_only():
    pool = make_pool(8)
    slots = pool.alloc(3)
    k = torch.randn(3, 2, 4)
    pool.store(1, torch.tensor(slots), k, -k)
    assert torch.equal(pool.k[1, slots], k) and torch.equal(pool.v[1, slots], -k)
    assert pool.k[0].abs().sum() == 0 and pool.k[1, 0].abs().sum() == 0


def test_req_to_token_rows():
    rows = ReqToTokenPool(max_reqs=3, max_context=5, device="cpu")
    assert rows.table.shape == (3, 5) and rows.table.dtype == torch.int32
    got = [rows.alloc() for _ in range(3)]
    rows.check_integrity()
    assert sorted(got) == [0, 1, 2] and rows.available == 0 and rows.alloc() is None
    rows.free(got[1])
    rows.check_integrity()
    assert rows.available == 1 and rows.alloc() == got[1]
    rows.free(got[0])
    with pytest.raises(AssertionError):
        rows.free(got[0])
    with pytest.raises(AssertionError):
        rows.free(3)
    rows.check_integrity()
    assert rows.available == 1
