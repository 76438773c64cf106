"""RadixAttention's prefix tree: (namespace, token ids) -> KV slot ids, one token per page.

Each namespace (tenant) has its own subtree, so equal tokens under another namespace never match;
one LRU spans them all. A node holds a segment of tokens and their slots; children are keyed by the
first token of their segment. A lock on a node protects it and every ancestor from eviction.

Ownership: every slot 1..num_slots-1 is free in the pool, held by exactly one tree node, or held by
exactly one running request outside the tree (`check_integrity` proves it).
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gateway.engine.kv_pool import KVPool


@dataclass(slots=True, eq=False)
class Node:
    key: list[int]                       # token segment; empty only for a namespace root
    slots: list[int]                     # KV slot of each token of `key`
    parent: Node | None                  # None for a root, and for a node that has been evicted
    namespace: str
    children: dict[int, Node] = field(default_factory=dict)
    lock_count: int = 0                  # locks held on this node or any descendant
    own_locks: int = 0                   # locks held on exactly this node
    last_access: int = 0

    @property
    def is_root(self) -> bool:
        return not self.key


@dataclass(slots=True)
class PrefixMatch:
    slots: list[int]                     # slot ids of the matched prefix, in order
    node: Node                           # deepest matched node; the namespace root when nothing matched

    @property
    def length(self) -> int:
        return len(self.slots)


@dataclass(slots=True)
class CacheStats:
    queries: int = 0
    queried_tokens: int = 0
    matched_tokens: int = 0
    evicted_slots: int = 0

    @property
    def hit_rate(self) -> float:
        return self.matched_tokens / self.queried_tokens if self.queried_tokens else 0.0


def _as_list(seq: Sequence[int]) -> list[int]:
    if isinstance(seq, list):
        return seq
    return seq.tolist() if hasattr(seq, "tolist") else list(seq)      # tensors and arrays yield ints


def _common_prefix_len(key: list[int], tokens: list[int], start: int) -> int:
    """Length of the common prefix of key and tokens[start:], compared in C-speed chunks."""
    n = min(len(key), len(tokens) - start)
    done = 0
    while done + 64 <= n and key[done:done + 64] == tokens[start + done:start + done + 64]:
        done += 64
    end = min(done + 64, n)
    while done < end and key[done] == tokens[start + done]:
        done += 1
    return done


class RadixCache:
    def __init__(self, pool: KVPool, enabled: bool = True):
        self.pool = pool
        self.enabled = enabled
        self.stats = CacheStats()
        self.evictable_size = 0          # slots in nodes with lock_count == 0
        self.protected_size = 0          # slots in nodes with lock_count > 0
        self._roots: dict[str, Node] = {}
        self._num_nodes = 0              # non-root nodes
        self._clock = 0
        # (last_access, seq, node) for every unlocked leaf, plus stale entries skipped when popped.
        self._heap: list[tuple[int, int, Node]] = []
        self._seq = itertools.count()

    @property
    def total_size(self) -> int:
        return self.evictable_size + self.protected_size

    def match_prefix(self, namespace: str, tokens: Sequence[int]) -> PrefixMatch:
        """Longest cached prefix of tokens. A match ending inside a segment splits that node, so the
        handle covers exactly the match. Callers cap the query themselves (e.g. tokens[:-1])."""
        tokens = _as_list(tokens)
        self.stats.queries += 1
        self.stats.queried_tokens += len(tokens)
        root = self._roots.get(namespace) if self.enabled else None
        if root is None:
            return PrefixMatch([], Node([], [], None, namespace))
        self._clock += 1
        node, matched, slots = self._walk(root, tokens, collect=True)
        self.stats.matched_tokens += matched
        return PrefixMatch(slots, node)

    def insert(self, namespace: str, tokens: Sequence[int], slots: Sequence[int]) -> int:
        """Caches tokens -> slots and returns r, how many leading tokens were already cached.

        The tree takes ownership of slots[r:]. It keeps its own ids for tokens[:r], so slots[:r] stay
        the caller's: those the caller got from the tree (a locked match) it must not free; those it
        allocated itself are duplicates it must free (`insert_and_release` does exactly that).
        """
        tokens, slots = _as_list(tokens), _as_list(slots)
        assert len(tokens) == len(slots), f"{len(tokens)} tokens but {len(slots)} slots"
        if not self.enabled:
            self.pool.free(slots)
            return 0
        if not tokens:
            return 0
        root = self._roots.get(namespace)
        if root is None:
            root = self._roots[namespace] = Node([], [], None, namespace)
        self._clock += 1
        node, cached, _ = self._walk(root, tokens, collect=False)
        if cached < len(tokens):
            leaf = Node(tokens[cached:], slots[cached:], node, namespace, last_access=self._clock)
            node.children[tokens[cached]] = leaf
            self._num_nodes += 1
            self.evictable_size += len(leaf.slots)
            self._push(leaf)
        return cached

    def insert_and_release(self, namespace: str, tokens: Sequence[int], slots: Sequence[int], owned_from: int) -> int:
        """`insert`, then frees the caller's duplicates: slots[owned_from:r] were allocated by the
        caller (slots[:owned_from] came from the tree) but the tree already holds those tokens."""
        cached = self.insert(namespace, tokens, slots)
        assert cached >= owned_from, (
            f"the tree lost tokens {cached}..{owned_from} the caller matched; was the match unlocked?")
        if cached > owned_from:
            self.pool.free(slots[owned_from:cached])
        return cached

    def lock(self, node: Node) -> None:
        """Protects node and its ancestors from eviction. Locking a namespace root does nothing."""
        if node.is_root:
            return
        assert node.parent is not None, "lock() on an evicted node: lock a match before anything can evict"
        node.own_locks += 1
        while not node.is_root:
            if node.lock_count == 0:
                self.evictable_size -= len(node.slots)
                self.protected_size += len(node.slots)
            node.lock_count += 1
            node = node.parent

    def unlock(self, node: Node) -> None:
        if node.is_root:
            return
        assert node.own_locks > 0, "unlock() of a node that is not locked"
        node.own_locks -= 1
        while not node.is_root:
            node.lock_count -= 1
            if node.lock_count == 0:
                self.protected_size -= len(node.slots)
                self.evictable_size += len(node.slots)
                if not node.children:
                    self._push(node)
            node = node.parent

    def evict(self, num_slots: int) -> int:
        """Frees at least num_slots slots if that many are evictable, removing unlocked leaves least
        recently used first; returns how many slots it freed."""
        freed: list[int] = []
        heap = self._heap
        while len(freed) < num_slots and heap:
            stamp, _, node = heapq.heappop(heap)
            if node.parent is None or node.children or node.lock_count:
                continue
            if stamp != node.last_access:
                self._push(node)
                continue
            freed += node.slots
            parent = node.parent
            del parent.children[node.key[0]]
            node.parent = None
            self._num_nodes -= 1
            self.evictable_size -= len(node.slots)
            if parent.is_root:
                if not parent.children:
                    del self._roots[parent.namespace]
            elif not parent.children and not parent.lock_count:
                self._push(parent)
        self.pool.free(freed)
        self.stats.evicted_slots += len(freed)
        return len(freed)

    def reset(self) -> None:
        """Frees every slot the tree holds; nothing may be locked."""
        assert self.protected_size == 0, f"reset() with {self.protected_size} locked slots"
        freed: list[int] = []
        stack = [child for root in self._roots.values() for child in root.children.values()]
        while stack:
            node = stack.pop()
            freed += node.slots
            node.parent = None
            stack += node.children.values()
        self.pool.free(freed)
        self._roots.clear()
        self._heap.clear()
        self._num_nodes = self.evictable_size = 0

    def _walk(self, root: Node, tokens: list[int], collect: bool) -> tuple[Node, int, list[int]]:
        """Follows tokens down from root, touching each node, splitting where the match ends inside a
        segment; returns the deepest node, the match length and (if collect) the matched slots."""
        node, done, n, slots = root, 0, len(tokens), []
        node.last_access = self._clock
        while done < n:
            child = node.children.get(tokens[done])
            if child is None:
                break
            size = len(child.key)
            if tokens[done:done + size] != child.key:
                size = _common_prefix_len(child.key, tokens, done)
                child = self._split(child, size)
            child.last_access = self._clock
            if collect:
                slots += child.slots
            node, done = child, done + size
        return node, done, slots

    def _split(self, child: Node, at: int) -> Node:
        """Cuts child's segment at `at`: a new parent takes the head, child keeps the tail (so handles
        to child still mean the same tokens) and the new parent carries child's locks."""
        parent = child.parent
        assert parent is not None and 0 < at < len(child.key)
        head = Node(child.key[:at], child.slots[:at], parent, child.namespace, {child.key[at]: child},
                    lock_count=child.lock_count, last_access=child.last_access)
        parent.children[child.key[0]] = head
        child.key, child.slots, child.parent = child.key[at:], child.slots[at:], head
        self._num_nodes += 1
        return head

    def _push(self, node: Node) -> None:
        if len(self._heap) > 2 * self._num_nodes + 1024:
            self._heap[:] = [(n.last_access, next(self._seq), n) for n in self._nodes() if self._evictable_leaf(n)]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (node.last_access, next(self._seq), node))

    @staticmethod
    def _evictable_leaf(node: Node) -> bool:
        return not node.children and not node.lock_count

    def _nodes(self) -> Iterable[Node]:
        stack = [child for root in self._roots.values() for child in root.children.values()]
        while stack:
            node = stack.pop()
            yield node
            stack += node.children.values()

    def check_integrity(self, owned: Iterable[int] = ()) -> None:
        """Proves every slot 1..num_slots-1 is exactly one of: free in the pool, held by one tree node,
        or in `owned` (the slots running requests hold outside the tree); and the tree invariants."""
        self.pool.check_integrity()
        num_slots = self.pool.num_slots
        free = np.fromiter(self.pool.free_slot_set(), dtype=np.int64)
        owned_arr = np.fromiter(owned, dtype=np.int64)
        assert owned_arr.size == 0 or (owned_arr.min() > 0 and owned_arr.max() < num_slots), "owned slot out of range"
        tree_slots: list[int] = []
        sizes = [0, 0]                           # evictable, protected
        num_nodes = 0
        for name, root in self._roots.items():
            assert root.is_root and not root.slots and root.parent is None, f"namespace {name!r}: malformed root"
            assert root.namespace == name and root.lock_count == 0 == root.own_locks, f"namespace {name!r}: root state"
            assert root.children, f"namespace {name!r}: empty root kept in the tree"
        in_heap = {id(entry[2]) for entry in self._heap}
        for node in self._nodes():
            num_nodes += 1
            parent = node.parent
            where = f"namespace {node.namespace!r}, segment {node.key[:8]}..."
            assert parent is not None and node.key, f"{where}: detached or empty node in the tree"
            assert parent.children.get(node.key[0]) is node, f"{where}: not keyed by its first token"
            assert node.namespace == parent.namespace, f"{where}: namespace differs from its parent's"
            assert len(node.key) == len(node.slots), f"{where}: {len(node.key)} tokens but {len(node.slots)} slots"
            child_locks = sum(c.lock_count for c in node.children.values())
            assert node.own_locks >= 0 and node.lock_count == node.own_locks + child_locks, (
                f"{where}: lock_count {node.lock_count} != own {node.own_locks} + children {child_locks}")
            assert parent.is_root or parent.last_access >= node.last_access, f"{where}: used after its parent"
            assert not self._evictable_leaf(node) or id(node) in in_heap, f"{where}: evictable leaf not in the heap"
            sizes[node.lock_count > 0] += len(node.slots)
            tree_slots += node.slots
        assert num_nodes == self._num_nodes, f"{num_nodes} nodes but counter says {self._num_nodes}"
        assert sizes == [self.evictable_size, self.protected_size], (
            f"sizes (evictable, protected) {sizes} != counters {[self.evictable_size, self.protected_size]}")
        tree_arr = np.array(tree_slots, dtype=np.int64)
        assert tree_arr.size == 0 or (tree_arr.min() > 0 and tree_arr.max() < num_slots), "tree holds a bad slot id"
        holders = sum(np.bincount(ids, minlength=num_slots) for ids in (free, owned_arr, tree_arr))
        assert holders[0] == 0, "slot 0 (padding) is free, cached or owned"
        bad = np.flatnonzero(holders[1:] != 1) + 1
        if bad.size:
            slot = int(bad[0])
            roles = [role for role, ids in (("free", free), ("owned", owned_arr), ("cached", tree_arr))
                     for _ in range(int((ids == slot).sum()))]
            raise AssertionError(f"{bad.size} slots misaccounted; slot {slot} is {roles or 'nowhere (leaked)'}")
