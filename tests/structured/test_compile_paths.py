"""The compiler's short cuts equal the constructions they stand for: counted strings cut from one
table and laid out (not searched) when lifted, so are the keys other than an object's declared ones,
numbers in whole-number arithmetic, keys of literal patternProperties as one-key classes, member and
element rules laid out instead of built state by state."""
from __future__ import annotations

from fractions import Fraction

import json

import numpy as np
import pytest

from gateway.structured.grammar import Dfa
from gateway.structured.json_blocks import Builder
from gateway.structured.json_content import Contents
from gateway.structured.json_members import element, member, plain_member
from gateway.structured.json_objects import ObjectShape, object_piece
from gateway.structured.json_other_keys import other_keys_member
from gateway.structured.json_numbers import _number_dfa
from gateway.structured.json_strings import EscapeRules, _char_boundaries, _escape_targets, _lifted, json_string
from gateway.structured.json_text import (
    MAX_COUNT,
    _count_table,
    can_accept,
    count_dfa,
    others_than,
    pattern_text,
    string_text,
)
from gateway.structured.json_values import key_dfa
from tests.structured.test_json_schema import check_texts

COUNTS = [(0, None), (1, None), (4, None), (0, 0), (0, 1), (1, 1), (2, 5), (0, 50), (7, 7), (3, 9),
          (0, MAX_COUNT), (MAX_COUNT, MAX_COUNT), (MAX_COUNT, None)]


def same(a, b) -> bool:
    return a.trans.shape == b.trans.shape and np.array_equal(a.trans, b.trans) and np.array_equal(a.accept, b.accept)


@pytest.mark.parametrize("lo,hi", COUNTS)
def test_counted_strings_equal_their_reference(lo, hi):
    text, reference = count_dfa.__wrapped__(lo, hi), _count_table.__wrapped__(lo, hi)
    assert same(text, reference)
    (fast, fast_escapes), (slow, slow_escapes) = _lifted.__wrapped__(text), _lifted.__wrapped__(reference)
    assert same(fast, slow) and fast.counted == slow.counted and fast_escapes == slow_escapes


@pytest.mark.parametrize("keys", [(), ("",), ("", "q"), ("a",), ("name", "type", "id", "n"), ("a b", "x-y_z", "~", " "),
                                  ("ab", "abc", "abd", "b")])
def test_other_keys_lift_as_searched(keys):
    text = others_than(keys)
    (fast, fast_escapes), (slow, slow_escapes) = _lifted.__wrapped__(text), _lifted.__wrapped__(Dfa(text.trans, text.accept))
    assert same(fast, slow) and fast.counted == slow.counted and fast_escapes == slow_escapes


def test_bounded_numbers_pick_the_values_in_range():
    """Whole-number windows: every integer from -300 to 300 (and a few decimals) accepted exactly
    when it is in range, for open and closed, whole and fractional bounds."""
    bounds = [(None, None), (Fraction(0), Fraction(100)), (Fraction(-90), Fraction(90)), (Fraction(1, 2), None),
              (None, Fraction(-5, 2)), (Fraction(2 ** 31 - 1), None), (Fraction("0.001"), Fraction("0.25"))]
    texts = [str(i) for i in range(-300, 301)] + ["0.5", "0.25", "0.001", "0.0011", "-2.5", "-2.49", "99.99", "100.0"]
    for lo, hi in bounds:
        for lo_open in (False, True):
            for hi_open in (False, True):
                for integer in (False, True):
                    dfa = _number_dfa.__wrapped__(lo, lo_open, hi, hi_open, integer, None)
                    for t in texts:
                        x = Fraction(t)
                        want = (lo is None or x > lo or (x == lo and not lo_open)) and \
                               (hi is None or x < hi or (x == hi and not hi_open)) and (not integer or "." not in t)
                        assert dfa.matches(t.encode()) == want, (lo, lo_open, hi, hi_open, integer, t)


def test_literal_pattern_keys_take_their_pattern_schemas():
    schema = {"type": "object", "properties": {"a": {"type": "string"}},
              "patternProperties": {"^client_id$": {"type": "integer"}, "^b$": {"type": "boolean"},
                                    "id": {"minimum": 10}, "^a$": {"maxLength": 1}},
              "additionalProperties": {"type": "null"}}
    check_texts(schema, ['{"client_id": 12}', '{"client_id": 5}', '{"client_id": "x"}', '{"b": true}', '{"b": 1}',
                         '{"a": "x"}', '{"a": "xy"}', '{"grid": 11}', '{"grid": 9}', '{"other": null}',
                         '{"other": 1}', '{"client_id": 12, "b": false, "zz": null, "a": "q"}', '{"bb": null}',
                         '{"client_idx": null}', '{"client_idx": 10}'])


def test_keys_of_literal_patterns_only_are_laid_out():
    """Every pattern a single key (the other-key members laid out from the keys): the key classes
    and their schemas as the patterns give them."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "client_id": {"type": "string"}},
              "patternProperties": {"^client_id$": {"minLength": 2}, "^b$": {"type": "boolean"},
                                    "^b-c d$": {"type": "integer"}, "^a$": {"maxLength": 1}},
              "additionalProperties": {"type": "null"}}
    check_texts(schema, ['{"client_id": "xy"}', '{"client_id": "x"}', '{"b": true}', '{"b": 1}', '{"b-c d": 1}',
                         '{"b-c d": null}', '{"a": "x"}', '{"a": "xy"}', '{"other": null}', '{"other": 1}',
                         '{"bb": null}', '{"b": false, "zz": null, "a": "q"}', '{"client_idx": null}', '{"\\u0062": null}'],
                narrowed=['{"\\u0062": true}'])       # no \u escape of printable ASCII (json_strings)
    check_texts({"patternProperties": {"^x$": {"type": "integer"}}, "additionalProperties": False},
                ['{"x": 1}', '{"x": "1"}', '{"y": 1}', '{}'])


@pytest.mark.parametrize("text", [string_text(r"^(\d+\.\d+.*)$", None, 0, 12), pattern_text(r"^[a-zé]+\s\S$"),
                                  pattern_text(r"[^\d]x"), pattern_text("^[α-ω]{2,3}$"), pattern_text("^😀+[^😀]$")],
                         ids=["digits-counted", "spaces", "not-digit", "greek", "emoji"])
def test_escape_targets_follow_the_text(text):
    """Each boundary state's escape targets, by code point, are where the text goes on reading that
    code point's bytes (sampled over every UTF-8 length, with the classes' edges)."""
    boundary = _char_boundaries(text)
    targets = _escape_targets(text, boundary)
    cps = [*range(0x80, 0x800, 7), *range(0x800, 0xD800, 97), *range(0xE000, 0x10000, 89),
           *range(0x10000, 0x110000, 4099), 0xA0, 0x660, 0x669, 0x6F0, 0x1680, 0x2028, 0x3000, 0xFEFF, 0x1F600]
    for q in boundary:
        for cp in cps:
            state = q
            for byte in chr(cp).encode():
                state = int(text.trans[state, byte]) if state >= 0 else -1
            listed = [t for t, ranges in targets[q].items() if any(lo <= cp <= hi for lo, hi in ranges)]
            assert listed == ([state] if state >= 0 else []), (q, hex(cp), listed, state)


def built_member(key, value_rule: int, max_ws: int):
    """ws "key" ws : ws value ws, state by state (the reference of json_members.member)."""
    b = Builder()
    ends = b.embed(b.ws([b.state()], max_ws), *key)
    colon = b.lit(b.ws(ends, max_ws), b":")
    ret = b.call(b.ws([colon], max_ws), value_rule)
    b.accepting.update(b.ws([ret], max_ws))
    return b.build()


def built_element(value_rule: int, max_ws: int):
    b = Builder()
    ret = b.call(b.ws([b.state()], max_ws), value_rule)
    b.accepting.update(b.ws([ret], max_ws))
    return b.build()


def same_piece(a, b) -> bool:
    (da, ca), (db, cb) = a, b
    return same(da, db) and da.counted == db.counted and list(ca.items()) == list(cb.items())


@pytest.mark.parametrize("max_ws", [0, 1, 2, 3])
def test_members_and_elements_equal_their_construction(max_ws):
    escapes = EscapeRules(lambda name, dfa: 7)
    for name in ["", "a", "name", "x-y z~", "é", "a/b", 'q"\\', "tab\t", "😀k"]:
        built = built_member((key_dfa(name), {}), 3, max_ws)
        assert same_piece(member((key_dfa(name), {}), 3, max_ws), built), name
        if name.isascii() and not any(ch in name for ch in '"\\/\t'):
            assert same_piece(plain_member(name, 3, max_ws), built), name
    for text in [others_than(("name", "type")), others_than(("é",)), string_text("^[a-z]+$", None, 0, None),
                 count_dfa(0, 40)]:
        key = json_string(text, escapes)
        assert same_piece(member(key, 5, max_ws), built_member(key, 5, max_ws))
    assert same_piece(element(4, max_ws), built_element(4, max_ws))


def built_object(shape: ObjectShape, max_ws: int):
    """An object's rule state by state (the reference of json_objects.object_piece)."""
    n = len(shape.members)
    b = Builder()
    start, end = b.state(), b.state()
    b.accepting.add(end)
    after_brace = b.lit([start], b"{")
    expect: dict = {}                         # position -> state expecting a member (after , or {)
    after: dict = {}                          # position -> state after a member

    if shape.any_order:                       # positions: bit sets of the keys seen
        required = sum(1 << j for j in shape.required)
        depends = [(1 << j, sum(1 << d for d in shape.depends.get(j, ()))) for j in range(n) if shape.depends.get(j)]
        bits = list(enumerate(shape.members))

        def moves(seen: int):
            if shape.max_props is None or seen.bit_count() < shape.max_props:
                return [(m, seen | 1 << j) for j, m in bits if not seen >> j & 1]
            return []

        def closable(seen: int) -> bool:
            return (seen & required == required and seen.bit_count() >= shape.min_props
                    and all(seen & need == need for key, need in depends if seen & key))
    else:
        def moves(pos: int):
            for j in range(pos, n):
                yield shape.members[j], j + 1
                if j in shape.required:
                    break

        def closable(pos: int) -> bool:
            return not any(j >= pos for j in shape.required)

    def after_state(pos) -> int:
        if pos not in after:
            after[pos] = b.state()
            todo.append(pos)
        return after[pos]

    def offer(state: int, pos) -> bool:
        """Calls from state to every member allowed at pos; False when there is none."""
        options = [*moves(pos), *((other, pos) for other in shape.others)]
        if options:
            b.calls.setdefault(state, []).extend([(rule, after_state(nxt)) for rule, nxt in options])
        return bool(options)

    todo: list = []
    offer(after_brace, 0)
    if closable(0) and not shape.nonempty:
        b.edge(b.ws([after_brace], max_ws), b"}", end)
    while todo:
        pos = todo.pop()
        state = after[pos]
        if closable(pos):
            b.edge([state], b"}", end)
        expect[pos] = b.state()
        if offer(expect[pos], pos):
            b.edge([state], b",", expect[pos])
    return b.build()


SHAPES = [ObjectShape([]), ObjectShape([5]), ObjectShape([5], {0}), ObjectShape([5, 6, 7], {1}, [9]),
          ObjectShape([1, 2, 3], {1}, min_props=2, nonempty=True), ObjectShape([1, 2, 3, 4, 5], {4}, [7, 8], ordered=True),
          ObjectShape([1, 2, 3], max_props=0), ObjectShape([1, 2, 3], depends={1: {0}}, others=[9]),
          ObjectShape(list(range(10, 18))), ObjectShape(list(range(10, 18)), {0, 7}, [30, 31]),
          ObjectShape([1, 2, 3, 4], min_props=2, max_props=3), ObjectShape([1, 2, 3, 4], depends={0: {2}, 3: {1, 2}}),
          ObjectShape([1, 2, 3], nonempty=True, others=[8]), ObjectShape([1, 2, 3], {2}, ordered=True),
          ObjectShape(list(range(20)), {3, 11}, [40]), ObjectShape(list(range(12))), ObjectShape([], others=[4]),
          ObjectShape([], nonempty=True, others=[4]), ObjectShape([1, 2], {0, 1}, max_props=1)]


@pytest.mark.parametrize("max_ws", [0, 1, 2, 3])
def test_other_keys_members_equal_their_construction(max_ws):
    escapes = EscapeRules(lambda name, dfa: 7)
    for keys in [("a",), ("",), ("", "q"), ("name", "type", "id", "n"), ("a b", "x-y_z", "~", " "), ("ab", "abc", "abd", "b"),
                 tuple(f"key{i}" for i in range(30))]:
        built = built_member(json_string(others_than(keys), escapes), 4, max_ws)
        assert same_piece(other_keys_member(keys, 4, 7, max_ws), built), keys


def canonical(piece):
    """A rule's table, acceptance and calls with its states renumbered breadth-first from 0 (moves
    in byte order, then call returns in order) and the states never entered dropped: equal for two
    rules exactly when they are one automaton numbered two ways."""
    dfa, calls = piece
    number, order = {0: 0}, [0]
    for s in order:
        row = dfa.trans[s]
        for t in [*row[row >= 0].tolist(), *(ret for _, ret in calls.get(s, ()))]:
            if t not in number:
                number[t] = len(order)
                order.append(t)
    remap = np.full(dfa.num_states + 1, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return (remap[dfa.trans[order]].tolist(), dfa.accept[order].tolist(),
            sorted((number[s], [(r, number[ret]) for r, ret in ts]) for s, ts in calls.items() if s in number))


@pytest.mark.parametrize("max_ws", [0, 1, 2, 3])
def test_objects_equal_their_construction(max_ws):
    for shape in SHAPES:
        assert canonical(object_piece(shape, max_ws)) == canonical(built_object(shape, max_ws)), shape


def test_content_keys_agree_with_sorted_serialisation():
    """Two values share a content key exactly when json.dumps(sort_keys=True) spells them alike,
    containers met twice (by identity) or built anew alike."""
    shared = {"type": "string", "maxLength": 3}
    values = [True, 1, 1.0, 0.0, -0.0, 1e16, "1", "true", None, [], {}, [1, True], [True, 1], (1, True),
              {"a": 1, "b": [1.0]}, {"b": [1.0], "a": 1}, {"b": [1], "a": 1}, {"a": {"b": {}}}, {"a": {"b": []}},
              shared, dict(shared), {"properties": {"x": shared, "y": shared}}, {"properties": {"y": shared, "x": dict(shared)}},
              [shared, [shared]], {"enum": ["a", "b"]}, {"enum": ["b", "a"]}, "é", "\u00e9"]
    contents = Contents()
    keys = [contents.key(v) for v in values] + [contents.key(v) for v in values]
    texts = [json.dumps(v, sort_keys=True) for v in values] * 2
    for i in range(len(keys)):
        for j in range(len(keys)):
            assert (keys[i] == keys[j]) == (texts[i] == texts[j]), (texts[i], texts[j])


def searched_live(dfa: Dfa) -> np.ndarray:
    """The states that can reach acceptance, searched backwards state by state (can_accept's reference)."""
    src, byte = np.nonzero(dfa.trans >= 0)
    dst = dfa.trans[src, byte]
    order = np.argsort(dst, kind="stable")
    preds, bounds = src[order], np.searchsorted(dst[order], np.arange(dfa.num_states + 1))
    live = dfa.accept.copy()
    todo = np.flatnonzero(live).tolist()
    while todo:
        q = todo.pop()
        for p in np.unique(preds[bounds[q]:bounds[q + 1]]).tolist():
            if not live[p]:
                live[p] = True
                todo.append(p)
    return live


def test_live_states_found_by_layers_as_one_by_one():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        trans = np.where(rng.random((n, 256)) < rng.random() * 0.05, rng.integers(0, n, (n, 256)), -1)
        dfa = Dfa(trans.astype(np.int32), rng.random(n) < rng.random() * 0.3)
        assert np.array_equal(can_accept(dfa.trans, dfa.accept), searched_live(dfa))
    for dfa in (count_dfa(2, 40), pattern_text("^[a-z]+@x$"), string_text("[a-zA-Z0-9_.-]+", None, 3, 255)):
        assert np.array_equal(can_accept(dfa.trans, dfa.accept), searched_live(dfa))


@pytest.mark.parametrize("max_ws", [0, 1, 2, 3])
def test_member_frames_shifted_from_the_shortest_equal_their_making(max_ws):
    from gateway.structured.json_members import _frame, _frame_made
    for plain in (False, True):
        for after_key in range(max_ws + 2, max_ws + 40):
            made, shifted = _frame_made(after_key, max_ws, plain), _frame(after_key, max_ws, plain)
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(made, shifted)), after_key
