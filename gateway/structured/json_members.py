"""Member and element rules laid out directly in their tables (json_blocks' Builder made them state
by state; these are equal to its tables, tests/structured/test_compile_paths.py).

A member `ws "key" ws : ws value ws` with w = max_ws, for a key automaton of k states:
    0..w            whitespace before the key (each takes the key's first bytes)
    w+1..w+k        the key's automaton
    w+k+1..w+k+w    whitespace after the key
    c = 2w+k+1      after the colon; c..c+w call the value, returning to r = c+w+1
    r..r+w          whitespace after the value, all accepting
A plain key (printable ASCII JSON writes in one way) is a chain of bytes, so its member is laid out
from the key's bytes without an automaton for the key.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from gateway.structured.grammar import Dfa, shift_into

Calls = dict[int, list[tuple[int, int]]]
WS = np.frombuffer(b" \t\n\r", dtype=np.uint8).astype(np.intp)
COLON, QUOTE = ord(":"), ord('"')


def member(key: tuple[Dfa, Calls], value_rule: int, max_ws: int) -> tuple[Dfa, Calls]:
    """ws "key" ws : ws value ws, for a key automaton (with calls) that never accepts the empty
    text and moves on from no accepting state (a JSON string: the closing quote ends it)."""
    dfa, key_calls = key
    w, k = max_ws, dfa.num_states
    assert not dfa.accept[0], "an embedded value cannot be empty"
    off = w + 1
    trans, accept = _frame(off + k, w)
    shift_into(trans[off:off + k], dfa.trans, off)
    firsts = np.flatnonzero(dfa.trans[0] >= 0)
    assert (trans[:off, firsts] == -1).all(), "a key starts with whitespace"
    trans[:off, firsts] = dfa.trans[0, firsts] + off
    ends = off + np.flatnonzero(dfa.accept)
    assert (trans[ends] == -1).all(), "a key goes on after its closing quote"
    if w:
        trans[ends[:, None], WS] = off + k
    trans[ends, COLON] = off + k + w
    calls: Calls = {}
    for state, targets in key_calls.items():
        shifted = [(rule, off + ret) for rule, ret in targets]
        for s in (range(off) if state == 0 else (off + state,)):
            calls.setdefault(s, []).extend(shifted)
    counted = tuple((off + o, lo, hi) for o, lo, hi in dfa.counted)
    return Dfa(trans, accept, counted), _calls(off + k, w, value_rule, calls)


def plain_member(key: str, value_rule: int, max_ws: int) -> tuple[Dfa, Calls]:
    """member((key_dfa(key), {}), ...) of a plain key, from its bytes."""
    data = np.frombuffer(b'"' + key.encode() + b'"', dtype=np.uint8)
    w, n = max_ws, len(data)
    off = w + 1                               # the key's states: off (unreached) .. off + n
    end = off + n
    trans, accept = _frame(end + 1, w, plain=True)
    steps = np.arange(off, end)
    trans[steps, data] = steps + 1
    return Dfa(trans, accept), _calls(end + 1, w, value_rule, {})


def element(value_rule: int, max_ws: int) -> tuple[Dfa, Calls]:
    """ws value ws"""
    w = max_ws
    trans, accept = _element_made(w)
    return Dfa(trans.copy(), accept.copy()), {s: [(value_rule, w + 1)] for s in range(w + 1)}


@lru_cache(maxsize=16)
def _element_made(w: int) -> tuple[np.ndarray, np.ndarray]:
    trans = np.full((2 * w + 2, 256), -1, dtype=np.int32)
    _chain(trans, 0, w)
    _chain(trans, w + 1, w)
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[w + 1:] = True
    trans.flags.writeable = accept.flags.writeable = False
    return trans, accept


def _frame(after_key: int, w: int, plain: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A member's table and acceptance but for the key's states (left empty; a plain key's
    opening quote and the moves after its closing quote filled in): the frame of the shortest key
    (after_key w + 2) made once per w, its whitespace before the key copied and its rows from the
    key's last state on shifted to this key's (one numpy pass each; making a frame per key length
    took a dozen small numpy calls; equal to it, tests/structured/test_compile_paths.py)."""
    shortest = w + 2
    if after_key < shortest:
        trans, accept = _frame_made(after_key, w, plain)
        return trans.copy(), accept.copy()
    base, _ = _frame_made(shortest, w, plain)
    trans = np.empty((after_key + 3 * w + 2, 256), dtype=np.int32)
    trans[:w + 1] = base[:w + 1]
    trans[w + 1:after_key - 1] = -1
    shift_into(trans[after_key - 1:], base[w + 1:], after_key - shortest)
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[after_key + 2 * w + 1:] = True
    return trans, accept


@lru_cache(maxsize=1024)
def _frame_made(after_key: int, w: int, plain: bool) -> tuple[np.ndarray, np.ndarray]:
    """The part before the key (whitespace) and after its last byte (whitespace, colon, whitespace,
    the value's return, whitespace)."""
    trans = np.full((after_key + 3 * w + 2, 256), -1, dtype=np.int32)
    if plain:
        trans[:w + 1, QUOTE] = w + 2
        trans[after_key - 1, WS if w else []] = after_key
        trans[after_key - 1, COLON] = after_key + w
    _chain(trans, 0, w)
    colon = after_key + w
    _chain(trans, after_key, w - 1)
    trans[after_key:colon, COLON] = colon
    _chain(trans, colon, w)
    _chain(trans, colon + w + 1, w)
    accept = np.zeros(len(trans), dtype=np.bool_)
    accept[colon + w + 1:] = True
    trans.flags.writeable = accept.flags.writeable = False
    return trans, accept


def _calls(after_key: int, w: int, value_rule: int, calls: Calls) -> Calls:
    """The value's calls, from the colon and the whitespace after it."""
    colon = after_key + w
    for s in range(colon, colon + w + 1):
        calls.setdefault(s, []).append((value_rule, colon + w + 1))
    return calls


def _chain(trans: np.ndarray, first: int, w: int) -> None:
    """Whitespace from state first through w more states, one byte each."""
    if w > 0:
        rows = np.arange(first, first + w)
        trans[rows[:, None], WS] = (rows + 1)[:, None]
