"""The member rule of an object's other keys, when its declared keys are all plain and nothing else
sorts the other keys (no patternProperties, no propertyNames): laid out directly, equal to
member(json_string(others_than(declared)), ...) (tests/structured/test_compile_paths.py), which
costs a trie, a lift and a member's embedding, each a dozen numpy calls, per object.

Its states, with w = max_ws, off = w + 1 and m trie nodes of the declared keys:
    0..w                  whitespace before the key
    off                   the key's start (reached only from the whitespace)
    off+1..off+m          the trie nodes after the opening quote: any character, each trie
                          byte to its child; the closing quote where no declared key ends
    off+m+1..off+m+8      any text after leaving the trie (count_dfa(0, None))
    f = off+m+9           after the closing quote
    f+1..f+m+1            after a backslash at trie node q (q = m: in the any text), each
                          calling the escape rule and returning to the any text
and then the member's whitespace, colon and value as json_members lays them out.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from gateway.structured.grammar import Dfa, shift_into
from gateway.structured.json_members import WS, Calls, _calls, _frame
from gateway.structured.json_strings import RAW_FORBIDDEN
from gateway.structured.json_text import count_dfa

QUOTE, BACKSLASH = ord('"'), ord("\\")


def other_keys_member(declared: tuple[str, ...], value_rule: int, escape_rule: int, max_ws: int) -> tuple[Dfa, Calls]:
    """ws "key" ws : ws value ws for every key but the declared ones (plain keys: json_text.one_spelling)."""
    src, byte, dst, ends = _trie(declared)
    m, w = len(ends), max_ws
    off = w + 1
    anything = off + m + 1                    # the any-text block's first state (its boundary)
    final = anything + 8
    trans, accept = _frame(final + m + 2, w)
    boundary, body = _any_text()
    shift_into(trans[off + 1:anything], np.broadcast_to(boundary, (m, 256)), anything)
    shift_into(trans[anything:final], body, anything)
    trans[off, QUOTE] = off + 1
    trans[off + 1 + src, byte] = off + 1 + dst
    open_ = np.flatnonzero(~ends)             # trie nodes where no declared key ends
    trans[off + 1 + open_, QUOTE] = final
    trans[anything, QUOTE] = final
    nodes = np.arange(m + 1)                  # node m: the any text's boundary
    trans[off + 1 + nodes, BACKSLASH] = final + 1 + nodes
    trans[:off, QUOTE] = off + 1
    if w:
        trans[final, WS] = final + m + 2
    trans[final, ord(":")] = final + m + 2 + w
    calls: Calls = {final + 1 + q: [(escape_rule, anything)] for q in range(m + 1)}
    return Dfa(trans, accept), _calls(final + m + 2, w, value_rule, calls)


def _trie(keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The keys' trie, nodes numbered as others_than numbers them: its edges (node, byte, child)
    and, per node, whether a key ends there."""
    child: dict[int, int] = {}                # node << 8 | byte -> child
    ends = [0] * len(keys)
    for i, key in enumerate(keys):
        node = 0
        for b in key.encode():
            edge = node << 8 | b
            node = child.get(edge, 0) or child.setdefault(edge, len(child) + 1)
        ends[i] = node
    edges = np.fromiter(child, dtype=np.intp, count=len(child))
    ended = np.zeros(len(child) + 1, dtype=np.bool_)
    ended[ends] = True
    return edges >> 8, edges & 0xFF, np.fromiter(child.values(), dtype=np.intp, count=len(child)), ended


@lru_cache(maxsize=1)
def _any_text() -> tuple[np.ndarray, np.ndarray]:
    """count_dfa(0, None)'s boundary row and its whole table, without the bytes a JSON string
    cannot hold raw."""
    body = np.array(count_dfa(0, None).trans)
    body[:, RAW_FORBIDDEN] = -1
    body.flags.writeable = False
    return body[0], body
