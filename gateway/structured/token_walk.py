"""Many token tails at once through one rule's automaton: the vectorised step behind token masks.

A tail is what remains of some tokens below a trie node: Tails is a set of trie nodes, each standing
for the tokens under it, read from that node's depth on. Walking tails from one state of one rule
splits them: tokens the rule reads to their last byte (allowed, whatever the stack below the rule
holds), tokens that die inside the rule, and nodes reached at an exit point, a state where the rule
may call another or return, after at least one byte. From an exit point the rest must be read by
whatever runs next, so those nodes become new tails. What a walk yields depends only on (tails, rule
automaton, exit points, state), never on the stack, so walks are cached per tokenizer and shared by
every schema and stack that meets the same rule.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.structured import form_native
from gateway.structured.token_trie import TokenTrie, runs
from gateway.structured.walk_native import address, walk_native

PACK_ABOVE = 512            # consumed sets larger than this are kept as bitmask words, ready to OR


class Tails:
    """A set of trie nodes: depth -> sorted nodes at that depth (`roots`), with its content key
    (equal tails from different walks share walks) and its global nodes (walk_native.FlatTrie), as
    follow_native reads them. Made from either; the others are worked out when first asked for
    (the C follow asks only for the global nodes)."""
    __slots__ = ("_roots", "_key", "_flat", "_level_off", "_address")

    def __init__(self, roots: dict[int, np.ndarray] | None = None, key: bytes = b"", flat: np.ndarray | None = None,
                 level_off: np.ndarray | None = None):
        self._roots, self._key, self._flat, self._level_off = roots, key, flat, level_off
        self._address = 0

    @classmethod
    def of_global(cls, flat, nodes: np.ndarray) -> "Tails":
        """Sorted int32 global nodes of a FlatTrie as tails."""
        return cls(None, b"", nodes, flat.level_off)

    @property
    def roots(self) -> dict[int, np.ndarray]:
        if self._roots is None:
            level_off, glob = self._level_off, self._flat
            if not len(glob):
                self._roots = {}
                return self._roots
            first, last = (np.searchsorted(level_off, glob[[0, -1]], side="right") - 1).tolist()
            cuts = np.searchsorted(glob, level_off[first:last + 2]).tolist()
            self._roots = {first + i: glob[a:b].astype(np.int64) - level_off[first + i]
                           for i, (a, b) in enumerate(zip(cuts, cuts[1:])) if b > a}
        return self._roots

    @property
    def key(self) -> bytes:
        if not self._key:
            h = hashlib.blake2b(digest_size=16)
            roots = self.roots
            for depth in sorted(roots):
                h.update(depth.to_bytes(2, "little"))
                h.update(roots[depth].tobytes())
            self._key = h.digest()
        return self._key

    def global_nodes(self, flat) -> np.ndarray:
        """The roots as global trie nodes, as follow_native reads them (kept: cached walks' tails
        are followed at many masks)."""
        if self._flat is None:
            self._flat = np.concatenate([flat.level_off[d] + nodes for d, nodes in self._roots.items()]).astype(np.int32)
        return self._flat

    def global_address(self, flat) -> tuple[int, int]:
        """(address, count) of the global nodes, as a C follow seed names them (kept)."""
        if not self._address:
            self._address = address(self.global_nodes(flat))
        return self._address, len(self._flat)


ALL = Tails({0: np.zeros(1, np.int64)}, key=b"all")       # every token, from its first byte
AFTER_FIRST_BYTE = b"after first byte"
WIDE = 64                   # a state taking more first bytes than this walks ALL by first_byte_split


@dataclass(slots=True, eq=False)
class Walk:
    consumed: np.ndarray | None              # token ids the rule reads whole (None: words only)
    words: np.ndarray | None                 # the same as uint32 bitmask words, when large
    exits: list[tuple[int, Tails]]           # (exit state, tails still to read from there)
    by_first_byte: tuple | None = None       # consumed sorted by first byte, and each byte's bounds
    hits: object = None                      # its exit hits indexed for difference_walk, made once

    def first_bytes_in(self, trie: TokenTrie, keep: np.ndarray) -> np.ndarray:
        """The consumed tokens whose first byte `keep` [256 bool] holds (the index is built once:
        shared walks after the first byte are filtered so by many states)."""
        ids, bounds = self.first_byte_index(trie)
        return ids[np.repeat(keep, np.diff(bounds))]

    def first_byte_index(self, trie: TokenTrie) -> tuple[np.ndarray, np.ndarray]:
        if self.by_first_byte is None:
            first = trie.first_byte[self.consumed]
            order = np.argsort(first, kind="stable")
            self.by_first_byte = (self.consumed[order], np.searchsorted(first[order], np.arange(257)))
        return self.by_first_byte


def pack_ids(ids: np.ndarray, num_words: int) -> np.ndarray:
    bits = np.zeros(num_words * 32, np.bool_)
    bits[ids] = True
    return np.packbits(bits, bitorder="little").view(np.uint32)


def or_ids(words: np.ndarray, ids: np.ndarray) -> None:
    """Set the bits of these token ids in uint32 words, in place: by one OR per word touched for
    a few ids, else through a bit per token (a sort of many ids costs more than that)."""
    if len(ids) > 256:
        np.bitwise_or(words, pack_ids(ids, len(words)), out=words)
        return
    if not len(ids):
        return
    ids = np.sort(ids)
    index, bits = ids >> 5, np.left_shift(np.uint32(1), (ids & 31).astype(np.uint32))
    starts = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    words[index[starts]] |= np.bitwise_or.reduceat(bits, starts)


def walk(trie: TokenTrie, num_words: int, trans: np.ndarray, exits: np.ndarray, state: int, tails: Tails) -> Walk:
    """Run the tails from `state`; consumption and exit points count from the first byte read on
    (the caller's stack set already holds every move possible before a byte is read). In C where
    it builds (walk_native), else walk_reference."""
    found = walk_native(trie.flat, trans, exits, state, tails.roots)
    if found is None:
        return walk_reference(trie, num_words, trans, exits, state, tails)
    consumed, *hits = found
    return Walk(consumed, pack_ids(consumed, num_words) if len(consumed) > PACK_ABOVE else None, _exits(*hits))


def walk_reference(trie: TokenTrie, num_words: int, trans: np.ndarray, exits: np.ndarray, state: int,
                   tails: Tails) -> Walk:
    """walk, breadth-first in numpy: a trie level per step."""
    levels = trie.levels
    empty = np.zeros(0, np.int64)
    nodes, states = empty, empty
    ends_lo, ends_n, hits = [], [], []
    last_root = max(tails.roots)
    d = min(tails.roots)
    while True:
        if len(nodes):                                   # moved here by one byte
            level = levels[d]
            n_end = level.ends[nodes]
            has = n_end > 0
            if has.any():
                ends_lo.append(level.lo[nodes[has]])
                ends_n.append(n_end[has])
            at = exits[states]
            if at.any():
                hits.append((np.full(int(at.sum()), d), nodes[at], states[at]))
        root = tails.roots.get(d)
        if root is not None:
            nodes = np.concatenate([nodes, root])
            states = np.concatenate([states, np.full(len(root), state, np.int64)])
        if d >= trie.depth or (not len(nodes) and d >= last_root):
            break
        level = levels[d]
        lo, count = level.child_lo[nodes], level.child_hi[nodes] - level.child_lo[nodes]
        children = runs(lo, count)
        nxt = trans[np.repeat(states, count), levels[d + 1].byte[children]]
        ok = nxt >= 0
        nodes, states = children[ok], nxt[ok].astype(np.int64)
        d += 1
    consumed = trie.tokens(np.concatenate(ends_lo), np.concatenate(ends_n)) if ends_lo else empty
    words = pack_ids(consumed, num_words) if len(consumed) > PACK_ABOVE else None
    return Walk(consumed, words, _exits(*_joined(hits)))


def reachable_form(trans: np.ndarray, exits: np.ndarray, state: int, limit: int = 512):
    """The part of the automaton reachable from `state`, renumbered breadth-first from it:
    (content key, trans, exits, order: new state -> old), or None past `limit` states. Walks from
    equal forms are equal up to that renumbering, so rules that share a tail (every key string of
    every object ends in the same way) share its walks. The search in C (form_native) where it
    builds, else reachable_order."""
    if form_native.native() is not None:
        found = form_native.reach(trans, state, limit)
        if found is None:
            return None
        old, renumber = found
    else:
        old = reachable_order(trans, state, limit)
        if old is None:
            return None
        renumber = np.full(len(trans) + 1, -1, np.int32)          # renumber[-1] stays -1: no transition
        renumber[old] = np.arange(len(old), dtype=np.int32)
    form_trans, form_exits = renumber[trans[old]], exits[old]
    narrow = np.uint8 if len(old) < 255 else np.uint16 if len(old) < 65535 else np.int32   # fewer bytes to hash
    h = hashlib.blake2b((form_trans + 1).astype(narrow), digest_size=16)
    h.update(form_exits)
    return h.digest(), form_trans, form_exits, old


def reachable_order(trans: np.ndarray, state: int, limit: int) -> np.ndarray | None:
    """The states reachable from `state` in breadth-first order (a row's targets in byte order),
    or None past `limit`: the reference of form_native.reach."""
    order, index, i = [state], {state: 0}, 0
    while i < len(order):
        row = trans[order[i]]
        targets = row[row >= 0]
        _, first = np.unique(targets, return_index=True)
        for s in targets[np.sort(first)].tolist():
            if s not in index:
                index[s] = len(order)
                order.append(s)
                if len(order) > limit:
                    return None
        i += 1
    return np.array(order, np.int64)


def after_first_byte(trie: TokenTrie) -> Tails:
    """Every token, from its second byte: the tails first_byte_split shares."""
    return Tails({1: np.arange(len(trie.levels[1].lo))}, key=AFTER_FIRST_BYTE)


def first_byte_split(trie: TokenTrie, num_words: int, trans: np.ndarray, exits: np.ndarray, state: int,
                     walk_from: Callable[[int, Tails], Walk]) -> Walk:
    """walk(state, ALL) put together from cached walks after the first byte, grouped by the state t
    that byte leads to. A group holding much of the vocabulary takes t's walk of every token after
    its first byte (shared: `after_first_byte`), kept to the group's first bytes; a small group
    walks its own subtrees. Walks over disjoint subtrees are independent, so this is the same walk;
    it pays when many states lead to the same few (a key being typed: every byte off the declared
    keys goes to one string state). A large group's tokens stay bitmask words (its shared walk's
    words less those of the first bytes it does not hold), so the walk has no id list: nothing
    reads the ids of a walk from every token."""
    level = trie.levels[1]
    nxt = trans[state, level.byte]
    alive = np.flatnonzero(nxt >= 0)
    single = alive[level.ends[alive] > 0]
    consumed = [trie.tokens(level.lo[single], level.ends[single])]
    words = None
    roots: dict[int, dict[int, list[np.ndarray]]] = {}
    at_exit = exits[nxt[alive]]
    for e in np.unique(nxt[alive][at_exit]).tolist():
        roots.setdefault(e, {})[1] = [alive[at_exit][nxt[alive][at_exit] == e]]
    shared = after_first_byte(trie)
    for t in np.unique(nxt[alive]):
        group = alive[nxt[alive] == t]
        if (level.hi[group] - level.lo[group]).sum() < len(trie.ids) // 4:
            after, keep = walk_from(int(t), Tails({1: group})), None
            consumed.append(after.consumed)
        else:
            after, keep = walk_from(int(t), shared), np.zeros(256, np.bool_)
            keep[level.byte[group]] = True
            if after.words is None:
                consumed.append(after.first_bytes_in(trie, keep))
            else:
                kept = after.words & ~pack_ids(after.first_bytes_in(trie, ~keep), num_words)
                words = kept if words is None else words | kept
        for e, tails in after.exits:
            for d, nodes in tails.roots.items():
                if keep is not None:
                    nodes = nodes[keep[trie.first[trie.levels[d].lo[nodes]]]]
                roots.setdefault(e, {}).setdefault(d, []).append(nodes)
    out_exits = [(e, Tails({d: parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))
                            for d, parts in sorted(depths.items()) if sum(map(len, parts))}))
                 for e, depths in sorted(roots.items())]
    out_exits = [(e, tails) for e, tails in out_exits if tails.roots]
    ids = np.concatenate(consumed)
    if words is not None:
        or_ids(words, ids)
        return Walk(None, words, out_exits)
    return Walk(ids, pack_ids(ids, num_words) if len(ids) > PACK_ABOVE else None, out_exits)


def _joined(hits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not hits:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(part) for part in zip(*hits))


def _exits(depths: np.ndarray, nodes: np.ndarray, states: np.ndarray) -> list[tuple[int, Tails]]:
    """Group the exit hits (node reached at depth in state) by state: per state, the nodes
    reached there, by depth, sorted."""
    if len(nodes) <= 32:                          # the usual few: plain Python is quicker
        few: dict[int, dict[int, list[int]]] = {}
        for state, depth, node in sorted(zip(states.tolist(), depths.tolist(), nodes.tolist())):
            few.setdefault(state, {}).setdefault(depth, []).append(node)
        return [(state, Tails({d: np.array(n, np.int64) for d, n in roots.items()})) for state, roots in few.items()]
    order = np.lexsort((nodes, depths, states))
    depths, nodes, states = depths[order], nodes[order], states[order]
    cuts = np.flatnonzero((np.diff(states) != 0) | (np.diff(depths) != 0)) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    ends = [*starts[1:], len(nodes)]
    out: dict[int, dict[int, np.ndarray]] = {}
    for a, b in zip(starts, ends):
        out.setdefault(int(states[a]), {})[int(depths[a])] = nodes[a:b]
    return [(state, Tails(roots)) for state, roots in out.items()]
