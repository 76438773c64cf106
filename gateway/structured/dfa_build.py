"""Thompson NFAs over bytes, their combinators, and the minimal `Dfa` of one.

An `Nfa` is an immutable value: combinators copy their operands, so one fragment can be reused
(a repeat is n copies). Code point sets become UTF-8 byte-range chains with the utf8-ranges split
(a range is cut where the encoded length changes and where a continuation byte stops covering
80..BF), so all of U+0000..U+10FFFF is nine short chains, never a million code points. Surrogates D800..DFFF are left
out: JSON text is valid UTF-8, which cannot encode them.

`to_dfa` runs the subset construction over byte classes (bytes no range boundary separates),
Hopcroft's minimisation, drops the dead state, and numbers states breadth-first from start 0.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from gateway.structured.grammar import Dfa
from gateway.structured.regex_parse import CodePoints, UnsupportedRegex

MAX_DFA_STATES = 10_000
MAX_NFA_STATES = 100_000
Move = tuple[int, int, int, int]        # (src, lo, hi, dst): consume one byte in lo..hi
Eps = tuple[int, int]                   # (src, dst): move without consuming a byte


@dataclass(frozen=True, slots=True)
class Nfa:
    """State 0 is the start and state size-1 the only final state."""
    size: int
    moves: tuple[Move, ...]
    eps: tuple[Eps, ...]

    @property
    def final(self) -> int:
        return self.size - 1


EMPTY = Nfa(1, (), ())          # matches only the empty string
NOTHING = Nfa(2, (), ())        # matches no string


def _shift(nfa: Nfa, by: int) -> tuple[list[Move], list[Eps]]:
    return ([(s + by, lo, hi, d + by) for s, lo, hi, d in nfa.moves],
            [(s + by, d + by) for s, d in nfa.eps])


def _checked(size: int, moves: list[Move], eps: list[Eps]) -> Nfa:
    if size > MAX_NFA_STATES:
        raise UnsupportedRegex("pattern too complex")
    return Nfa(size, tuple(moves), tuple(eps))


def literal(text: str | bytes) -> Nfa:
    """Exactly this string (as UTF-8)."""
    data = text.encode() if isinstance(text, str) else text
    return Nfa(len(data) + 1, tuple((i, b, b, i + 1) for i, b in enumerate(data)), ())


def concat(*parts: Nfa) -> Nfa:
    """Each part in turn."""
    if not parts:
        return EMPTY
    moves: list[Move] = []
    eps: list[Eps] = []
    offset = 0
    for k, part in enumerate(parts):
        m, e = _shift(part, offset)
        moves += m
        eps += e
        if k:
            eps.append((offset - 1, offset))
        offset += part.size
    return _checked(offset, moves, eps)


def union(*options: Nfa) -> Nfa:
    """Any one of the options."""
    if not options:
        return NOTHING
    moves: list[Move] = []
    eps: list[Eps] = []
    offset = 1
    finals: list[int] = []
    for option in options:
        m, e = _shift(option, offset)
        moves += m
        eps += e
        eps.append((0, offset))
        finals.append(offset + option.final)
        offset += option.size
    eps += [(f, offset) for f in finals]
    return _checked(offset + 1, moves, eps)


def optional(nfa: Nfa) -> Nfa:
    """The fragment or nothing."""
    m, e = _shift(nfa, 1)
    final = nfa.size + 1
    return _checked(nfa.size + 2, m, e + [(0, 1), (0, final), (nfa.size, final)])


def plus(nfa: Nfa) -> Nfa:
    """One or more times."""
    m, e = _shift(nfa, 1)
    final = nfa.size + 1
    return _checked(nfa.size + 2, m, e + [(0, 1), (nfa.size, 1), (nfa.size, final)])


def star(nfa: Nfa) -> Nfa:
    """Zero or more times."""
    return optional(plus(nfa))


def repeat(nfa: Nfa, min: int, max: int | None) -> Nfa:
    """min to max times (max None: unbounded)."""
    count = min if max is None else max
    if count * (nfa.size + 1) > MAX_NFA_STATES:
        raise UnsupportedRegex("pattern too complex")
    if max is None:
        return concat(*[nfa] * (min - 1), plus(nfa)) if min else star(nfa)
    return concat(*[nfa] * min, _up_to(nfa, max - min))


def _up_to(nfa: Nfa, count: int) -> Nfa:
    """0 to count copies, each behind a gate state that may leave for the final: built in one
    pass, where nesting optionals would copy the tail count times and chain count epsilons."""
    moves: list[Move] = []
    eps: list[Eps] = []
    step = nfa.size + 1
    final = count * step
    for i in range(count):
        gate = i * step
        m, e = _shift(nfa, gate + 1)
        moves += m
        eps += e + [(gate, gate + 1), (gate, final), (gate + nfa.size, gate + step)]
    return _checked(final + 1, moves, eps)


def utf8_sequences(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Byte-range sequences whose strings are exactly the UTF-8 encodings of lo..hi, surrogates out."""
    out: list[list[tuple[int, int]]] = []
    todo = [(lo, hi)]
    while todo:
        lo, hi = todo.pop()
        if lo > hi:
            continue
        if lo <= 0xDFFF and hi >= 0xD800:
            todo += [(lo, 0xD7FF), (0xE000, hi)]
            continue
        cut = next((b for b in (0x7F, 0x7FF, 0xFFFF) if lo <= b < hi), None)
        if cut is not None:
            todo += [(lo, cut), (cut + 1, hi)]
            continue
        for i in (1, 2, 3):
            m = (1 << (6 * i)) - 1            # the low bits the last i continuation bytes carry
            if lo & ~m != hi & ~m:
                if lo & m:
                    todo += [(lo, lo | m), ((lo | m) + 1, hi)]
                    break
                if hi & m != m:
                    todo += [(lo, (hi & ~m) - 1), (hi & ~m, hi)]
                    break
        else:
            out.append(list(zip(chr(lo).encode(), chr(hi).encode())))
    return out


def chars(ranges: CodePoints) -> Nfa:
    """Any one code point of the set, as its UTF-8 bytes. Chains share their tails (built from the
    final backwards, one state per distinct (byte range, next state)), so "two continuation bytes
    to go" is one state however many lead bytes reach it, and the DFA comes out nearly minimal."""
    if ranges and max(hi for _, hi in ranges) < 0x80:     # ASCII: a move per range (the chains cut
        return Nfa(2, tuple((0, lo, hi, 1) for lo, hi in ranges if lo <= hi), ())   # it at multiples of 64)
    chains = [seq for lo, hi in ranges for seq in utf8_sequences(lo, hi)]
    if not chains:
        return NOTHING
    final = -1                          # numbered last once the size is known
    tails: dict[tuple[int, int, int], int] = {}
    moves: list[Move] = []
    for seq in chains:
        nxt = final
        for lo, hi in reversed(seq[1:]):
            if (lo, hi, nxt) not in tails:
                tails[lo, hi, nxt] = len(tails) + 1
                moves.append((tails[lo, hi, nxt], lo, hi, nxt))
            nxt = tails[lo, hi, nxt]
        moves.append((0, seq[0][0], seq[0][1], nxt))
    size = len(tails) + 2
    return Nfa(size, tuple((s, lo, hi, size - 1 if d == final else d) for s, lo, hi, d in moves), ())


def to_dfa(nfa: Nfa) -> Dfa:
    """The minimal DFA of the NFA's language; raises UnsupportedRegex past MAX_DFA_STATES."""
    table, accept, byte_class = _subsets(nfa)
    table, accept = _minimize(table, accept)
    return Dfa(np.ascontiguousarray(table[:, byte_class]), accept)


def _subsets(nfa: Nfa) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subset construction. Returns the [states, classes] table (-1: no move), acceptance, and the
    class of each byte. A DFA state is the set of NFA states in it that have byte moves (plus the
    final): the others only lead to these, so two sets agreeing here are the same state."""
    bounds = np.zeros(257, dtype=bool)
    bounds[0] = True
    for _, lo, hi, _ in nfa.moves:
        bounds[lo] = bounds[hi + 1] = True
    byte_class = np.cumsum(bounds[:256]) - 1
    num_classes = int(byte_class.max()) + 1

    out_moves: list[list[tuple[int, int, int]]] = [[] for _ in range(nfa.size)]
    out_eps: list[list[int]] = [[] for _ in range(nfa.size)]
    for s, lo, hi, d in nfa.moves:
        out_moves[s].append((int(byte_class[lo]), int(byte_class[hi]), d))
    for s, d in nfa.eps:
        out_eps[s].append(d)
    final = nfa.final
    closure_of: dict[int, frozenset[int]] = {}

    def closure(state: int) -> frozenset[int]:
        if state not in closure_of:
            seen, todo = {state}, [state]
            while todo:
                for d in out_eps[todo.pop()]:
                    if d not in seen:
                        seen.add(d)
                        todo.append(d)
            closure_of[state] = frozenset(s for s in seen if out_moves[s] or s == final)
        return closure_of[state]

    start = closure(0)
    index = {start: 0}
    sets = [start]
    rows: list[list[int]] = []
    target_of: dict[frozenset[int], int] = {}
    while len(rows) < len(sets):
        targets: dict[int, set[int]] = defaultdict(set)
        for s in sets[len(rows)]:
            for clo, chi, d in out_moves[s]:
                for c in range(clo, chi + 1):
                    targets[c].add(d)
        row = [-1] * num_classes
        for c, dsts in targets.items():
            key = frozenset(dsts)
            if key not in target_of:
                subset = frozenset().union(*(closure(d) for d in dsts))
                if subset not in index:
                    if len(sets) >= MAX_DFA_STATES:
                        raise UnsupportedRegex("pattern too complex")
                    index[subset] = len(sets)
                    sets.append(subset)
                target_of[key] = index[subset]
            row[c] = target_of[key]
        rows.append(row)
    accept = np.array([final in s for s in sets], dtype=bool)
    return np.array(rows, dtype=np.int32).reshape(len(rows), num_classes), accept, byte_class


def _minimize(table: np.ndarray, accept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hopcroft's partition refinement, then blocks numbered breadth-first from the start's as 0.

    The table is completed by a sink, state n, standing for every -1. The sink never enters a
    splitter (the worklist starts with the accepting block, and of the two halves of a split block
    the one without the sink may always be chosen), so its many predecessors are never listed;
    states that cannot reach acceptance end up in the sink's block and become -1 again."""
    n, k = table.shape
    if not accept.any():
        return np.full((1, k), -1, dtype=np.int32), np.zeros(1, dtype=bool)
    preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]     # target -> [(class, source)]
    src, cls = np.nonzero(table >= 0)
    for s, c, t in zip(src.tolist(), cls.tolist(), table[src, cls].tolist()):
        preds[t].append((c, s))

    accepting = set(np.flatnonzero(accept).tolist())
    blocks = [set(range(n + 1)) - accepting, accepting]
    block_of = [int(a) for a in accept.tolist()] + [0]
    work = {1}
    while work:
        hits: dict[int, list[int]] = defaultdict(list)
        for t in blocks[work.pop()]:
            for c, s in preds[t]:
                hits[c].append(s)
        for sources in hits.values():
            touched: dict[int, set[int]] = defaultdict(set)
            for s in sources:
                touched[block_of[s]].add(s)
            for b, inside in touched.items():
                if len(inside) == len(blocks[b]):
                    continue
                blocks[b] -= inside
                blocks.append(inside)
                new = len(blocks) - 1
                for s in inside:
                    block_of[s] = new
                keep_sink = b == block_of[n]
                work.add(new if b in work or keep_sink or len(inside) <= len(blocks[b]) else b)

    sink, start = block_of[n], block_of[0]
    if start == sink:
        return np.full((1, k), -1, dtype=np.int32), np.zeros(1, dtype=bool)
    rep = [min(members) for members in blocks]
    number = {start: 0}
    order = [start]
    for b in order:
        for t in table[rep[b]].tolist():
            if t >= 0 and block_of[t] != sink and block_of[t] not in number:
                number[block_of[t]] = len(order)
                order.append(block_of[t])
    # remap[n], the sink's entry, is -1, so the table's -1 entries index it and stay -1.
    remap = np.array([number.get(b, -1) for b in block_of], dtype=np.int32)
    reps = [rep[b] for b in order]
    return remap[table[reps]], accept[reps]
