"""Automata over the decoded text of a JSON string (its UTF-8 bytes): what pattern, format,
minLength/maxLength and "not one of these keys" allow. json_strings lifts them to JSON syntax.

Lengths count code points, so an escape or a multi-byte character is one character. Counting takes
eight states per count (the boundary and the positions inside a UTF-8 sequence), so counts above
MAX_COUNT are held there: a larger maxLength is enforced as MAX_COUNT (stricter, never weaker), a
larger minLength is refused. A length the pattern or format already implies costs nothing.
"""
from __future__ import annotations

import hashlib
import re
from collections import deque

import numpy as np

from gateway.structured.grammar import Dfa, shift_into
from gateway.structured.json_cache import shared
from gateway.structured.json_formats import FORMATS, format_dfa
from gateway.structured.json_keywords import UnsupportedSchema
from gateway.structured.regex import UnsupportedRegex, chars, choice_dfa, regex_to_dfa_cached, star, to_dfa
from gateway.structured.regex_parse import complement as complement_of, normalize

MAX_COUNT = 1024
MAX_STATES = 20_000
MAX_KEY_CLASSES = 16
@shared
def string_text(pattern: str | None, fmt: str | None, min_len: int, max_len: int | None) -> Dfa | None:
    """The decoded texts allowed by these string keywords (None: no text is)."""
    text = None
    if pattern is not None:
        text = pattern_text(pattern)
    if fmt is not None:
        if fmt not in FORMATS:
            raise UnsupportedSchema(f"format: {fmt}", f"supported formats: {', '.join(FORMATS)}")
        text = format_dfa(fmt) if text is None else intersect(text, format_dfa(fmt), "format")
    if text is not None:
        if not text.accept.any():
            return None
        shortest, longest = length_range(text)
        min_len = 0 if min_len <= shortest else min_len
        max_len = None if max_len is not None and longest is not None and longest <= max_len else max_len
    if min_len > MAX_COUNT:
        raise UnsupportedSchema("minLength", f"at most {MAX_COUNT} is supported")
    if max_len is not None:
        max_len = min(max_len, MAX_COUNT)
        if min_len > max_len:
            return None
    if min_len or max_len is not None:
        count = count_dfa(min_len, max_len)
        text = count if text is None else intersect(text, count, "maxLength" if max_len is not None else "minLength")
    text = count_dfa(0, None) if text is None else text
    return text if text.accept.any() else None


@shared
def key_classes(declared: tuple[str, ...], patterns: tuple[str, ...], names: tuple | None) -> list[tuple[tuple[str, ...], Dfa]]:
    """The undeclared keys, split by which patterns they match: [(patterns matched, key texts)],
    empty classes left out. `names`, when given, is the propertyNames spec (see names_text) every
    key must meet. Keys the two regex readings may classify apart are left out (see undisputed)."""
    text = count_dfa(0, None) if names is None else names_text(names)
    if text is None:
        return []
    singles = _literal_classes(declared, patterns, text)
    literal = tuple(p for p in patterns if LITERAL_PATTERN.fullmatch(p))
    patterns = tuple(p for p in patterns if p not in literal)
    declared += tuple(LITERAL_PATTERN.fullmatch(p).group(1) for p in literal)
    if declared:
        text = others_than(declared) if names is None else intersect(text, others_than(declared), "properties")
    agreed = undisputed(patterns)
    if agreed is not None:
        text = intersect(text, agreed, "patternProperties")
    classes = [((), text)] if text.accept.any() else []
    for p in patterns:
        split = []
        for inside, text in classes:
            split += [(inside + (p,), intersect(text, pattern_dfa(p), "patternProperties")),
                      (inside, intersect(text, pattern_complement(p), "patternProperties"))]
        classes = [(inside, text) for inside, text in split if text.accept.any()]
        if len(classes) > MAX_KEY_CLASSES:
            raise UnsupportedSchema("patternProperties", "its patterns overlap in too many ways")
    return singles + classes


LITERAL_PATTERN = re.compile(r"\^([A-Za-z0-9_ -]*)\$")     # a pattern ECMA reads as one key


def _literal_classes(declared: tuple[str, ...], patterns: tuple[str, ...], text: Dfa) -> list[tuple[tuple[str, ...], Dfa]]:
    """A class of one key per pattern `^key$` (key_classes splits the other keys by the other
    patterns only, instead of building products with each literal one): the key's patterns are
    the ones both readings find in it; a key they read apart, a declared key or one `text` (the
    propertyNames) refuses is left out."""
    out = []
    for key in dict.fromkeys(m.group(1) for p in patterns if (m := LITERAL_PATTERN.fullmatch(p))):
        if key in declared or not text.matches(key.encode()):
            continue
        inside = tuple(p for p in patterns if pattern_dfa(p).matches(key.encode()))
        if all((re.search(p, key) is not None) == (p in inside) for p in patterns):
            out.append((inside, choice_dfa([key])))
    return out


def others_than(keys: tuple[str, ...]) -> Dfa:
    """Every text but these: their trie, each node completed by the state the any-text automaton
    would be in after the same bytes (a trie node has one path, so its UTF-8 position is exact)."""
    anything = count_dfa(0, None)
    nodes, shadow, accept = [{}], [0], [True]
    for key in keys:
        node = 0
        for b in key.encode():
            if b not in nodes[node]:
                nodes[node][b] = len(nodes)
                nodes.append({})
                shadow.append(int(anything.trans[shadow[node], b]))
                accept.append(bool(anything.accept[shadow[-1]]))
            node = nodes[node][b]
        accept[node] = False
    n = len(nodes)
    trans = np.empty((n + anything.num_states, 256), dtype=np.int32)
    shift_into(trans[:n], anything.trans[shadow], n)
    shift_into(trans[n:], anything.trans, n)
    for node, edges in enumerate(nodes):
        for b, child in edges.items():
            trans[node, b] = child
    # Every state can still end: a key's last node has other characters to go on with.
    dfa = Dfa(trans, np.array(accept + anything.accept.tolist(), dtype=np.bool_))
    if all(one_spelling(key) for key in keys):
        dfa._digest = hashlib.blake2b(b"others_than\0" + "\0".join(keys).encode(), digest_size=16).digest()
        OTHERS_DIGESTS[dfa._digest] = len(nodes)
    return dfa


OTHERS_DIGESTS: dict[bytes, int] = {}       # others_than's digests, of plain keys only -> trie nodes


def one_spelling(text: str) -> bool:
    """A string JSON writes in one way only: printable ASCII that needs no escape (nor allows \\/).
    Every trie node of such keys is a character boundary whose escapes all leave the keys
    (json_strings lifts others_than of them by layout)."""
    return all(" " <= c <= "~" and c not in '"\\/' for c in text)


def names_text(spec: tuple) -> Dfa | None:
    """The texts a propertyNames spec allows: ("enum", strings) or ("text", pattern, format, min
    length, max length)."""
    if spec[0] == "enum":
        return choice_dfa(list(spec[1])) if spec[1] else None
    return string_text(*spec[1:])


@shared
def pattern_dfa(pattern: str) -> Dfa:
    """The texts a JSON Schema pattern matches somewhere in, read as ECMA-262 (regex.py)."""
    try:
        return regex_to_dfa_cached(pattern, search=True)
    except UnsupportedRegex as err:
        raise UnsupportedSchema("pattern", f"{pattern!r}: {err}") from None


def pattern_text(pattern: str) -> Dfa:
    """pattern_dfa without the texts ECMA and Python's re (jsonschema's engine) may read apart."""
    undisputed_text = undisputed((pattern,))
    text = pattern_dfa(pattern)
    return text if undisputed_text is None else intersect(text, undisputed_text, "pattern")


def undisputed(patterns: tuple[str, ...]) -> Dfa | None:
    """The texts on which ECMA and Python read these patterns alike (None: all texts): none of the
    code points where they disagree about \\d \\w \\s, for the classes the patterns use where it
    matters (negated, or \\s at all, whose two lists each have members the other lacks)."""
    kinds = set()
    for pattern in patterns:
        kinds |= set(re.findall(r"\\([DWSB])", pattern))
        kinds |= {c.upper() for c in re.findall(r"\[\^(?:[^\]\\]|\\[^dws])*\\([dws])", pattern)}
        kinds |= {"S"} if re.search(r"\\[sS]", pattern) else set()
    disputed = tuple(r for kind in sorted(kinds) for r in _DISPUTED.get(kind, ()))
    return _without(disputed) if disputed else None


_DISPUTED = {"S": ((0x1C, 0x1F), (0x85, 0x85), (0xFEFF, 0xFEFF)),     # \\s: Python-only and ECMA-only spaces
             "D": (("isdecimal",),), "W": (("isalnum",),), "B": (("isalnum",),)}


@shared
def _without(disputed: tuple) -> Dfa:
    """Every text with none of these code points (("isalnum",): the non-ASCII ones Python's \\w
    takes; ("isdecimal",): the non-ASCII ones its \\d takes)."""
    ranges = []
    for r in disputed:
        if len(r) == 2:
            ranges.append(r)
        else:
            test = getattr(str, r[0])
            ranges += [(c, c) for c in range(0x80, 0x110000) if test(chr(c)) or (r[0] == "isalnum" and chr(c) == "_")]
    return to_dfa(star(chars(complement_of(normalize(ranges)))))


@shared
def pattern_complement(pattern: str) -> Dfa:
    """The texts a pattern matches nowhere in."""
    return complement(pattern_dfa(pattern))


def complement(text: Dfa) -> Dfa:
    """The valid UTF-8 texts that text does not accept."""
    n = text.num_states
    trans = np.vstack([np.where(text.trans >= 0, text.trans, n), np.full((1, 256), n, dtype=np.int32)])
    return intersect(count_dfa(0, None), Dfa(trans.astype(np.int32), np.append(~text.accept, True)), "pattern")


def intersect(a: Dfa, b: Dfa, keyword: str) -> Dfa:
    """The product automaton (reachable pairs only), trimmed; refused past MAX_STATES. Built a
    breadth-first layer at a time; a pair is numbered p * |b| + q while it is looked up."""
    first, byte_class = _byte_classes(a, b)
    ta, tb, nb = a.trans[:, first].astype(np.int64), b.trans[:, first], b.num_states
    ids: dict[int, int] = {0: 0}
    rows, layer = [], np.zeros(1, dtype=np.int64)
    while len(layer):
        pa, pb = ta[layer // nb], tb[layer % nb]
        live = (pa >= 0) & (pb >= 0)
        codes = np.where(live, pa * nb + pb, -1)
        seen = np.unique(codes[live])
        fresh = [c for c in seen.tolist() if c not in ids]
        base = len(ids)
        ids.update((c, base + i) for i, c in enumerate(fresh))
        if len(ids) > MAX_STATES:
            raise UnsupportedSchema(keyword, "the combined string constraints need too many states")
        number = np.array([ids[c] for c in seen.tolist()], dtype=np.int32)
        rows.append(np.where(live, number[np.searchsorted(seen, codes)] if len(seen) else -1, -1).astype(np.int32))
        layer = np.array(fresh, dtype=np.int64)
    pairs = np.fromiter(ids, dtype=np.int64)
    classes, accept = np.concatenate(rows), a.accept[pairs // nb] & b.accept[pairs % nb]
    live = can_accept(classes, accept)        # trimmed while a column per byte class: trim's result
    if not live[0]:
        return Dfa(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=np.bool_))
    if not live.all():
        classes, accept = _kept(classes, live), accept[live]
    return Dfa(np.ascontiguousarray(classes[:, byte_class]), accept)


def _byte_classes(a: Dfa, b: Dfa) -> tuple[np.ndarray, np.ndarray]:
    """Bytes no state of a or b tells apart: (a representative byte per class, class of each byte)."""
    columns = np.ascontiguousarray(np.concatenate([a.trans, b.trans]).T)
    _, first, byte_class = np.unique(columns.view(np.dtype((np.void, columns.shape[1] * 4))).ravel(),
                                     return_index=True, return_inverse=True)
    order = np.argsort(first)                     # classes numbered by their first byte
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[byte_class.ravel()]


def trim(dfa: Dfa) -> Dfa:
    """Without the states that cannot reach acceptance (the start stays state 0)."""
    live = can_accept(dfa.trans, dfa.accept)
    if live.all():
        return dfa
    if not live[0]:
        return Dfa(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=np.bool_))
    return compact(dfa, live)


def can_accept(trans: np.ndarray, accept: np.ndarray) -> np.ndarray:
    """Per state of a table (a column per byte or per byte class), whether some text leads from it
    to acceptance: backwards breadth-first from the accepting states, a layer at a time."""
    n = len(trans)
    src, col = np.nonzero(trans >= 0)
    edges = np.unique(trans[src, col].astype(np.int64) * n + src)     # (target, source), sorted
    preds, bounds = edges % n, np.searchsorted(edges, np.arange(n + 1, dtype=np.int64) * n)
    live = accept.copy()
    layer = np.flatnonzero(live)
    while len(layer):
        first, count = bounds[layer], bounds[layer + 1] - bounds[layer]
        total = int(count.sum())
        if not total:
            break
        at = np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)
        found = preds[at]
        layer = np.unique(found[~live[found]])
        live[layer] = True
    return live


def compact(dfa: Dfa, keep: np.ndarray) -> Dfa:
    """Only the kept states, renumbered in order (a dropped target becomes -1)."""
    return Dfa(_kept(dfa.trans, keep), dfa.accept[keep].copy())


def _kept(trans: np.ndarray, keep: np.ndarray) -> np.ndarray:
    order = np.flatnonzero(keep)
    remap = np.full(len(trans) + 1, -1, dtype=np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return np.ascontiguousarray(remap[trans[order]])


def length_range(text: Dfa) -> tuple[int, int | None]:
    """Fewest and most code points of an accepted text (most: None when unbounded). A code point
    is counted at its first byte; the automaton must be trimmed."""
    src, byte = np.nonzero(text.trans >= 0)
    weight = ((byte < 0x80) | (byte >= 0xC0)).astype(np.int64)
    edges = np.unique(np.stack([src, text.trans[src, byte], weight], axis=1), axis=0).tolist()
    n = text.num_states
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    indegree = [0] * n
    for q, t, w in edges:
        out[q].append((t, w))
        indegree[t] += 1
    best = [None] * n
    best[0] = 0
    todo = deque([0])
    while todo:                                   # 0-1 breadth-first search
        q = todo.popleft()
        for t, w in out[q]:
            if best[t] is None or best[q] + w < best[t]:
                best[t] = best[q] + w
                (todo.append if w else todo.appendleft)(t)
    shortest = min(best[q] for q in np.flatnonzero(text.accept).tolist())
    longest, ready, done = [0] * n, [q for q in range(n) if indegree[q] == 0], 0
    while ready:                                  # longest paths in topological order
        q = ready.pop()
        done += 1
        for t, w in out[q]:
            longest[t] = max(longest[t], longest[q] + w)
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if done < n:
        return shortest, None
    return shortest, max(longest[q] for q in np.flatnonzero(text.accept).tolist())


COUNT_DIGESTS: dict[bytes, tuple[int, int | None]] = {}     # count_dfa's digests -> (lo, hi)


@shared
def count_dfa(lo: int, hi: int | None) -> Dfa:
    """Valid UTF-8 of lo..hi code points (hi None: no upper bound). States 8c..8c+7 serve count c:
    the boundary, then the positions inside a multi-byte character.

    Cut from one table of every count up to MAX_COUNT + 1 (_count_table, built once per process
    and pinned with the building blocks), since below its top count a count automaton is that
    table's rows: the top count takes no further character (hi given) or loops on itself. Its
    digest names (lo, hi) instead of hashing megabytes (COUNT_DIGESTS: json_strings lifts it from
    the name); equal automata built otherwise only miss sharing with it."""
    if lo > MAX_COUNT + 1 or (hi is not None and hi > MAX_COUNT + 1):
        return _count_table(lo, hi)
    table = count_table()
    top = lo if hi is None else hi
    if hi is None:
        trans = table[:8 * (top + 1)].copy()
        last = trans[8 * top:]
        last[last == 8 * (top + 1)] = 8 * top
    else:
        trans = table[:8 * top + 1].copy()
        trans[8 * top] = -1
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[8 * np.arange(lo, top + 1)] = True
    dfa = Dfa(trans, accept)
    dfa._digest = _count_digest(b"count_dfa", lo, hi)
    COUNT_DIGESTS[dfa._digest] = (lo, hi)
    return dfa


def count_table() -> np.ndarray:
    """The table of every count up to MAX_COUNT + 2, unbounded, that count automata are cut from."""
    return _count_table(MAX_COUNT + 2, None).trans


def _count_digest(kind: bytes, lo: int, hi: int | None) -> bytes:
    return hashlib.blake2b(b"%s %d %d" % (kind, lo, -1 if hi is None else hi), digest_size=16).digest()


@shared
def _count_table(lo: int, hi: int | None) -> Dfa:
    """count_dfa built state by state (its reference)."""
    top = lo if hi is None else hi
    size = 8 * (top + 1)
    trans = np.full((size, 256), -1, dtype=np.int32)
    c = np.arange(top + 1)
    base = 8 * c
    nxt = np.where(c < top, base + 8, base if hi is None else -1)      # boundary of count c + 1
    trans[base[:, None], np.arange(0x80)] = nxt[:, None]
    # positions 1, 2, 3: that many continuation bytes due; 4..7: the first one restricted
    for (lead_lo, lead_hi), pos in zip([(0xC2, 0xDF), (0xE1, 0xEC), (0xEE, 0xEF), (0xF1, 0xF3),
                                        (0xE0, 0xE0), (0xED, 0xED), (0xF0, 0xF0), (0xF4, 0xF4)],
                                       [1, 2, 2, 3, 4, 5, 6, 7]):
        trans[base[:, None], np.arange(lead_lo, lead_hi + 1)] = np.where(nxt >= 0, base + pos, -1)[:, None]
    for pos, (b_lo, b_hi), to in [(1, (0x80, 0xBF), None), (2, (0x80, 0xBF), 1), (3, (0x80, 0xBF), 2),
                                  (4, (0xA0, 0xBF), 1), (5, (0x80, 0x9F), 1), (6, (0x90, 0xBF), 2),
                                  (7, (0x80, 0x8F), 2)]:
        target = nxt if to is None else base + to
        trans[(base + pos)[:, None], np.arange(b_lo, b_hi + 1)] = target[:, None]
    accept = np.zeros(size, dtype=np.bool_)
    accept[base[c >= lo]] = True
    keep = np.ones(size, dtype=np.bool_)
    if hi is not None:
        keep[base[-1] + 1:] = False           # the last count takes no further character
    return compact(Dfa(trans, accept), keep)
