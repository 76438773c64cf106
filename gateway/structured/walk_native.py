"""token_walk.walk in C: the same walk depth-first over the trie, built at first use with the
system C compiler and loaded through ctypes. The numpy walk stays as its reference (tests compare
the two) and as the fallback where no compiler is found.

Why C: a walk visits up to the whole trie (275k nodes for Llama 3 through a string body) and most
masks need a few fresh walks of a few hundred nodes; numpy pays ~20 calls per trie level whatever
the number of nodes, so small walks cost ~0.3 ms and wide ones ~15 ms. Here a node costs a few ns.

Invariants the C side relies on (checked by TokenTrie.check and Dfa.check): children of a node are
a contiguous run of the next level, transitions are -1 or a state of the same automaton.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

SOURCE = r"""
#include <stdint.h>

typedef struct {            /* one trie node: 16 bytes, so a node's children share cache lines */
    int32_t child_lo, child_hi;     /* its children, as global nodes */
    int32_t tok;                    /* first sorted token under it */
    uint16_t ends;                  /* sorted tokens from tok that end here */
    uint8_t byte, pad;              /* the byte that leads to it */
} Node;

/* Depth-first from every root (nodes of one trie level): (global node, depth, state) on an
   explicit stack. A node reached by a byte records its tokens (those ending there) and, at an
   exit state, a hit. Outputs are appended from counts[0] (tokens) and counts[1] (hits) on, so
   roots of several depths take one call each. Returns 0, or -1 when a buffer would overflow
   (roots that overlap: the caller falls back). */
int64_t walk(const int32_t *trans, const uint8_t *exits, int32_t start, int32_t max_depth,
             const int64_t *level_off, const Node *nodes, const int64_t *ids,
             const int64_t *roots, int64_t n_roots, int32_t root_depth,
             int64_t *stack_node, int32_t *stack_depth, int32_t *stack_state, int64_t stack_cap,
             int64_t *consumed, int64_t consumed_cap, int64_t *counts,
             int64_t *hit_depth, int64_t *hit_node, int64_t *hit_state, int64_t hit_cap)
{
    int64_t top = 0, nc = counts[0], nh = counts[1];
    if (n_roots > stack_cap) return -1;
    for (int64_t r = 0; r < n_roots; r++) {
        stack_node[top] = level_off[root_depth] + roots[r]; stack_depth[top] = root_depth;
        stack_state[top] = start; top++;
    }
    while (top > 0) {
        top--;
        const Node *node = nodes + stack_node[top];
        int32_t d = stack_depth[top], s = stack_state[top];
        if (d >= max_depth) continue;
        const int32_t *row = trans + (int64_t)s * 256;
        for (int64_t c = node->child_lo; c < node->child_hi; c++) {
            const Node *child = nodes + c;
            int32_t t = row[child->byte];
            if (t < 0) continue;
            int64_t e = child->ends;
            if (e > 0) {
                if (nc + e > consumed_cap) return -1;
                for (int64_t k = 0; k < e; k++) consumed[nc++] = ids[child->tok + k];
            }
            if (exits[t]) {
                if (nh >= hit_cap) return -1;
                hit_depth[nh] = d + 1; hit_node[nh] = c - level_off[d + 1]; hit_state[nh] = t; nh++;
            }
            if (top >= stack_cap) return -1;
            stack_node[top] = c; stack_depth[top] = d + 1; stack_state[top] = t; top++;
        }
    }
    counts[0] = nc; counts[1] = nh;
    return 0;
}
"""

_PTR = ctypes.c_void_p


def _data_offset() -> int | None:
    """Where CPython keeps an ndarray's data pointer inside the object (numpy's PyArrayObject: right
    after the object head), if it is there in this build; checked on a probe, else None."""
    probe = np.arange(4, dtype=np.int32)[1:]
    for offset in (2 * ctypes.sizeof(ctypes.c_void_p),):
        if ctypes.c_void_p.from_address(id(probe) + offset).value == probe.__array_interface__["data"][0]:
            return offset
    return None


_DATA = _data_offset()


def address(a: np.ndarray) -> int:
    """The address of an ndarray's first element: read from the object itself (~0.6 µs) where its
    layout was confirmed, else through __array_interface__ (~3 µs, and more for structured dtypes);
    C calls take a few per mask."""
    if _DATA is not None and type(a) is np.ndarray:
        return ctypes.c_void_p.from_address(id(a) + _DATA).value or 0
    return a.__array_interface__["data"][0]


NODE = np.dtype([("child_lo", "<i4"), ("child_hi", "<i4"), ("tok", "<i4"), ("ends", "<u2"), ("byte", "u1"),
                 ("pad", "u1")])


def compiled(source: str, name: str) -> ctypes.CDLL | None:
    """The C source built as a shared library, cached per source and Python build under
    ~/.cache/radixgate; None when no C compiler works."""
    tag = hashlib.blake2b(source.encode() + sys.version.encode() + platform.machine().encode(),
                          digest_size=8).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radixgate"
    lib = cache / f"{name}_{tag}.so"
    if not lib.exists():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src, out = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
                src.write_text(source)
                subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
                               check=True, capture_output=True, timeout=60)
                os.replace(out, lib)             # atomic: processes building at once all load a whole file
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        return ctypes.CDLL(str(lib))
    except OSError:
        return None


def _build() -> ctypes.CDLL | None:
    dll = compiled(SOURCE, "token_walk")
    if dll is None:
        return None
    dll.walk.restype = ctypes.c_int64
    i64, i32 = ctypes.c_int64, ctypes.c_int32
    dll.walk.argtypes = [_PTR, _PTR, i32, i32, _PTR, _PTR, _PTR, _PTR, i64, i32, _PTR, _PTR, _PTR, i64,
                         _PTR, i64, _PTR, _PTR, _PTR, _PTR, i64]
    return dll


_dll: list = []


def native() -> ctypes.CDLL | None:
    if not _dll:
        _dll.append(None if os.environ.get("RADIXGATE_NUMPY_WALK") else _build())
    return _dll[0]


class FlatTrie:
    """A TokenTrie's levels laid end to end (global node = level offset + node), as the C walk
    reads them, with the walk's buffers (one set per thread: masks may be computed off the step loop)."""

    def __init__(self, trie):
        levels = trie.levels
        self.level_off = np.concatenate([[0], np.cumsum([len(l.lo) for l in levels])]).astype(np.int64)
        cat = lambda name: np.concatenate([getattr(l, name) for l in levels])
        below = np.concatenate([np.full(len(l.lo), self.level_off[min(d + 1, len(levels) - 1)])
                                for d, l in enumerate(levels)])
        self.nodes = np.zeros(int(self.level_off[-1]), NODE)
        self.nodes["child_lo"], self.nodes["child_hi"] = cat("child_lo") + below, cat("child_hi") + below
        self.nodes["tok"], self.nodes["ends"], self.nodes["byte"] = cat("lo"), cat("ends"), cat("byte")
        self.node_hi = cat("hi").astype(np.int32)        # one past the last sorted token below each node
        self.node_hi_at = address(self.node_hi)
        self.ids = np.ascontiguousarray(trie.ids, np.int64)
        self.depth = trie.depth
        self.num_nodes = int(self.level_off[-1])
        self.arrays = [address(a) for a in (self.level_off, self.nodes, self.ids)]
        self._local = threading.local()

    def buffers(self) -> _Buffers:
        found = getattr(self._local, "buffers", None)
        if found is None:
            found = self._local.buffers = _Buffers(self.num_nodes, len(self.ids))
        return found


class _Buffers:
    """Output and stack space of one walk: the stack and the hits hold at most a visit per node
    (roots that do not overlap), the consumed tokens at most each token once."""

    def __init__(self, num_nodes: int, num_tokens: int):
        self.cap = num_nodes + 1
        self.stack = [np.empty(self.cap, np.int64), np.empty(self.cap, np.int32), np.empty(self.cap, np.int32)]
        self.hits = [np.empty(self.cap, np.int64) for _ in range(3)]          # depth, node, state
        self.consumed = np.empty(num_tokens, np.int64)
        self.counts = np.zeros(2, np.int64)
        self.stack_args = [*(a.ctypes.data for a in self.stack), self.cap]
        self.out_args = [self.consumed.ctypes.data, num_tokens, self.counts.ctypes.data,
                         *(a.ctypes.data for a in self.hits), self.cap]


def walk_native(flat: FlatTrie, trans: np.ndarray, exits: np.ndarray, state: int, roots: dict[int, np.ndarray]):
    """(consumed token ids, then the exit hits as depths, nodes, states) as token_walk.walk finds
    them, or None when the native walk is unavailable or the roots overlap past its buffers."""
    dll = native()
    if dll is None:
        return None
    buf = flat.buffers()
    buf.counts[:] = 0
    trans, exits = np.ascontiguousarray(trans, np.int32), np.ascontiguousarray(exits, np.bool_)
    head = [address(trans), address(exits), state, flat.depth, *flat.arrays]
    for depth, nodes in roots.items():
        nodes = np.ascontiguousarray(nodes, np.int64)
        if dll.walk(*head, address(nodes), len(nodes), depth, *buf.stack_args, *buf.out_args) != 0:
            return None
    nc, k = buf.counts.tolist()
    depth, node, state_ = buf.hits
    return buf.consumed[:nc].copy(), depth[:k].copy(), node[:k].copy(), state_[:k].copy()
