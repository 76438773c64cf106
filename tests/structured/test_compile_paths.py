"""The compiler's short cuts equal the constructions they stand for: counted strings cut from one
table and laid out (not searched) when lifted, so are the keys other than an object's declared ones, numbers in whole-number arithmetic, keys of literal
patternProperties as one-key classes."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gateway.structured.grammar import Dfa
from gateway.structured.json_numbers import _number_dfa
from gateway.structured.json_strings import _char_boundaries, _escape_targets, _lifted
from gateway.structured.json_text import (
    MAX_COUNT,
    _count_table,
    count_dfa,
    others_than,
    pattern_text,
    string_text,
)
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
