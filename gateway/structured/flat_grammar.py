"""A grammar's rules as flat arrays, the form the C follow (follow_native) reads: per rule the address
of its transition table and its first state in one numbering of all rules' states; per state its
flags (1 accepting, 2 calls) and its calls as a CSR run. Built at a grammar's first mask."""
from __future__ import annotations

import ctypes
import os
from itertools import chain

import numpy as np

from gateway.structured.grammar import Grammar
from gateway.structured.walk_native import address, compiled


class FlatGrammar:
    """A grammar's rules as the C follow reads them: per rule its table's address and first state,
    per state its flags and calls. Built at a grammar's first mask, in a few numpy calls (the calls
    of every rule read by fromiter over chained dicts: ~5x a loop appending them)."""

    def __init__(self, grammar: Grammar):
        rules = grammar.rules
        self.tables = [np.ascontiguousarray(r.dfa.trans, np.int32) for r in rules]    # kept: C reads them
        sizes = np.array([len(t) for t in self.tables], np.int64)
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.trans = np.array([address(t) for t in self.tables], np.int64)
        self.flags = np.concatenate([r.dfa.accept for r in rules]).astype(np.uint8)
        per_rule = [r.calls for r in rules]
        counts = np.fromiter(map(len, per_rule), np.int64, len(rules))
        keys = np.fromiter(chain.from_iterable(per_rule), np.int64, int(counts.sum()))
        targets = np.fromiter(chain.from_iterable(map(len, c.values()) for c in per_rule), np.int64, len(keys))
        pairs = np.fromiter(chain.from_iterable(chain.from_iterable(chain.from_iterable(c.values() for c in per_rule))),
                            np.int32, 2 * int(targets.sum())).reshape(-1, 2)     # every call as (callee, return)
        states = np.repeat(np.repeat(self.base, counts) + keys, targets)          # C iterates each once, no Python loop
        self.call_off = np.empty(len(self.flags) + 1, np.int32)
        self.call_rule, self.call_ret = np.empty(len(states), np.int32), np.empty(len(states), np.int32)
        dll = native()
        if dll is not None:
            dll.calls_csr(address(states), address(pairs), len(states), len(self.flags), address(self.call_off),
                          address(self.call_rule), address(self.call_ret), address(self.flags))
            return
        order = np.argsort(states, kind="stable")
        self.call_rule[:], self.call_ret[:] = pairs[order, 0], pairs[order, 1]
        self.call_off[:] = np.searchsorted(states[order], np.arange(len(self.flags) + 1))
        self.flags[states] |= 2


SOURCE = r"""
#include <stdint.h>

/* n calls (state, then (callee, return) in pairs), in any order, as CSR by state: a state's calls
   are rule[off[s]:off[s + 1]] in their given order; flags[s] |= 2 where it calls. */
void calls_csr(const int64_t *states, const int32_t *pairs, int64_t n, int64_t n_states, int32_t *off,
               int32_t *rule, int32_t *ret, uint8_t *flags) {
    for (int64_t s = 0; s <= n_states; s++) off[s] = 0;
    for (int64_t k = 0; k < n; k++) { off[states[k] + 1]++; flags[states[k]] |= 2; }
    for (int64_t s = 0; s < n_states; s++) off[s + 1] += off[s];
    for (int64_t k = 0; k < n; k++) {
        int32_t at = off[states[k]]++;
        rule[at] = pairs[2 * k]; ret[at] = pairs[2 * k + 1];
    }
    for (int64_t s = n_states; s > 0; s--) off[s] = off[s - 1];
    off[0] = 0;
}
"""

_dll: list = []


def native():
    """The C CSR builder, or None (no C compiler, or RADIXGATE_NUMPY_WALK): numpy sorts instead."""
    if not _dll:
        dll = None if os.environ.get("RADIXGATE_NUMPY_WALK") else compiled(SOURCE, "flat_grammar")
        if dll is not None:
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            dll.calls_csr.restype = None
            dll.calls_csr.argtypes = [p, p, i64, i64, p, p, p, p]
        _dll.append(dll)
    return _dll[0]
