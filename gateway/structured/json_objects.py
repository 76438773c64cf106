"""An object's rule: braces and commas around calls to its member rules, laid out directly with
numpy (equal, up to the numbering of states, to json_blocks' Builder made it state by state:
tests/structured/test_compile_paths.py).

The rule's positions say which declared keys may come next: with at most ANY_ORDER_KEYS declared
keys (and not in strict mode) a position is the bit set of the keys seen, so they come in any
order, each at most once; with more, the index of the next declared key, so they come in schema
order (each optional one may be left out). Other keys may come at any position and leave it as it
was. Each position reached has a state after a member, where `,` or `}` may follow, and, when some
member may follow, one after that comma, which calls the members the position allows (the state
after `{` calls position 0's).

States: 0 the start, 1 the end (accepting), 2 after `{`, the whitespace of the empty `{ }`, then
the positions' after-member states in the order of the positions, then their after-comma states.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.structured.grammar import Dfa
from gateway.structured.json_cache import shared

ANY_ORDER_KEYS = 8
WS = np.frombuffer(b" \t\n\r", dtype=np.uint8).astype(np.intp)
Calls = dict[int, list[tuple[int, int]]]


@dataclass
class ObjectShape:
    members: list[int]                        # member rule of each declared key
    required: set[int] = field(default_factory=set)
    others: list[int] = field(default_factory=list)   # member rules for the other keys (by key class)
    min_props: int = 0                        # counted only in any-order mode without other keys
    max_props: int | None = None
    nonempty: bool = False                    # no `{}` (minProperties 1 where counts are not tracked)
    depends: dict[int, set[int]] = field(default_factory=dict)    # present key -> keys it requires
    ordered: bool = False                     # declared keys in schema order however few (strict mode)

    @property
    def any_order(self) -> bool:
        return not self.ordered and len(self.members) <= ANY_ORDER_KEYS


def object_piece(shape: ObjectShape, max_ws: int) -> tuple[Dfa, Calls]:
    """The object's rule: its layout's table (shared by every object of that layout) and calls to
    this object's member rules."""
    depends = tuple(sorted((j, tuple(sorted(needs))) for j, needs in shape.depends.items() if needs))
    dfa, states, bounds, option, target = _layout(len(shape.members), tuple(sorted(shape.required)),
                                                  len(shape.others), shape.min_props, shape.max_props,
                                                  shape.nonempty, depends, shape.any_order, max_ws)
    rules = np.array([*shape.members, *shape.others], dtype=np.int64)
    pairs = list(zip(rules[option].tolist(), target.tolist()))
    bounds = bounds.tolist()
    return dfa, {s: pairs[a:b] for s, a, b in zip(states.tolist(), bounds, bounds[1:])}


@shared
def _layout(n: int, required: tuple[int, ...], others: int, min_props: int, max_props: int | None,
            nonempty: bool, depends: tuple, any_order: bool, max_ws: int) -> tuple:
    """(Dfa, calling states, each one's first option, option indices (members 0..n-1, then the
    other keys' classes), return states): an object's rule with its member rules left as indices."""
    if any_order:
        pos, moves, closable = _any_order(n, required, min_props, max_props, depends)
    else:
        pos, moves, closable = _in_order(n, required)
    # options: each position's members (to the position after them), then the other keys (to itself)
    options = np.concatenate([moves >= 0, np.ones((len(pos), others), dtype=np.bool_)], axis=1)
    reached = np.zeros(len(pos), dtype=np.bool_)
    reached[moves[moves >= 0]] = True
    reached[0] |= others > 0
    empty = bool(closable[0]) and not nonempty
    after = np.full(len(pos), -1, dtype=np.intp)
    after[reached] = 3 + max_ws * empty + np.arange(int(reached.sum()))
    offers = options.any(axis=1)
    expect_at = np.flatnonzero(reached & offers)
    expect = 3 + max_ws * empty + int(reached.sum()) + np.arange(len(expect_at))
    callers = np.concatenate([[0] if offers[0] else [], expect_at]).astype(np.intp)
    rows, option = np.nonzero(options[callers])
    targets = np.concatenate([moves, np.repeat(np.arange(len(pos))[:, None], others, axis=1)], axis=1)
    size = expect[-1] + 1 if len(expect) else 3 + max_ws * empty + int(reached.sum())
    trans = np.full((size, 256), -1, dtype=np.int32)
    trans[0, ord("{")] = 2
    trans[after[reached & closable], ord("}")] = 1
    trans[after[expect_at], ord(",")] = expect
    if empty:
        ws = np.arange(2, 3 + max_ws)
        trans[ws, ord("}")] = 1
        trans[ws[:-1, None], WS] = ws[1:, None]
    accept = np.zeros(size, dtype=np.bool_)
    accept[1] = True
    states = np.concatenate([[2] if offers[0] else [], expect]).astype(np.intp)
    bounds = np.searchsorted(rows, np.arange(len(callers) + 1))
    return Dfa(trans, accept), states, bounds, option, after[targets[callers][rows, option]]


def _any_order(n: int, required: tuple, min_props: int, max_props: int | None, depends: tuple):
    """Positions are the bit sets of the keys seen: (positions, the position after each key from
    each (-1: that key may not come), whether the object may close there)."""
    pos = np.arange(1 << n)
    bits = (pos[:, None] >> np.arange(n)) & 1
    count = bits.sum(axis=1)
    moves = np.where(bits == 0, pos[:, None] | (1 << np.arange(n)), -1)
    if max_props is not None:
        moves[count >= max_props] = -1
    need = sum(1 << j for j in required)
    closable = (pos & need == need) & (count >= min_props)
    for j, needs in depends:
        mask = sum(1 << d for d in needs)
        closable &= (pos >> j & 1 == 0) | (pos & mask == mask)
    return pos, moves, closable


def _in_order(n: int, required: tuple):
    """Positions are the index of the next declared key; an optional key may be skipped, up to the
    next required one."""
    pos = np.arange(n + 1)
    stop = np.full(n + 1, n - 1)              # the last key position p may take: the next required one
    for r in sorted(required, reverse=True):
        stop[:r + 1] = r
    j = np.arange(n)
    moves = np.where((j >= pos[:, None]) & (j <= stop[:, None]), j + 1, -1)
    return pos, moves, pos > max(required, default=-1)
