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
from bisect import bisect_left, bisect_right

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

/* The reference's bitmask words put right at the nodes found: the sorted tokens lo[i]..hi[i] are
   set where states[i] is alive (the node's own tokens) and cleared where it is dead (its subtree's). */
void put_right(uint32_t *words, const int64_t *ids, const int64_t *lo, const int64_t *hi,
               const int32_t *states, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = lo[i]; k < hi[i]; k++) {
            int64_t id = ids[k];
            if (states[i] >= 0) words[id >> 5] |= 1u << (id & 31);
            else words[id >> 5] &= ~(1u << (id & 31));
        }
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
            dll.put_right.restype = None
            dll.put_right.argtypes = [p, p, p, p, p, i64]
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
    return None if n < 0 else (buf[:n], buf[limit:limit + n], buf[2 * limit:2 * limit + n])


def corrected(trie: TokenTrie, num_words: int, exits: np.ndarray, reference: Walk, found) -> Walk:
    """The reference walk with the differing nodes `found` (differences) put right: their tokens and
    exit hits are the state's, and where the state's run dies (a cut) the subtree below is dropped.
    Exit tails that nothing touches stay the reference's own objects. The nodes found are few (a
    declared key's next bytes): the bitmask is put right in C, the exit tails in Python."""
    flat = trie.flat
    level_off = flat.level_off.tolist()
    nodes, states = found[0], np.ascontiguousarray(found[1], np.int32)
    rows = flat.nodes[nodes]
    lo = rows["tok"].astype(np.int64)
    hi = lo + rows["ends"]
    live = states >= 0
    cuts, added = [], {}
    for i in np.flatnonzero(~live).tolist():         # a dead run drops the node's whole subtree
        n = int(nodes[i])
        d = bisect_right(level_off, n) - 1
        hi[i] = trie.levels[d].hi[n - level_off[d]]
        cuts.append((int(lo[i]), int(hi[i]), d))
    if reference.words is None:                # the same tokens as words: made once per reference
        reference.words = pack_ids(reference.consumed, num_words)
    words = reference.words.copy()
    address = lambda a: a.__array_interface__["data"][0]
    native().put_right(address(words), flat.arrays[2], address(lo), address(hi), address(states), len(nodes))
    exiting = live & exits[np.maximum(states, 0)]
    for n, q in zip(nodes[exiting].tolist(), states[exiting].tolist()):
        d = bisect_right(level_off, n) - 1
        added.setdefault(q, []).append((d, n - level_off[d]))
    changed = set(nodes.tolist())
    out = []
    for i, (state, tails) in enumerate(reference.exits):
        toks, hits, at = _hits(trie, reference)[i]
        gone = []
        for a, b, dc in cuts:
            gone += [hits[j][:2] for j in range(bisect_left(toks, a), bisect_left(toks, b)) if hits[j][0] > dc]
        for glob in changed & at:
            d = bisect_right(level_off, glob) - 1
            gone.append((d, glob - level_off[d]))
        more = added.pop(state, [])
        if not gone and not more:
            out.append((state, tails))
            continue
        roots = dict(tails.roots)
        for d, drop in _by_depth(gone).items():           # hits of the reference: in its sorted roots
            keep = np.ones(len(roots[d]), np.bool_)
            keep[np.searchsorted(roots[d], drop)] = False
            roots[d] = roots[d][keep]
        for d, put in _by_depth(more).items():            # changed nodes: none left in the roots
            roots[d] = np.sort(np.concatenate([roots[d], put])) if d in roots else np.sort(put)
        roots = {d: nodes for d, nodes in sorted(roots.items()) if len(nodes)}
        if roots:
            out.append((state, Tails(roots)))
    for state, more in added.items():
        out.append((state, Tails({d: np.sort(n) for d, n in sorted(_by_depth(more).items())})))
    return Walk(None, words, sorted(out, key=lambda x: x[0]))


def _by_depth(pairs: list[tuple[int, int]]) -> dict[int, np.ndarray]:
    """(depth, node) pairs as depth -> int64 nodes."""
    out: dict[int, list[int]] = {}
    for d, node in pairs:
        out.setdefault(d, []).append(node)
    return {d: np.array(nodes, np.int64) for d, nodes in out.items()}


def _hits(trie: TokenTrie, walk: Walk) -> list[tuple[list[int], list[tuple[int, int, int]], set[int]]]:
    """Per exit of the walk, its hits sorted by the first sorted token under each node (a subtree's
    hits are a run of them): those tokens, the hits as (depth, node, global node), and the set of
    their global nodes; made once per walk (a reference serves every state of its rule)."""
    if walk.hits is None:
        flat, walk.hits = trie.flat, []
        for _, tails in walk.exits:
            hits = []
            for d, nodes in tails.roots.items():
                glob = flat.level_off[d] + nodes
                hits += zip(flat.nodes["tok"][glob].tolist(), [d] * len(nodes), nodes.tolist(), glob.tolist())
            hits.sort()
            walk.hits.append(([h[0] for h in hits], [h[1:] for h in hits], {h[3] for h in hits}))
    return walk.hits
