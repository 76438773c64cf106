"""A wide state's walk from every token as another state's walk of the same rule, corrected where the
two differ.

A key of an object that allows other keys is typed through "any string but the declared keys": from
each state on a declared key's prefix, almost every byte leads to the same state as the plain key
string's body (the reference), and only the bytes that go on along a declared key lead elsewhere.
Runs from both states over the trie are then in the same state below every node but a few, and where
two runs are in the same state their subtrees read alike (the same tokens, the same exits, numbered
alike: one rule). So the walk from the state is the reference's walk (cached: made once per rule,
and found by its reachable form, masks._by_form: once per tokenizer for the other keys' string body)
with the nodes where the runs differ put right: their own tokens and exit hits are the state's,
and where the state's run dies and the reference's goes on, the subtree is cut out. Finding those
nodes is a depth-first pass in C that descends only where the runs differ; past `limit` of them
the caller walks another way (first_byte_split). Putting them right is a second C pass: the words,
and the exits as rows over the reference's hits indexed once, so a new key state costs two C calls
and a few Python objects (~30 µs), not a Python edit of its tails (~0.6 ms before).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

from gateway.structured.token_trie import TokenTrie
from gateway.structured.token_walk import Tails, Walk, or_ids, pack_ids
from gateway.structured.walk_native import address, compiled

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>

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

/* The state most tokens' first bytes lead to from the row: level-1 nodes' bytes and token counts;
   ties go to the lowest state. Returns its token count << 32 | the state, or -1: no byte is alive. */
int64_t major(const int32_t *row, const int32_t *bytes, const int64_t *weights, int64_t n) {
    int32_t t[256]; int64_t w[256]; int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t s = row[bytes[i]];
        if (s < 0) continue;
        int64_t j = 0;
        while (j < k && t[j] != s) j++;
        if (j == k) { t[k] = s; w[k] = 0; k++; }
        w[j] += weights[i];
    }
    int32_t best = -1; int64_t most = -1;
    for (int64_t j = 0; j < k; j++)
        if (w[j] > most || (w[j] == most && t[j] < best)) { best = t[j]; most = w[j]; }
    return best < 0 ? -1 : (most << 32) | best;
}

static int64_t lower(const int32_t *a, int64_t n, int32_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) { int64_t m = (lo + hi) / 2; if (a[m] < x) lo = m + 1; else hi = m; }
    return lo;
}

static int by_state_node(const void *a, const void *b) {
    const int32_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

/* The reference walk put right at the n nodes found (global node, the state's state there, -1:
   dead). Words: a live node's own tokens are set, a dead node's whole subtree's cleared. Exit hits
   of the reference (h_*: sorted by first token, then depth; by_exit: each exit's, sorted by node)
   at a found node, or inside a dead node's subtree, are dropped; a live node at an exit state is a
   new hit. Out: one row (state, reference exit kept as it is or -1, start, end) per exit of the
   result, the nodes of rebuilt ones in out_glob[start:end], sorted. Returns the rows written.
   scratch: n_hits + 2 n int32. */
int64_t correct(uint32_t *words, const int64_t *ids, const Node *nodes, const int32_t *node_hi,
                const int64_t *level_off, int64_t n_levels, const int32_t *found, const int32_t *states,
                int64_t n, const uint8_t *exits, const int32_t *h_tok, const int32_t *h_glob,
                const int32_t *h_depth, const int32_t *ref_states, const int32_t *exit_off, const int32_t *by_exit,
                int64_t n_hits, int64_t n_exits, int32_t *scratch, int32_t *out, int32_t *out_glob) {
    int32_t *removed = scratch, *added = scratch + n_hits;
    int64_t n_added = 0, rows = 0, g = 0;
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
            if (exits[q]) { added[2 * n_added] = q; added[2 * n_added + 1] = node; n_added++; }
        } else {
            hi = node_hi[node];
            for (int64_t t = lo; t < hi; t++) words[ids[t] >> 5] &= ~(1u << (ids[t] & 31));
            for (int64_t j = k; j < n_hits && h_tok[j] < hi; j++)
                if (h_depth[j] > d) removed[j] = 1;
        }
    }
    qsort(added, n_added, 2 * sizeof(int32_t), by_state_node);
    for (int64_t e = 0; e < n_exits; e++) {
        int32_t s = ref_states[e];
        int64_t a = 0, b, gone = 0;
        while (a < n_added && added[2 * a] < s) a++;
        for (b = a; b < n_added && added[2 * b] == s; b++) added[2 * b] = -1 - added[2 * b];   /* taken */
        for (int64_t k = exit_off[e]; k < exit_off[e + 1]; k++) gone += removed[by_exit[k]];
        if (!gone && a == b) {
            out[4 * rows] = s; out[4 * rows + 1] = (int32_t)e; out[4 * rows + 2] = out[4 * rows + 3] = 0; rows++;
            continue;
        }
        int64_t start = g, k = exit_off[e];
        while (k < exit_off[e + 1] || a < b) {         /* the kept hits and the new ones, merged by node */
            if (k < exit_off[e + 1] && removed[by_exit[k]]) { k++; continue; }
            if (a < b && (k >= exit_off[e + 1] || added[2 * a + 1] < h_glob[by_exit[k]])) out_glob[g++] = added[2 * a++ + 1];
            else out_glob[g++] = h_glob[by_exit[k++]];
        }
        if (g > start) {
            out[4 * rows] = s; out[4 * rows + 1] = -1; out[4 * rows + 2] = (int32_t)start; out[4 * rows + 3] = (int32_t)g;
            rows++;
        }
    }
    for (int64_t a = 0; a < n_added;) {                /* new exit states */
        int32_t s = added[2 * a];
        if (s < 0) { a++; continue; }
        int64_t start = g;
        while (a < n_added && added[2 * a] == s) out_glob[g++] = added[2 * a++ + 1];
        out[4 * rows] = s; out[4 * rows + 1] = -1; out[4 * rows + 2] = (int32_t)start; out[4 * rows + 3] = (int32_t)g;
        rows++;
    }
    return rows;
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
            dll.correct.argtypes = [p, p, p, p, p, i64, p, p, i64, p, p, p, p, p, p, p, i64, i64, p, p, p]
            dll.major.restype = i64
            dll.major.argtypes = [p, p, p, i64]
        _dll.append(dll)
    return _dll[0]


def reference_state(trie: TokenTrie, trans_at: int, state: int) -> tuple[int, int] | None:
    """(the state most tokens' first bytes lead to from `state` of the int32 table at trans_at, how
    many tokens), or None (no byte leads anywhere, or no C compiler)."""
    dll = native()
    if dll is None:
        return None
    level = _level_one(trie)
    found = dll.major(trans_at + 1024 * state, level[2], level[3], len(level[0]))
    return None if found < 0 else (found & 0xFFFFFFFF, found >> 32)


def _level_one(trie: TokenTrie) -> tuple:
    """The trie's first level as int32 bytes and int64 token counts, with their addresses (kept)."""
    found = getattr(trie.flat, "level_one", None)
    if found is None:
        level = trie.levels[1]
        b, w = level.byte.astype(np.int32), (level.hi - level.lo).astype(np.int64)
        found = trie.flat.level_one = (b, w, _at(b), _at(w))
    return found


def differences(trie: TokenTrie, trans_at: int, q: int, g: int, limit: int):
    """(global nodes, q's states, g's states, and the addresses of the first two) where runs from q
    and g (states of the int32 table at trans_at) differ, or None (past limit, or no C compiler)."""
    dll = native()
    if dll is None:
        return None
    buf = np.empty(6 * limit + 3, np.int32)               # three outputs, then the stack
    at = _at(buf)
    n = dll.differ(trans_at, q, g, trie.flat.arrays[1], limit, at, at + 4 * limit, at + 8 * limit, at + 12 * limit,
                   limit + 1)
    return None if n < 0 else (buf[:n], buf[limit:limit + n], buf[2 * limit:2 * limit + n], at, at + 4 * limit)


def corrected(trie: TokenTrie, num_words: int, exits_at: int, reference: Walk, found) -> Walk:
    """The reference walk with the differing nodes `found` (differences) put right (exits_at: the
    address of the rule's exit points as bytes): their tokens and
    exit hits are the state's, and where the state's run dies (a cut) the subtree below is dropped.
    Exit tails that nothing touches stay the reference's own objects. One C pass over the reference's
    hits (indexed once: _indexed) puts the words right and lists the exits, rebuilt ones' nodes
    with them."""
    flat, index = trie.flat, _indexed(trie, reference)
    n, n_hits, n_exits = len(found[0]), len(index.glob), len(reference.exits)
    if reference.words is None:                # the same tokens as words: made once per reference
        reference.words = pack_ids(reference.consumed, num_words)
    w = len(reference.words)
    # one buffer, one address: the words, this copy's exit states, scratch, exit rows, their nodes
    buf = np.empty(w + n_exits + 2 * n_hits + 3 * n + 4 * (n_exits + n), np.int32)
    words = buf[:w].view(np.uint32)
    words[:] = reference.words
    buf[w:w + n_exits] = [state for state, _ in reference.exits]
    at = _at(buf)
    scratch = w + n_exits
    rows = scratch + n_hits + 2 * n
    nodes = rows + 4 * (n_exits + n)
    count = native().correct(at, flat.arrays[2], flat.arrays[1], flat.node_hi_at, flat.arrays[0],
                             len(flat.level_off) - 1, found[3], found[4], n, exits_at, *index.addresses[:3],
                             at + 4 * w, *index.addresses[3:], n_hits, n_exits, at + 4 * scratch, at + 4 * rows,
                             at + 4 * nodes)
    out = []
    for state, kept, a, b in buf[rows:rows + 4 * count].reshape(-1, 4).tolist():
        out.append((state, reference.exits[kept][1] if kept >= 0 else
                    Tails.of_global(flat, buf[nodes + a:nodes + b].copy())))
    return Walk(None, words, sorted(out, key=lambda x: x[0]))


_at = address


@dataclass(slots=True)
class _Index:
    """A reference walk's exit hits, indexed once for the C pass: as int32 first tokens, global nodes
    and depths sorted by (first token, depth) (a subtree's hits are a run of them); per exit (CSR by
    exit_off, in the walk's order of exits: copies numbered another way share it) the positions of
    its hits, sorted by node."""
    tok: np.ndarray
    glob: np.ndarray
    depth: np.ndarray
    exit_off: np.ndarray
    by_exit: np.ndarray
    addresses: list[int] = None

    def __post_init__(self):
        self.addresses = [_at(a) for a in (self.tok, self.glob, self.depth, self.exit_off, self.by_exit)]


def _indexed(trie: TokenTrie, walk: Walk) -> _Index:
    """The walk's hit index, made once per walk (a reference serves every state of its rule; copies of
    a walk numbered another way share the list it is kept in: masks._by_form, and their exits' order)."""
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
        where = np.empty(len(order), np.int32)
        where[order] = np.arange(len(order))
        walk.hits.append(_Index(np.ascontiguousarray(tok[order], np.int32), glob[order], depth[order],
                                np.cumsum([0, *map(len, parts)]).astype(np.int32),
                                where[np.lexsort((glob, exit_of))]))
    return walk.hits[0]
