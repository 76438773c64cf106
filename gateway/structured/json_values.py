"""Literal JSON: the keys of members and the values of enum / const, each as one automaton.

A value is accepted as json.dumps spells it (keys in the value's own order, numbers as written),
with up to max_ws whitespace between tokens and any JSON encoding of its strings (raw or escaped).
Text with a single spelling becomes a trie directly; the rest goes through the NFA combinators.
"""
from __future__ import annotations

import json
import math

import numpy as np

from gateway.structured.grammar import Dfa
from gateway.structured.json_cache import shared
from gateway.structured.json_keywords import UnsupportedSchema
from gateway.structured.json_strings import string_literal_nfa
from gateway.structured.json_text import one_spelling
from gateway.structured.regex import Nfa, UnsupportedRegex, chars, concat, literal, repeat, to_dfa, union


@shared
def key_dfa(key: str) -> Dfa:
    """Every JSON encoding of this key, quotes included."""
    if one_spelling(key):
        return _trie([b'"' + key.encode() + b'"'])
    return small_dfa(concat(literal('"'), string_literal_nfa(key), literal('"')), "properties")


def small_dfa(nfa: Nfa, keyword: str) -> Dfa:
    """to_dfa, refusing the schema (naming keyword) when the automaton would be too large."""
    try:
        return to_dfa(nfa)
    except UnsupportedRegex:
        raise UnsupportedSchema(keyword, "too many values or keys for one automaton") from None


def value_dfa(values: list, max_ws: int) -> Dfa:
    """Exactly these JSON values (enum, const): json.dumps spellings, keys in the value's order,
    any string encoding, up to max_ws whitespace between tokens."""
    return _value_dfa(json.dumps(values), max_ws)


@shared
def _value_dfa(values_json: str, max_ws: int) -> Dfa:
    values = json.loads(values_json)
    if all(v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and one_spelling(v)) for v in values):
        return _trie([json.dumps(v).encode() for v in values])
    ws = repeat(chars(((0x09, 0x0A), (0x0D, 0x0D), (0x20, 0x20))), 0, max_ws)
    return small_dfa(union(*(_value_nfa(v, ws) for v in values)), "enum")


def _value_nfa(v, ws: Nfa) -> Nfa:
    if v is None or isinstance(v, bool):
        return literal(json.dumps(v))
    if isinstance(v, int):
        return literal(str(v))
    if isinstance(v, float):
        assert math.isfinite(v)
        return literal(json.dumps(v))
    if isinstance(v, str):
        return concat(literal('"'), string_literal_nfa(v), literal('"'))
    if isinstance(v, list):
        items = [concat(ws, _value_nfa(x, ws), ws) for x in v] or [ws]
        return concat(literal("["), *_joined(items), literal("]"))
    items = [concat(ws, literal('"'), string_literal_nfa(k), literal('"'), ws, literal(":"), ws, _value_nfa(x, ws), ws)
             for k, x in v.items()] or [ws]
    return concat(literal("{"), *_joined(items), literal("}"))


def _trie(texts: list[bytes]) -> Dfa:
    """Exactly these byte strings, as their trie."""
    children: list[dict[int, int]] = [{}]
    edges: list[tuple[int, int, int]] = []        # (node, byte, child), set in one assignment
    ends = set()
    for text in texts:
        node = 0
        for b in text:
            if b not in children[node]:
                children[node][b] = len(children)
                edges.append((node, b, len(children)))
                children.append({})
            node = children[node][b]
        ends.add(node)
    trans = np.full((len(children), 256), -1, dtype=np.int32)
    if edges:
        src, byte, dst = zip(*edges)
        trans[list(src), list(byte)] = dst
    accept = np.zeros(len(children), dtype=np.bool_)
    accept[list(ends)] = True
    return Dfa(trans, accept)


def _joined(parts: list[Nfa]) -> list[Nfa]:
    out = []
    for i, p in enumerate(parts):
        out += [literal(","), p] if i else [p]
    return out
