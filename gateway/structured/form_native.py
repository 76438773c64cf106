"""The part of an automaton reachable from a state (token_walk.reachable_form's search) in C.

A wide state's walk from every token is looked up by its reachable form (masks: one walk per
tokenizer serves every rule that ends in the same way, such as the string body of every object's
other keys), so the form is worked out at many states; the breadth-first search in Python costs
~10 µs a state (a numpy call per row), here a row costs 256 loads. The numbering is the same:
states in the order the search meets them, a row's targets in byte order.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from gateway.structured.walk_native import address, compiled

SOURCE = r"""
#include <stdint.h>

/* Breadth-first from start: order[k] is the k-th state met, index[s] its number (index must come in
   as -1 everywhere; the states met are set). Returns how many were met, or -1 past limit. */
int64_t reach(const int32_t *trans, int32_t start, int64_t limit, int32_t *order, int32_t *index) {
    int64_t n = 1;
    order[0] = start; index[start] = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *row = trans + (int64_t)order[i] * 256;
        for (int b = 0; b < 256; b++) {
            int32_t t = row[b];
            if (t < 0 || index[t] >= 0) continue;
            if (n >= limit) return -1;
            index[t] = (int32_t)n; order[n++] = t;
        }
    }
    return n;
}
"""

_dll: list = []


def native():
    if not _dll:
        dll = None if os.environ.get("RADIXGATE_NUMPY_WALK") else compiled(SOURCE, "reach")
        if dll is not None:
            p = ctypes.c_void_p
            dll.reach.restype = ctypes.c_int64
            dll.reach.argtypes = [p, ctypes.c_int32, ctypes.c_int64, p, p]
        _dll.append(dll)
    return _dll[0]


def reach(trans: np.ndarray, state: int, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(order: new state -> old, renumber: old state -> new, -1 where unreached, with one more -1 at
    the end so that renumber[-1] is -1), or None past limit states. Needs native()."""
    dll = native()
    trans = np.ascontiguousarray(trans, np.int32)
    order = np.empty(limit, np.int32)
    renumber = np.full(len(trans) + 1, -1, np.int32)
    n = dll.reach(address(trans), state, limit, address(order), address(renumber))
    return None if n < 0 else (order[:n].astype(np.int64), renumber)
