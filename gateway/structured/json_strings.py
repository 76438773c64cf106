"""JSON string literals whose decoded text a given automaton accepts.

The constraints of a string schema (pattern, format, length, a set of keys) are automata over the
UTF-8 bytes of the *decoded* text; the model writes the *encoded* text. `json_string` lifts one to
the other exactly: the quotes around it, raw characters where JSON allows them (never `"`, `\\` or
controls below 0x20), and escapes. An escape is a call: a body state reading `\\` moves to a state
that calls, for each state t the text automaton reaches by one escapable character, the rule
reading "the rest of an escape of one of those characters", returning to t. Escape rules are shared
by character set, and ordinary text stays inside one rule, where token masks are cheap.

Escapes accepted: \\" \\\\ \\/ \\b \\f \\n \\r \\t, and \\u with four hex digits (either case) for controls and code
points from U+0080, astral ones as a surrogate pair. \\u escapes of printable ASCII (\\u0041 for A)
are refused: nobody writes them and allowing them would only give a model more ways to spend tokens.
Lone surrogates are refused (the decoded text would not be valid Unicode).

"""
from __future__ import annotations


import numpy as np

from gateway.structured.grammar import Dfa, shift_into
from gateway.structured.json_cache import shared
from gateway.structured.regex import Nfa, chars, concat, literal, to_dfa, union
from gateway.structured.regex_parse import CodePoints, normalize
from gateway.structured.json_text import COUNT_DIGESTS, OTHERS_DIGESTS, _count_digest, count_dfa, count_table

SHORT_ESCAPES = {0x22: "\"", 0x5C: "\\", 0x2F: "/", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r", 0x09: "t"}
RAW_FORBIDDEN = [*range(0x20), 0x22, 0x5C]
ESCAPABLE_ASCII = [*range(0x20), 0x22, 0x2F, 0x5C]
ESCAPABLE = normalize([(0x00, 0x1F), (0x22, 0x22), (0x2F, 0x2F), (0x5C, 0x5C), (0x80, 0x10FFFF)])
U_ESCAPABLE = normalize([(0x00, 0x1F), (0x80, 0xD7FF), (0xE000, 0x10FFFF)])
# UTF-8: lead byte ranges and the continuation ranges that follow each.
UTF8_SHAPES = [((0xC2, 0xDF), [(0x80, 0xBF)]), ((0xE0, 0xE0), [(0xA0, 0xBF), (0x80, 0xBF)]),
               ((0xE1, 0xEC), [(0x80, 0xBF)] * 2), ((0xED, 0xED), [(0x80, 0x9F), (0x80, 0xBF)]),
               ((0xEE, 0xEF), [(0x80, 0xBF)] * 2), ((0xF0, 0xF0), [(0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)]),
               ((0xF1, 0xF3), [(0x80, 0xBF)] * 3), ((0xF4, 0xF4), [(0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)])]


class EscapeRules:
    """Register of the shared escape rules: `rule_for(code points) -> rule index`; `add` is the
    grammar's rule registration, called once per distinct set."""

    def __init__(self, add):
        self._add = add
        self._index: dict[CodePoints, int] = {}

    def rule_for(self, cps: CodePoints) -> int:
        if cps not in self._index:
            self._index[cps] = self._add("escape", escape_dfa(cps))
        return self._index[cps]


def json_string(text: Dfa, escapes: EscapeRules) -> tuple[Dfa, dict[int, list[tuple[int, int]]]]:
    """The quoted, escaped JSON strings whose decoded UTF-8 `text` accepts, as a Dfa with calls.
    `text` must accept only valid UTF-8 and be trimmed (every state can reach acceptance)."""
    dfa, escaped = _lifted(text)
    return dfa, {e: [(escapes.rule_for(cps), ret) for cps, ret in targets] for e, targets in escaped.items()}


@shared(key=Dfa.digest)
def _lifted(text: Dfa) -> tuple[Dfa, dict[int, list[tuple[CodePoints, int]]]]:
    """json_string with the escape rules still named by their code points (shared by content)."""
    if text.digest() in COUNT_DIGESTS:
        return _lifted_count(text, *COUNT_DIGESTS[text.digest()])
    if text.digest() in OTHERS_DIGESTS:
        return _lifted_others(text, OTHERS_DIGESTS[text.digest()])
    n = text.num_states
    start, final, first_esc = 0, n + 1, n + 2
    boundary = _char_boundaries(text)
    esc_targets = _escape_targets(text, boundary)
    esc_states = {q: first_esc + i for i, q in enumerate(q for q in boundary if esc_targets[q])}
    size = first_esc + len(esc_states)
    trans = np.full((size, 256), -1, dtype=np.int32)
    _raw_body(trans[1:n + 1], text.trans)
    trans[start, ord('"')] = 1
    accepting = np.array(boundary)[text.accept[boundary]]
    trans[accepting + 1, ord('"')] = final
    escaped = {}
    for q, e in esc_states.items():
        trans[q + 1, ord("\\")] = e
        escaped[e] = [(cps, t + 1) for t, cps in esc_targets[q].items()]
    accept = np.zeros(size, dtype=np.bool_)
    accept[final] = True
    return Dfa(trans, accept, _count_bounds(text)), escaped


def _lifted_count(text: Dfa, lo: int, hi: int | None) -> tuple[Dfa, dict[int, list[tuple[CodePoints, int]]]]:
    """_lifted of count_dfa(lo, hi), laid out from what counts are (counted_walks' Layout) instead
    of found by searching a table of megabytes: body boundary 1 + 8c; a closing quote from the
    boundaries lo..top to `final`; a backslash at count c to escape state final + 1 + c, whose
    escapes (every escapable character) return to the next count's boundary (the top count's own
    when unbounded); with hi given, the top count takes only the closing quote."""
    n, top = text.num_states, lo if hi is None else hi
    final, escapes = n + 1, top if hi is not None else top + 1
    trans = np.empty((n + 2 + escapes, 256), dtype=np.int32)
    trans[0] = -1
    trans[n + 1:] = -1
    body = _lifted_count_body()
    cut = 8 * top if n <= len(body) else 0     # below the top count, count_dfa's rows are the table's
    trans[1:cut + 1] = body[:cut]
    _raw_body(trans[cut + 1:n + 1], text.trans[cut:])
    trans[0, ord('"')] = 1
    c = np.arange(top + 1)
    trans[1 + 8 * c[lo:], ord('"')] = final
    trans[1 + 8 * c[:escapes], ord("\\")] = final + 1 + c[:escapes]
    after = np.minimum(c[:escapes] + 1, top)
    escaped = {final + 1 + i: [(ESCAPABLE, t)] for i, t in enumerate((1 + 8 * after).tolist())}
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[final] = True
    dfa = Dfa(trans, accept, ((0, lo, hi),) if top or hi is None else ())   # as _count_bounds finds
    dfa._digest = _count_digest(b"lifted count_dfa", lo, hi)
    return dfa, escaped


@shared
def _lifted_count_body() -> np.ndarray:
    """The lifted body of the table every count_dfa is cut from (json_text._count_table; made and
    pinned with the building blocks), so a counted string's body is one copy of its rows."""
    table = count_table()
    body = np.empty_like(table)
    _raw_body(body, table)
    return body


def _lifted_others(text: Dfa, m: int) -> tuple[Dfa, dict[int, list[tuple[CodePoints, int]]]]:
    """_lifted of json_text.others_than(plain keys), m trie nodes, laid out: the trie nodes and the
    any-text boundary after them (state m) are the character boundaries; from each, every escape
    goes to state m (no key has an escapable character), through escape state final + 1 + q."""
    n = text.num_states
    final = n + 1
    trans = np.full((n + 2 + m + 1, 256), -1, dtype=np.int32)
    _raw_body(trans[1:n + 1], text.trans)
    trans[0, ord('"')] = 1
    boundary = np.arange(m + 1)
    trans[1 + boundary[text.accept[:m + 1]], ord('"')] = final
    trans[1 + boundary, ord("\\")] = final + 1 + boundary
    escaped = {final + 1 + q: [(ESCAPABLE, 1 + m)] for q in range(m + 1)}
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[final] = True
    return Dfa(trans, accept), escaped


def _raw_body(out: np.ndarray, text: np.ndarray) -> None:
    """A lifted body: the text's moves one state on, but for the bytes a string cannot hold raw
    (controls, the quote, the backslash: three slices, a column list is ten times slower)."""
    shift_into(out, text, 1)
    out[:, :0x20] = -1
    out[:, 0x22] = -1
    out[:, 0x5C] = -1


def lifted_count(lo: int, hi: int | None) -> Dfa:
    """The JSON strings of lo..hi characters (counted_walks' layouts)."""
    return _lifted(count_dfa(lo, hi))[0]


def _count_bounds(text: Dfa) -> tuple[tuple[int, int, int | None], ...]:
    """((0, lo, hi),) when text is count_dfa(lo, hi) (its lifted states keep count_dfa's layout),
    else (). The shape is guessed from the size and the accepting counts, then checked by content."""
    n, ascii_step = text.num_states, int(text.trans[0, 0x41])
    if n % 8 not in (0, 1) or ascii_step not in (0, 8) or not text.accept.any():
        return ()
    hi = None if n % 8 == 0 else (n - 1) // 8
    lo = int(np.flatnonzero(text.accept)[0]) // 8
    if hi is None and n != 8 * (lo + 1):
        return ()
    count = count_dfa(lo, hi)
    same = count.digest() == text.digest() or (count.trans.shape == text.trans.shape and np.array_equal(
        count.trans, text.trans) and np.array_equal(count.accept, text.accept))
    return ((0, lo, hi),) if same else ()


def string_literal_nfa(text: str) -> Nfa:
    """Every JSON encoding of this exact string, without the quotes (a fragment for enums and keys)."""
    parts = []
    for ch in text:
        cp = ord(ch)
        options = [] if cp < 0x20 or ch in "\"\\" else [literal(ch)]
        if cp in SHORT_ESCAPES:
            options.append(literal("\\" + SHORT_ESCAPES[cp]))
        if cp < 0x20 or cp >= 0x80:
            options.append(concat(literal("\\"), _u_escapes(((cp, cp),))))
        parts.append(union(*options))
    return concat(*parts)


@shared
def escape_dfa(cps: CodePoints) -> Dfa:
    """What follows the backslash in an escape of one code point of `cps`."""
    shorts = [literal(SHORT_ESCAPES[c]) for c in sorted(SHORT_ESCAPES) if _contains(cps, c)]
    return to_dfa(union(*shorts, _u_escapes(cps)))


def _u_escapes(cps: CodePoints) -> Nfa:
    """u + 4 hex digits (and a second \\u unit for astral code points) for the members of cps."""
    options = []
    for lo, hi in _intersect(cps, U_ESCAPABLE):
        if lo <= 0xFFFF:
            options += [concat(literal("u"), _hex(seq)) for seq in _digit_ranges(lo, min(hi, 0xFFFF), 4, 16)]
        if hi >= 0x10000:
            for h_lo, h_hi, l_lo, l_hi in _surrogate_blocks(max(lo, 0x10000), hi):
                for high in _digit_ranges(0xD800 + h_lo, 0xD800 + h_hi, 4, 16):
                    for low in _digit_ranges(0xDC00 + l_lo, 0xDC00 + l_hi, 4, 16):
                        options.append(concat(literal("u"), _hex(high), literal("\\u"), _hex(low)))
    return union(*options)


def _hex(digit_ranges: list[tuple[int, int]]) -> Nfa:
    parts = []
    for lo, hi in digit_ranges:
        ranges = [(0x30 + lo, 0x30 + min(hi, 9))] if lo <= 9 else []
        if hi >= 10:
            a, b = max(lo, 10) - 10, hi - 10
            ranges += [(0x61 + a, 0x61 + b), (0x41 + a, 0x41 + b)]
        parts.append(chars(normalize(ranges)))
    return concat(*parts)


def _digit_ranges(lo: int, hi: int, width: int, base: int) -> list[list[tuple[int, int]]]:
    """Sequences of per-digit ranges whose width-digit base-`base` numbers are exactly lo..hi."""
    if width == 0:
        return [[]]
    unit = base ** (width - 1)
    lo_d, hi_d = lo // unit, hi // unit
    if lo_d == hi_d:
        return [[(lo_d, lo_d)] + rest for rest in _digit_ranges(lo % unit, hi % unit, width - 1, base)]
    out, first, last = [], lo_d, hi_d
    if lo % unit:
        out += [[(lo_d, lo_d)] + rest for rest in _digit_ranges(lo % unit, unit - 1, width - 1, base)]
        first += 1
    tail = []
    if hi % unit != unit - 1:
        tail = [[(hi_d, hi_d)] + rest for rest in _digit_ranges(0, hi % unit, width - 1, base)]
        last -= 1
    if first <= last:
        out.append([(first, last)] + [(0, base - 1)] * (width - 1))
    return out + tail


def _surrogate_blocks(lo: int, hi: int) -> list[tuple[int, int, int, int]]:
    """lo..hi (astral) as (high lo, high hi, low lo, low hi) blocks of 10-bit surrogate payloads."""
    (h_lo, l_lo), (h_hi, l_hi) = divmod(lo - 0x10000, 1024), divmod(hi - 0x10000, 1024)
    if h_lo == h_hi:
        return [(h_lo, h_lo, l_lo, l_hi)]
    out = []
    if l_lo:
        out.append((h_lo, h_lo, l_lo, 1023))
        h_lo += 1
    tail = []
    if l_hi != 1023:
        tail.append((h_hi, h_hi, 0, l_hi))
        h_hi -= 1
    if h_lo <= h_hi:
        out.append((h_lo, h_hi, 0, 1023))
    return out + tail


def _contains(cps: CodePoints, c: int) -> bool:
    return any(lo <= c <= hi for lo, hi in cps)


def _intersect(a: CodePoints, b: CodePoints) -> CodePoints:
    return normalize([(max(x, y), min(p, q)) for x, p in a for y, q in b if max(x, y) <= min(p, q)])


def _char_boundaries(text: Dfa) -> list[int]:
    """The states between whole characters (the others are inside a UTF-8 sequence). A byte below
    0x80 or a lead byte fixes the continuations due after it; a continuation byte one less."""
    due = np.full(text.num_states, -1)
    due[0] = 0

    def settle(targets: np.ndarray, d: int) -> None:
        targets = np.unique(targets[targets >= 0])
        if ((due[targets] >= 0) & (due[targets] != d)).any():
            raise ValueError("text automaton mixes character boundaries and UTF-8 continuations")
        due[targets] = d

    for cols, d in ((slice(0, 0x80), 0), (slice(0xC2, 0xE0), 1), (slice(0xE0, 0xF0), 2), (slice(0xF0, 0xF5), 3)):
        settle(text.trans[:, cols], d)
    for d in (3, 2, 1):
        settle(text.trans[due == d, 0x80:0xC0], d - 1)
    return np.flatnonzero(due == 0).tolist()


def _escape_targets(text: Dfa, boundary: list[int]) -> dict[int, dict[int, CodePoints]]:
    """For each boundary state q: target state -> the escapable code points that lead there."""
    padded = np.vstack([text.trans, np.full((1, 256), -1, dtype=np.int32)])   # row -1: dead
    qs = np.array(boundary, dtype=np.int64)
    # Fast path: the states where every non-ASCII character leads to one same state (or nowhere).
    uniform = np.ones(len(qs), dtype=np.bool_)
    common = None
    for (lead_lo, lead_hi), conts in UTF8_SHAPES:
        cur = qs
        for b_lo, b_hi in [(lead_lo, lead_hi), *conts]:
            block = padded[cur, b_lo:b_hi + 1]
            uniform &= block.min(axis=1) == block.max(axis=1)
            cur = block[:, 0]
        common = cur if common is None else common
        uniform &= cur == common
    ascii_targets = padded[qs][:, ESCAPABLE_ASCII]
    simple = uniform & (ascii_targets == common[:, None]).all(axis=1)     # every escape to one state
    out, found_at = {}, {}                # found_at: q -> target -> code point ranges
    for i, q in enumerate(boundary):
        if simple[i]:
            out[q] = {int(common[i]): ESCAPABLE} if common[i] >= 0 else {}
            continue
        found = found_at[q] = {}
        for cp in ESCAPABLE_ASCII:
            t = int(text.trans[q, cp])
            if t >= 0:
                found.setdefault(t, []).append((cp, cp))
        if uniform[i]:
            if common[i] >= 0:
                found.setdefault(int(common[i]), []).append((0x80, 0x10FFFF))
    _non_ascii_targets(padded, [q for i, q in enumerate(boundary) if not simple[i] and not uniform[i]], found_at)
    for q, found in found_at.items():
        out[q] = {t: normalize(r) for t, r in sorted(found.items())}
    return out


def _non_ascii_targets(padded: np.ndarray, qs: list[int], found_at: dict[int, dict[int, list]]) -> None:
    """Walk the UTF-8 sequences from the states qs byte by byte, all of them at once, taking a whole
    subtree where every completion of it ends in one state (a subtree's code points are one
    interval: UTF-8 keeps order). States of one automaton mostly split the code points alike (a
    pattern's classes), so walking them together costs about one state's walk."""
    def end_states(states: np.ndarray, conts: list[tuple[int, int]]) -> np.ndarray:
        """Per state (row), the states after any completion of conts, distinct values first."""
        cur = states[:, None]
        for lo, hi in conts:
            if len(cur) == 1:
                cur = np.unique(padded[cur[0], lo:hi + 1])[None, :]
                continue
            nxt = np.sort(padded[cur, lo:hi + 1].reshape(len(cur), -1), axis=1)
            new = np.ones(nxt.shape, dtype=np.bool_)
            new[:, 1:] = nxt[:, 1:] != nxt[:, :-1]
            order = np.argsort(~new, axis=1, kind="stable")[:, :int(new.sum(axis=1).max())]
            cur = np.take_along_axis(nxt, order, axis=1)     # a row's tail repeats its own values
        return cur

    def visit(states: np.ndarray, rows: np.ndarray, prefix: bytes, conts: list[tuple[int, int]]) -> None:
        ends = end_states(states, conts)
        single = ends.min(axis=1) == ends.max(axis=1)
        if single.any():
            low = ord((prefix + bytes(lo for lo, _ in conts)).decode())
            high = ord((prefix + bytes(hi for _, hi in conts)).decode())
            for row, end in zip(rows[single].tolist(), ends[single, 0].tolist()):
                if end >= 0:
                    found_at[qs[row]].setdefault(end, []).append((low, high))
        states, rows = states[~single], rows[~single]
        if not len(rows):
            return
        lo, hi = conts[0]
        block = padded[states, lo:hi + 1]
        if len(conts) == 1:                   # the last byte: each one ends its own code point
            first = ord((prefix + bytes([lo])).decode())
            at, j = np.nonzero(block >= 0)
            for row, cp, end in zip(rows[at].tolist(), (first + j).tolist(), block[at, j].tolist()):
                found_at[qs[row]].setdefault(end, []).append((cp, cp))
            return
        for j in np.flatnonzero((block >= 0).any(axis=0)).tolist():
            live = block[:, j] >= 0
            visit(block[live, j], rows[live], prefix + bytes([lo + j]), [(0x80, 0xBF)] * (len(conts) - 1))

    if not qs:
        return
    all_rows = np.arange(len(qs))
    for (lead_lo, lead_hi), conts in UTF8_SHAPES:
        block = padded[qs, lead_lo:lead_hi + 1]
        for j in np.flatnonzero((block >= 0).any(axis=0)).tolist():
            live = block[:, j] >= 0
            visit(block[live, j], all_rows[live], bytes([lead_lo + j]), conts)
