"""The automata every constraint compiles to.

A `Dfa` is a deterministic automaton over bytes. A `Grammar` is a set of rules, each a Dfa whose
states may also *call* another rule: from state s, the callee runs from its start, and when it
reaches one of its accepting states the caller may continue at the call's return state. This is a
recursive transition network, so a JSON Schema node becomes one small rule and `$ref` recursion is a
call; a regex or a choice is a grammar of one rule with no calls.

Invariants (checked by `Grammar.check`): every rule's transition table is [states, 256] int32 with
-1 for "no transition", state 0 is the start, calls name existing rules and states.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from gateway.structured.distances import distances_to_accept


@dataclass(slots=True)
class Dfa:
    trans: np.ndarray                  # [states, 256] int32; -1: the byte is not allowed here
    accept: np.ndarray                 # [states] bool
    counted: tuple[tuple[int, int, int | None], ...] = ()   # (offset, lo, hi) of each lifted counted
    #                                    string inside (json_strings; masks walk them by counted_walks)
    _digest: bytes | None = field(default=None, repr=False, compare=False)
    _checked: bool = field(default=False, repr=False, compare=False)     # a read-only table that passed check

    def digest(self) -> bytes:
        """Content hash: equal automata share token tables across rules, schemas and requests."""
        if self._digest is None:
            self._digest = hashlib.blake2b(self.trans.tobytes() + self.accept.tobytes(), digest_size=16).digest()
        return self._digest

    @property
    def num_states(self) -> int:
        return self.trans.shape[0]

    def check(self) -> None:
        if self._checked:
            return
        assert self.trans.ndim == 2 and self.trans.shape[1] == 256 and self.trans.dtype == np.int32
        assert self.accept.shape == (self.num_states,) and self.accept.dtype == np.bool_
        assert self.num_states >= 1 and self.trans.max() < self.num_states and self.trans.min() >= -1
        self._checked = not (self.trans.flags.writeable or self.accept.flags.writeable)

    def matches(self, data: bytes) -> bool:
        s = 0
        for b in data:
            s = int(self.trans[s, b])
            if s < 0:
                return False
        return bool(self.accept[s])


def shift_into(out: np.ndarray, trans: np.ndarray, by: int) -> np.ndarray:
    """out = trans's targets moved by `by` >= 0, -1 (no move) kept: the add, then -1 OR-ed back in
    where trans had it (an arithmetic shift of its sign), ten times faster than np.where."""
    np.add(trans, by, out=out)
    np.bitwise_or(out, trans >> (8 * trans.itemsize - 1), out=out)
    return out


@dataclass(slots=True)
class Rule:
    name: str
    dfa: Dfa
    calls: dict[int, list[tuple[int, int]]] = field(default_factory=dict)   # state -> [(rule, return state)]


@dataclass(slots=True)
class Grammar:
    rules: list[Rule]
    start: int = 0
    _to_accept: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_accept(self) -> list[np.ndarray]:
        """Per rule and state, the fewest bytes that reach one of the rule's accepting states
        (callees expanded by their own shortest match); inf where none does. Computed once per
        grammar (distances)."""
        if self._to_accept is None:
            self._to_accept = distances_to_accept(self.rules)
        return self._to_accept

    def check(self) -> None:
        checked: set[int] = set()             # a table shared by rules (an object layout) once
        count = len(self.rules)
        for rule in self.rules:
            if id(rule.dfa) not in checked:
                checked.add(id(rule.dfa))
                rule.dfa.check()
            calls = rule.calls
            if calls:
                n = rule.dfa.trans.shape[0]
                assert 0 <= min(calls) and max(calls) < n, (rule.name, sorted(calls))
                for targets in calls.values():           # plain loops: an object has thousands
                    for callee, ret in targets:
                        assert 0 <= callee < count and 0 <= ret < n, (rule.name, callee, ret)

    @classmethod
    def of(cls, dfa: Dfa, name: str = "root") -> "Grammar":
        return cls([Rule(name, dfa)])
