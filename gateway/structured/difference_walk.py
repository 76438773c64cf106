"""A wide state's walk from every token as another state's walk of the same rule, corrected where the
two differ.

A key of an object that allows other keys is typed through "any string but the declared keys": from
each state on a declared key's prefix, almost every byte leads to the same state as the plain key
string's body (the reference), and only the bytes that go on along a declared key lead elsewhere.
Runs from both states over the trie are then in the same state below every node but a few, and where
two runs are in the same state their subtrees read alike (the same tokens, the same exits, numbered
alike: one rule). So the walk from the state is the reference's walk (cached: made once per rule)
with the nodes where the runs differ put right: their own tokens and exit hits are the state's,
and where the state's run dies and the reference's goes on, the subtree is cut out. Finding those
nodes is a depth-first pass in C that descends only where the runs differ; past `limit` of them
the caller walks another way (first_byte_split).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

from gateway.structured.token_trie import TokenTrie
from gateway.structured.token_walk import Tails, Walk, or_ids, pack_ids
from gateway.structured.walk_native import compiled

SOURCE = r"""
#include <stdint.h>

typedef struct { int32_t child_lo, child_hi, tok; uint16_t ends; uint8_t byte, pad; } Node;

/* From the root, every node where a run from q and a run from g (states of one automaton, -1:
   dead) are in different states: (global node, q's state, g's state). Descends only below nodes
   where q's run is alive and differs. Returns the count, or -1 past cap. */
int64_t differ(const int32_t *trans, int32_t q, int32_t g, const Node *nodes, int64_t cap,
               int32_t *out_node, int32_t *out_q, int32_t *out_g, int32_t *stack, int64_t stack_cap) {
    int64_t n = 0, top = 0;
    stack[0] = 0; stack[1] = q; stack[2] = g; top = 1;
    while (top > 0) {
        top--;
        const Node *nd = nodes + stack[3 * top];
        int32_t sq = stack[3 * top + 1], sg = stack[3 * top + 2];
        const int32_t *rq = trans + (int64_t)sq * 256, *rg = sg >= 0 ? trans + (int64_t)sg * 256 : 0;
        for (int32_t c = nd->child_lo; c < nd->child_hi; c++) {
            int32_t tq = rq[nodes[c].byte], tg = rg ? rg[nodes[c].byte] : -1;
            if (tq == tg) continue;
            if (n >= cap) return -1;
            out_node[n] = c; out_q[n] = tq; out_g[n] = tg; n++;
            if (tq < 0 || nodes[c].child_lo == nodes[c].child_hi) continue;
            if (top >= stack_cap) return -1;
            stack[3 * top] = c; stack[3 * top + 1] = tq; stack[3 * top + 2] = tg; top++;
        }
    }
    return n;
}

static int64_t lower(const int32_t *a, int64_t n, int32_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) { int64_t m = (lo + hi) / 2; if (a[m] < x) lo = m + 1; else hi = m; }
    return lo;
}

/* The reference walk put right at the n nodes found (global node, the state's state there, -1:
   dead). Words: a live node's own tokens are set, a dead node's whole subtree's cleared. Exit hits
   of the reference (sorted by first token, then depth): those at a found node, and those inside a
   dead node's subtree, get removed[k] = 1. A live node at an exit state is a new hit, written as
   state << 32 | node to added. Returns how many were added. */
int64_t correct(uint32_t *words, const int64_t *ids, const Node *nodes, const int32_t *node_hi,
                const int64_t *level_off, int64_t n_levels, const int32_t *found, const int32_t *states,
                int64_t n, const uint8_t *exits, const int32_t *h_tok, const int32_t *h_glob,
                const int32_t *h_depth, int64_t n_hits, uint8_t *removed, int64_t *added) {
    int64_t n_added = 0;
    for (int64_t k = 0; k < n_hits; k++) removed[k] = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t node = found[i], q = states[i];
        int64_t lo = nodes[node].tok, hi, d = 0;
        while (d + 1 < n_levels && level_off[d + 1] <= node) d++;
        int64_t k = lower(h_tok, n_hits, (int32_t)lo);
        for (int64_t j = k; j < n_hits && h_tok[j] == lo; j++)
            if (h_glob[j] == node) removed[j] = 1;
        if (q >= 0) {
            hi = lo + nodes[node].ends;
            for (int64_t t = lo; t < hi; t++) words[ids[t] >> 5] |= 1u << (ids[t] & 31);
            if (exits[q]) added[n_added++] = ((int64_t)q << 32) | (uint32_t)node;
        } else {
            hi = node_hi[node];
            for (int64_t t = lo; t < hi; t++) words[ids[t] >> 5] &= ~(1u << (ids[t] & 31));
            for (int64_t j = k; j < n_hits && h_tok[j] < hi; j++)
                if (h_depth[j] > d) removed[j] = 1;
        }
    }
    return n_added;
}
"""

_dll: list = []


def native():
    if not _dll:
        dll = None if os.environ.get("RADIXGATE_NUMPY_WALK") else compiled(SOURCE, "difference_walk")
        if dll is not None:
            p, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
            dll.differ.restype = i64
            dll.differ.argtypes = [p, i32, i32, p, i64, p, p, p, p, i64]
            dll.correct.restype = i64
            dll.correct.argtypes = [p, p, p, p, p, i64, p, p, i64, p, p, p, p, i64, p, p]
        _dll.append(dll)
    return _dll[0]


def differences(trie: TokenTrie, trans: np.ndarray, q: int, g: int, limit: int):
    """(global nodes, q's states, g's states) where runs from q and g differ, or None (past limit,
    or no C compiler)."""
    dll = native()
    if dll is None:
        return None
    flat, trans = trie.flat, np.ascontiguousarray(trans, np.int32)
    buf = np.empty(6 * limit + 3, np.int32)               # three outputs, then the stack
    at = buf.__array_interface__["data"][0]
    n = dll.differ(trans.__array_interface__["data"][0], q, g, flat.nodes.__array_interface__["data"][0], limit,
                   at, at + 4 * limit, at + 8 * limit, at + 12 * limit, limit + 1)
    return None if n < 0 else (buf[:n], buf[limit:limit + n], buf[2 * limit:2 * limit + n], at, at + 4 * limit)


def corrected(trie: TokenTrie, num_words: int, exits: np.ndarray, reference: Walk, found) -> Walk:
    """The reference walk with the differing nodes `found` (differences) put right: their tokens and
    exit hits are the state's, and where the state's run dies (a cut) the subtree below is dropped.
    Exit tails that nothing touches stay the reference's own objects. The words and the exit hits
    to drop or add are worked out in one C pass (over the reference's hits indexed once: _indexed),
    the touched tails rebuilt here."""
    flat, index = trie.flat, _indexed(trie, reference)
    nodes, states, nodes_at, states_at = found[0], found[1], found[3], found[4]
    if reference.words is None:                # the same tokens as words: made once per reference
        reference.words = pack_ids(reference.consumed, num_words)
    words = reference.words.copy()
    removed = np.empty(len(index.glob), np.uint8)
    added = np.empty(len(nodes), np.int64)
    n = native().correct(_at(words), flat.arrays[2], flat.arrays[1], flat.node_hi_at, flat.arrays[0],
                         len(flat.level_off) - 1, nodes_at, states_at, len(nodes), _at(exits), *index.addresses,
                         len(index.glob), _at(removed), _at(added))
    more: dict[int, np.ndarray] = {}
    if n:
        added = np.sort(added[:n])
        state_of = (added >> 32).tolist()
        cuts = [0, *(np.flatnonzero(np.diff(added >> 32)) + 1).tolist(), n]
        for a, b in zip(cuts, cuts[1:]):
            more[state_of[a]] = (added[a:b] & 0xFFFFFFFF).astype(np.int32)
    gone = np.flatnonzero(removed)
    touched = set(index.exit_of[gone].tolist()) if len(gone) else set()
    out = []
    for i, (state, tails) in enumerate(reference.exits):
        put = more.pop(state, None)
        if i not in touched and put is None:
            out.append((state, tails))
            continue
        at = index.positions[i]
        kept = index.glob[at[removed[at] == 0]] if i in touched else index.glob[at]
        glob = np.sort(kept if put is None else np.concatenate([kept, put]))
        if len(glob):
            out.append((state, Tails.of_global(flat, glob)))
    out += [(state, Tails.of_global(flat, glob)) for state, glob in more.items()]
    return Walk(None, words, sorted(out, key=lambda x: x[0]))


def _at(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@dataclass(slots=True)
class _Index:
    """A reference walk's exit hits, indexed once: as int32 first tokens, global nodes and depths
    sorted by (first token, depth) for the C pass (a subtree's hits are a run of them), the exit
    each came from, and per exit its hits' positions."""
    tok: np.ndarray
    glob: np.ndarray
    depth: np.ndarray
    exit_of: np.ndarray
    positions: list[np.ndarray]
    addresses: list[int] = None

    def __post_init__(self):
        self.addresses = [_at(self.tok), _at(self.glob), _at(self.depth)]


def _indexed(trie: TokenTrie, walk: Walk) -> _Index:
    """The walk's hit index, made once per walk (a reference serves every state of its rule; copies of
    a walk numbered another way share the list it is kept in: masks._by_form)."""
    if walk.hits is None:
        walk.hits = []
    if not walk.hits:
        flat = trie.flat
        parts = [tails.global_nodes(flat) for _, tails in walk.exits]
        glob = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        exit_of = np.repeat(np.arange(len(parts)), [len(p) for p in parts]).astype(np.int32)
        tok = flat.nodes["tok"][glob]
        depth = (np.searchsorted(flat.level_off, glob, side="right") - 1).astype(np.int32)
        order = np.lexsort((depth, tok))
        where = np.empty(len(order), np.int64)
        where[order] = np.arange(len(order))
        bounds = np.cumsum([0, *map(len, parts)]).tolist()
        walk.hits.append(_Index(np.ascontiguousarray(tok[order], np.int32), glob[order], depth[order],
                                exit_of[order], [where[a:b] for a, b in zip(bounds, bounds[1:])]))
    return walk.hits[0]
