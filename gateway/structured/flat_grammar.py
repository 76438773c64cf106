"""A grammar's rules as flat arrays, the form the C follow (follow_native) reads: per rule the address
of its transition table and its first state in one numbering of all rules' states; per state its
flags (1 accepting, 2 calls) and its calls as a CSR run. Built at a grammar's first mask."""
from __future__ import annotations

import numpy as np

from gateway.structured.grammar import Grammar


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class FlatGrammar:
    """A grammar's rules as the C follow reads them: per rule its table's address and first state,
    per state its flags and calls. Built at a grammar's first mask, in a few numpy calls."""

    def __init__(self, grammar: Grammar):
        rules = grammar.rules
        self.tables = [np.ascontiguousarray(r.dfa.trans, np.int32) for r in rules]    # kept: C reads them
        sizes = np.array([len(t) for t in self.tables], np.int64)
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.trans = np.array([address(t) for t in self.tables], np.int64)
        self.flags = np.concatenate([r.dfa.accept for r in rules]).astype(np.uint8)
        states, callee, ret = [], [], []
        for i, r in enumerate(rules):
            b = int(self.base[i])
            for state, targets in r.calls.items():
                for c, t in targets:
                    states.append(b + state), callee.append(c), ret.append(t)
        states = np.array(states, np.int64)
        order = np.argsort(states, kind="stable")
        self.call_rule = np.array(callee, np.int32)[order]
        self.call_ret = np.array(ret, np.int32)[order]
        self.call_off = np.searchsorted(states[order], np.arange(len(self.flags) + 1)).astype(np.int32)
        self.flags[states] |= 2
