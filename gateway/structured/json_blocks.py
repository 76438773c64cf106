"""The JSON building blocks of a schema grammar, as Dfas with calls: the Builder (an automaton made
state by state), arrays, and unions of pieces. Members and elements are laid out in json_members,
objects in json_objects, literal keys and values in json_values.

Whitespace: at most `max_ws` of space, tab, newline, carriage return at each place JSON allows it
(after `{` `[` `:` `,` and before `}` `]` `:` `,`), so generation cannot loop on it; none before or
after the top-level value. A member rule owns the whitespace around its key and value
(`ws "key" ws : ws value ws`), an element rule the whitespace around its value, so each place has
exactly one slot; only the empty `{ }` and `[ ]` need their own.

Objects (json_objects): with at most ANY_ORDER_KEYS declared keys, the declared keys may come in any order, each at
most once: the state between members is the set of keys seen. With more, or in strict mode, declared
keys come in schema order (each optional one may be left out). Other keys (when the schema allows them) may come
anywhere, as often as wanted: each class of other keys (by which patternProperties they match) has
its own member rule and value schema, and no class's key automaton accepts any encoding of a
declared key, so a declared key is always checked against its own schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from gateway.structured.grammar import Dfa, shift_into
from gateway.structured.json_cache import shared

WS = b" \t\n\r"
Calls = dict[int, list[tuple[int, int]]]


class Builder:
    """A Dfa with calls under construction: states are numbered as they are made, whole automata
    are copied in as blocks (`embed`), single transitions are checked for conflicts."""

    def __init__(self):
        self.size = 0
        self._blocks: list[tuple[int, Dfa]] = []
        self._edges: dict[tuple[int, int], int] = {}
        self.calls: Calls = {}
        self.accepting: set[int] = set()

    def state(self) -> int:
        self.size += 1
        return self.size - 1

    def edge(self, sources: list[int], data: bytes, target: int) -> None:
        for s in sources:
            for b in data:
                assert self._edges.setdefault((s, b), target) == target, "conflicting transitions"

    def ws(self, starts: list[int], max_ws: int) -> list[int]:
        """The states after 0..max_ws whitespace bytes from any of starts."""
        out, prev = list(starts), list(starts)
        for _ in range(max_ws):
            w = self.state()
            self.edge(prev, WS, w)
            out.append(w)
            prev = [w]
        return out

    def lit(self, starts: list[int], data: bytes) -> int:
        prev = starts
        for b in data:
            s = self.state()
            self.edge(prev, bytes([b]), s)
            prev = [s]
        return prev[0]

    def call(self, starts: list[int], rule: int) -> int:
        ret = self.state()
        for s in starts:
            self.calls.setdefault(s, []).append((rule, ret))
        return ret

    def embed(self, starts: list[int], dfa: Dfa, calls: Calls | None = None) -> list[int]:
        """A copy of dfa entered from each of starts (its start's moves and calls are given to
        them); returns the copy's accepting states."""
        assert not dfa.accept[0], "an embedded value cannot be empty"
        off = self.size
        self._blocks.append((off, dfa))
        self.size += dfa.num_states
        row = dfa.trans[0]
        for b in np.flatnonzero(row >= 0).tolist():
            self.edge(starts, bytes([b]), off + int(row[b]))
        for state, targets in (calls or {}).items():
            shifted = [(rule, off + ret) for rule, ret in targets]
            for s in (starts if state == 0 else [off + state]):
                self.calls.setdefault(s, []).extend(shifted)
        return (off + np.flatnonzero(dfa.accept)).tolist()

    def build(self) -> tuple[Dfa, Calls]:
        trans = np.full((max(self.size, 1), 256), -1, dtype=np.int32)
        for off, dfa in self._blocks:
            shift_into(trans[off:off + dfa.num_states], dfa.trans, off)
        if self._edges:
            k = len(self._edges)
            pairs = np.fromiter(chain.from_iterable(self._edges), dtype=np.intp, count=2 * k)
            src, byte, dst = pairs[0::2], pairs[1::2], np.fromiter(self._edges.values(), dtype=np.int32, count=k)
            old = trans[src, byte]
            assert ((old == -1) | (old == dst)).all(), "conflicting transitions"
            trans[src, byte] = dst
        accept = np.zeros(len(trans), dtype=np.bool_)
        accept[np.fromiter(self.accepting, dtype=np.intp, count=len(self.accepting))] = True
        counted = tuple((off + o, lo, hi) for off, dfa in self._blocks for o, lo, hi in dfa.counted)
        return Dfa(trans, accept, counted), self.calls


def union_pieces(pieces: list[tuple[Dfa, Calls]]) -> tuple[Dfa, Calls]:
    """Pieces that start on different bytes (and never return to their start), as one automaton
    entered at a new start state; the table is shared by content, the calls are this grammar's."""
    calls: Calls = {}
    off = 1
    for dfa, piece_calls in pieces:
        for state, targets in piece_calls.items():
            calls.setdefault(0 if state == 0 else off + state, []).extend((r, off + ret) for r, ret in targets)
        off += dfa.num_states
    return _union_dfa(tuple(dfa for dfa, _ in pieces)), calls


@shared(key=lambda dfas: tuple(d.digest() for d in dfas))
def _union_dfa(dfas: tuple[Dfa, ...]) -> Dfa:
    b = Builder()
    start = b.state()
    for dfa in dfas:
        b.accepting.update(b.embed([start], dfa))
    return b.build()[0]


@dataclass
class ArrayShape:
    prefix: list[int | None]                  # element rule per leading position (None: no value fits)
    items: int | None                         # element rule for the rest (None: no more items)
    min_items: int = 0
    max_items: int | None = None


def array_piece(shape: ArrayShape, max_ws: int) -> tuple[Dfa, Calls] | None:
    """None when no array fits the shape."""
    limit = shape.max_items
    for i, rule in enumerate(shape.prefix):
        if rule is None:
            limit = i if limit is None else min(limit, i)
    if shape.items is None:
        limit = len(shape.prefix) if limit is None else min(limit, len(shape.prefix))
    if limit is not None and shape.min_items > limit:
        return None
    top = limit if limit is not None else max(len(shape.prefix), shape.min_items, 1)

    def rule_at(p: int) -> int:
        return shape.prefix[p] if p < len(shape.prefix) else shape.items

    b = Builder()
    start, end = b.state(), b.state()
    b.accepting.add(end)
    after_bracket = b.lit([start], b"[")
    after = {p: b.state() for p in range(1, top + 1)}     # after p elements (top: top or more)
    expect = {p: b.state() for p in range(1, top + 1)}    # after p elements and a comma
    for p in range(top + 1):
        if limit is None or p < limit:
            source = after_bracket if p == 0 else expect[p]
            b.calls.setdefault(source, []).append((rule_at(p), after[min(p + 1, top)]))
            if p:
                b.edge([after[p]], b",", expect[p])
        if p and p >= shape.min_items:
            b.edge([after[p]], b"]", end)
    if shape.min_items == 0:
        b.edge(b.ws([after_bracket], max_ws), b"]", end)
    return b.build()
