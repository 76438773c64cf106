"""A grammar's rules as flat arrays, the form the C follow (follow_native) reads: per rule the address
of its transition table and its first state in one numbering of all rules' states; per state its
flags (1 accepting, 2 calls) and its calls as a CSR run. Built at a grammar's first mask."""
from __future__ import annotations

from itertools import chain

import numpy as np

from gateway.structured.grammar import Grammar


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


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
        order = np.argsort(states, kind="stable")
        self.call_rule = pairs[order, 0].copy()
        self.call_ret = pairs[order, 1].copy()
        self.call_off = np.searchsorted(states[order], np.arange(len(self.flags) + 1)).astype(np.int32)
        self.flags[states] |= 2
