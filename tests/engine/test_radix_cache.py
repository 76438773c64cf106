"""RadixCache: every case by hand, then random sequences against a naive model of the cache.

`check_integrity` runs after every operation: every slot is free, cached or owned, exactly once.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.engine.kv_pool import KVPool
from gateway.engine.radix_cache import RadixCache


def make_cache(num_slots: int = 64, enabled: bool = True) -> RadixCache:
    return RadixCache(KVPool(1, num_slots, 1, 2, torch.float32, "cpu"), enabled=enabled)


def contents(cache: RadixCache) -> dict[tuple[str, tuple[int, ...]], int]:
    """(namespace, token prefix) -> slot of the prefix's last token, for everything the tree holds."""
    out = {}
    for ns, root in cache._roots.items():
        stack = [(root, ())]
        while stack:
            node, prefix = stack.pop()
            for child in node.children.values():
                path = prefix
                for token, slot in zip(child.key, child.slots):
                    path += (token,)
                    out[(ns, path)] = slot
                stack.append((child, path))
    return out


def insert_fresh(cache: RadixCache, ns: str, tokens: list[int]) -> tuple[int, list[int]]:
    """What a request without a prefix hit does: allocate every slot, insert, free the duplicates."""
    slots = cache.pool.alloc(len(tokens))
    cached = cache.insert_and_release(ns, tokens, slots, owned_from=0)
    cache.check_integrity()
    return cached, slots


def test_empty_cache_matches_nothing_and_root_locks_are_inert():
    cache = make_cache()
    m = cache.match_prefix("a", [1, 2, 3])
    assert m.length == 0 and m.slots == [] and m.node.is_root
    cache.lock(m.node)
    cache.unlock(m.node)
    cache.check_integrity()
    assert cache.total_size == 0 and cache.evict(10) == 0


def test_match_full_longer_and_shorter_queries():
    cache = make_cache()
    _, slots = insert_fresh(cache, "a", [1, 2, 3, 4])
    assert cache.match_prefix("a", [1, 2, 3, 4]).slots == slots
    assert cache.match_prefix("a", [1, 2, 3, 4, 5, 6]).slots == slots
    assert cache.match_prefix("a", [2, 3]).length == 0
    m = cache.match_prefix("a", [1, 2, 9])             # ends inside the segment: split at 2
    cache.check_integrity()
    assert m.slots == slots[:2] and m.node.key == [1, 2] and m.node.slots == slots[:2]
    assert list(m.node.children) == [3] and m.node.children[3].key == [3, 4]
    assert contents(cache) == {("a", (1, 2, 3, 4)[:i]): slots[i - 1] for i in range(1, 5)}


def test_tokens_and_slots_may_be_tensors():
    cache = make_cache()
    slots = cache.pool.alloc(3)
    assert cache.insert("a", torch.tensor([5, 6, 7]), torch.tensor(slots, dtype=torch.int32)) == 0
    cache.check_integrity()
    assert cache.match_prefix("a", torch.tensor([5, 6, 7, 8])).slots == slots


def test_insert_diverging_inside_a_segment_splits_and_returns_shared_length():
    cache = make_cache()
    _, first = insert_fresh(cache, "a", [1, 2, 3, 4])
    free_before = cache.pool.available
    cached, second = insert_fresh(cache, "a", [1, 2, 5, 6])
    assert cached == 2
    assert cache.pool.available == free_before - 2, "the two duplicate slots of [1, 2] go back to the pool"
    assert cache.match_prefix("a", [1, 2, 5, 6]).slots == first[:2] + second[2:]
    assert cache.match_prefix("a", [1, 2, 3, 4]).slots == first
    head = cache._roots["a"].children[1]
    assert head.key == [1, 2] and sorted(head.children) == [3, 5]
    assert cache.total_size == cache.evictable_size == 6


def test_insert_of_a_prefix_or_the_same_key_takes_nothing():
    cache = make_cache(16)
    _, slots = insert_fresh(cache, "a", [1, 2, 3, 4])
    assert insert_fresh(cache, "a", [1, 2])[0] == 2
    assert insert_fresh(cache, "a", [1, 2, 3, 4])[0] == 4
    assert cache.pool.available == 15 - 4 and cache.total_size == 4
    assert cache.match_prefix("a", [1, 2, 3, 4]).slots == slots
    assert cache.insert("a", [], []) == 0


def test_insert_reports_what_the_caller_matched_and_frees_only_its_own_duplicates():
    cache = make_cache(32)
    insert_fresh(cache, "a", [1, 2, 3])
    m = cache.match_prefix("a", [1, 2, 3, 4, 5])
    cache.lock(m.node)
    own = cache.pool.alloc(2)                          # the request computes [4, 5] itself
    other = cache.pool.alloc(4)                        # meanwhile another request caches [4]
    assert cache.insert_and_release("a", [1, 2, 3, 4], other, owned_from=0) == 3
    cache.check_integrity(owned=own)
    cached = cache.insert_and_release("a", [1, 2, 3, 4, 5], m.slots + own, owned_from=m.length)
    cache.unlock(m.node)
    cache.check_integrity()
    assert cached == 4 and cache.pool.is_free(own[0]) and not cache.pool.is_free(own[1])
    assert cache.match_prefix("a", [1, 2, 3, 4, 5]).slots[-1] == own[1]


def test_match_across_many_nodes_returns_slots_in_order():
    cache = make_cache()
    tokens = list(range(10, 20))
    for end in range(1, 11):
        insert_fresh(cache, "a", tokens[:end])
    insert_fresh(cache, "a", tokens[:5] + [99])        # a branch in the middle
    m = cache.match_prefix("a", tokens + [7])
    cache.check_integrity()
    assert m.length == 10 and m.slots == [contents(cache)[("a", tuple(tokens[:i]))] for i in range(1, 11)]
    assert m.node.key == [19] and cache._num_nodes == 11


def test_evict_lru_leaf_first_and_a_parent_that_becomes_a_leaf():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2, 3])
    insert_fresh(cache, "a", [1, 2, 4])                # tree: [1, 2] -> {[3], [4]}
    insert_fresh(cache, "a", [7, 8])
    cache.match_prefix("a", [7, 8])                    # [7, 8] is now the most recent
    assert cache.evict(3) == 4                         # [3], then [4], then [1, 2]: it became a leaf
    cache.check_integrity()
    assert set(contents(cache)) == {("a", (7,)), ("a", (7, 8))}
    assert cache.match_prefix("a", [1, 2, 3]).length == 0
    assert cache.stats.evicted_slots == 4


def test_evict_picks_the_least_recently_used_leaf():
    cache = make_cache()
    for tokens in ([1, 1], [2, 2], [3, 3]):
        insert_fresh(cache, "a", tokens)
    cache.match_prefix("a", [1, 1])
    assert cache.evict(1) == 2
    cache.check_integrity()
    assert {p for _, p in contents(cache)} == {(1,), (1, 1), (3,), (3, 3)}


def test_locked_path_survives_eviction_until_unlocked():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2, 3])
    insert_fresh(cache, "a", [1, 5])
    m = cache.match_prefix("a", [1, 2, 3])
    cache.lock(m.node)
    cache.check_integrity()
    assert (cache.protected_size, cache.evictable_size) == (3, 1)
    assert cache.evict(100) == 1
    cache.check_integrity()
    assert cache.match_prefix("a", [1, 2, 3]).slots == m.slots
    cache.unlock(m.node)
    cache.check_integrity()
    assert (cache.protected_size, cache.evictable_size) == (0, 3)
    assert cache.evict(100) == 3 and cache.total_size == 0
    with pytest.raises(AssertionError, match="evicted"):
        cache.lock(m.node)


def test_locks_survive_splits_by_insert_and_by_match():
    cache = make_cache()
    _, slots = insert_fresh(cache, "a", [1, 2, 3, 4, 5, 6])
    handle = cache.match_prefix("a", [1, 2, 3, 4, 5, 6]).node
    cache.lock(handle)
    insert_fresh(cache, "a", [1, 2, 9])                # splits the locked node at 2
    cache.match_prefix("a", [1, 2, 3, 4, 0])           # splits its tail again at 4
    cache.check_integrity()
    assert handle.key == [5, 6] and handle.own_locks == 1
    assert (cache.protected_size, cache.evictable_size) == (6, 1)
    assert cache.evict(100) == 1 and cache.match_prefix("a", [1, 2, 3, 4, 5, 6]).slots == slots
    cache.unlock(handle)
    cache.check_integrity()
    assert cache.evictable_size == 6 and cache.evict(100) == 6
    cache.check_integrity()


def test_unlock_without_lock_is_rejected():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2])
    node = cache.match_prefix("a", [1, 2]).node
    with pytest.raises(AssertionError, match="not locked"):
        cache.unlock(node)


def test_namespaces_are_isolated_and_share_one_lru():
    cache = make_cache()
    _, a = insert_fresh(cache, "alice", [1, 2, 3])
    assert cache.match_prefix("bob", [1, 2, 3]).length == 0
    cached, b = insert_fresh(cache, "bob", [1, 2, 3])
    assert cached == 0 and set(a).isdisjoint(b)
    cache.match_prefix("alice", [1, 2, 3])             # bob's is now the least recent
    assert cache.evict(1) == 3
    cache.check_integrity()
    assert "bob" not in cache._roots and cache.match_prefix("alice", [1, 2, 3]).slots == a


def test_disabled_cache_matches_nothing_and_keeps_nothing():
    cache = make_cache(16, enabled=False)
    for _ in range(3):
        assert insert_fresh(cache, "a", [1, 2, 3])[0] == 0
        m = cache.match_prefix("a", [1, 2, 3])
        cache.lock(m.node)
        cache.unlock(m.node)
        assert m.length == 0
    cache.check_integrity()
    assert cache.pool.available == 15 and cache.total_size == 0 and cache.evict(5) == 0
    assert cache.stats.queried_tokens == 9 and cache.stats.hit_rate == 0.0


def test_integrity_catches_leaks_and_double_ownership():
    cache = make_cache()
    _, slots = insert_fresh(cache, "a", [1, 2])
    own = cache.pool.alloc(1)
    with pytest.raises(AssertionError, match="leaked"):
        cache.check_integrity()
    cache.check_integrity(owned=own)
    with pytest.raises(AssertionError, match="cached"):
        cache.check_integrity(owned=own + slots[:1])


def test_reset_frees_everything_but_refuses_while_locked():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2, 3])
    insert_fresh(cache, "b", [1, 4])
    m = cache.match_prefix("a", [1, 2])
    cache.lock(m.node)
    with pytest.raises(AssertionError, match="locked"):
        cache.reset()
    cache.unlock(m.node)
    cache.reset()
    cache.check_integrity()
    assert cache.pool.available == 63 and cache.total_size == 0 and cache.match_prefix("a", [1]).length == 0


def test_hit_rate_counts_matched_over_queried_tokens():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2, 3, 4])
    cache.match_prefix("a", [1, 2, 3, 4])
    cache.match_prefix("a", [1, 2, 5, 6])
    assert (cache.stats.queried_tokens, cache.stats.matched_tokens) == (8, 6) and cache.stats.hit_rate == 0.75


def test_heap_stays_bounded_under_lock_churn():
    cache = make_cache()
    insert_fresh(cache, "a", [1, 2, 3])
    node = cache.match_prefix("a", [1, 2, 3]).node
    for _ in range(5000):
        cache.lock(node)
        cache.unlock(node)
    cache.check_integrity()
    assert len(cache._heap) <= 2 * cache._num_nodes + 1025
    assert cache.evict(1) == 3


NAMESPACES = st.sampled_from(["a", "b", "c"])
TOKENS = st.lists(st.integers(0, 2), max_size=8)


class RadixModel(RuleBasedStateMachine):
    """The model: a dict (namespace, prefix) -> slot of the prefix's last token, the time each prefix
    was last touched, the explicit locks and the running requests (which own slots outside the tree)."""

    def __init__(self):
        super().__init__()
        self.cache = make_cache(40)
        self.model: dict[tuple[str, tuple[int, ...]], int] = {}
        self.times: dict[tuple[str, tuple[int, ...]], int] = {}
        self.tick = 0
        self.locks: list[tuple[object, str, tuple[int, ...]]] = []
        self.running: list[dict] = []

    def _match_len(self, ns: str, tokens: list[int]) -> int:
        n = 0
        while n < len(tokens) and (ns, tuple(tokens[:n + 1])) in self.model:
            n += 1
        return n

    def _touch(self, ns: str, tokens: list[int], n: int) -> None:
        self.tick += 1
        for i in range(1, n + 1):
            self.times[(ns, tuple(tokens[:i]))] = self.tick

    def _match(self, ns: str, tokens: list[int]):
        expected = self._match_len(ns, tokens)
        m = self.cache.match_prefix(ns, tokens)
        assert m.length == expected
        assert m.slots == [self.model[(ns, tuple(tokens[:i]))] for i in range(1, expected + 1)]
        self._touch(ns, tokens, expected)
        return m

    def _insert(self, ns: str, tokens: list[int], slots: list[int], owned_from: int) -> None:
        expected = self._match_len(ns, tokens)
        assert self.cache.insert_and_release(ns, tokens, slots, owned_from) == expected
        for i in range(expected + 1, len(tokens) + 1):
            self.model[(ns, tuple(tokens[:i]))] = slots[i - 1]
        self._touch(ns, tokens, len(tokens))

    def _locked(self) -> set[tuple[str, tuple[int, ...]]]:
        held = [(ns, p) for _, ns, p in self.locks]
        held += [(r["ns"], tuple(r["tokens"][:r["cached"]])) for r in self.running]
        return {(ns, p[:i]) for ns, p in held for i in range(1, len(p) + 1)}

    def _evict(self, n: int) -> None:
        before = dict(self.model)
        evictable = self.cache.evictable_size
        freed = self.cache.evict(n)
        after = contents(self.cache)
        removed = set(before) - set(after)
        assert set(after) <= set(before) and freed == len(removed) <= evictable
        assert freed >= n or self.cache.evictable_size == 0
        assert not removed & self._locked(), "evicted a locked prefix"
        locked = self._locked()
        leaves = [k for k in after if k not in locked
                  and not any((k[0], k[1] + (t,)) in after for t in range(3))]
        if removed and leaves:
            assert max(self.times[k] for k in removed) <= min(self.times[k] for k in leaves), "not LRU"
        for k in removed:
            del self.model[k], self.times[k]

    def _alloc(self, n: int) -> list[int] | None:
        if self.cache.pool.available < n:
            self._evict(n - self.cache.pool.available)
        return self.cache.pool.alloc(n)

    @rule(ns=NAMESPACES, tokens=TOKENS)
    def insert(self, ns, tokens):
        slots = self._alloc(len(tokens))
        if slots is not None:
            self._insert(ns, tokens, slots, owned_from=0)

    @rule(ns=NAMESPACES, tokens=TOKENS)
    def match(self, ns, tokens):
        self._match(ns, tokens)

    @rule(ns=NAMESPACES, tokens=TOKENS)
    def lock(self, ns, tokens):
        m = self._match(ns, tokens)
        self.cache.lock(m.node)
        self.locks.append((m.node, ns, tuple(tokens[:m.length])))

    @precondition(lambda self: self.locks)
    @rule(data=st.data())
    def unlock(self, data):
        node, _, _ = self.locks.pop(data.draw(st.integers(0, len(self.locks) - 1)))
        self.cache.unlock(node)

    @rule(n=st.integers(0, 20))
    def evict(self, n):
        self._evict(n)

    @precondition(lambda self: len(self.running) < 3)
    @rule(ns=NAMESPACES, tokens=TOKENS.filter(bool))
    def start_request(self, ns, tokens):
        m = self._match(ns, tokens[:-1])
        self.cache.lock(m.node)
        own = self._alloc(len(tokens) - m.length)
        if own is None:
            self.cache.unlock(m.node)
            return
        self.running.append({"ns": ns, "tokens": tokens, "cached": m.length, "node": m.node, "slots": m.slots + own})

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish_request(self, data):
        r = self.running.pop(data.draw(st.integers(0, len(self.running) - 1)))
        self._insert(r["ns"], r["tokens"], r["slots"], owned_from=r["cached"])
        self.cache.unlock(r["node"])

    @invariant()
    def consistent(self):
        owned = [s for r in self.running for s in r["slots"][r["cached"]:]]
        self.cache.check_integrity(owned)
        assert contents(self.cache) == self.model
        assert all((ns, p[:-1]) in self.model for ns, p in self.model if len(p) > 1), "not prefix-closed"
        assert self._locked() <= set(self.model)
        assert self.cache.protected_size == len(self._locked())


TestRadixModel = RadixModel.TestCase
TestRadixModel.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
