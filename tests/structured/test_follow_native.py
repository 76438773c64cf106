"""The C follow of a mask's exit tails (follow_native) gives the mask the walk-by-walk Python loop
gives, along real JSON texts: calls, returns, recursion up to and past MAX_DEPTH, and buffers
that overflow and grow."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from gateway.structured import follow_native
from gateway.structured import masks as masks_module
from gateway.structured import matcher as matcher_module
from gateway.structured.json_schema import compile_json_schema
from gateway.structured.masks import MaskComputer
from gateway.structured.matcher import Matcher

pytestmark = pytest.mark.skipif(follow_native.native() is None, reason="no C compiler: masks follow walk by walk")

TREE = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                             "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                           "required": ["v"]}},
        "$ref": "#/$defs/node"}
CASES = [
    ({"type": "object", "properties": {"name": {"type": "string", "maxLength": 9}, "n": {"type": "number"},
                                       "tags": {"type": "array", "items": {"enum": ["a b", "a", "c"]}}},
      "required": ["name"]},
     {"name": "Ada \"L\"", "n": -1.5e3, "tags": ["a", "a b"], "extra": [True, None, {"k": "v"}]}),
    ({"type": "array", "items": {"anyOf": [{"type": "string", "format": "date"}, {"type": "integer"}]}},
     ["2024-01-02", 17, 3]),
    (TREE, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3, "kids": [{"v": 4, "kids": [{"v": 5}]}]}]}]}),
]


def follow_equals_walks(table, schema, value, separators=(", ", ": ")) -> int:
    grammar, masks = compile_json_schema(schema), MaskComputer(table)
    matcher, data, compared = Matcher(grammar), json.dumps(value, separators=separators).encode(), 0
    for i in range(len(data) + 1):
        np.testing.assert_array_equal(masks._compute(matcher), masks._compute_by_walks(matcher), err_msg=repr(data[:i]))
        compared += 1
        if i < len(data):
            assert matcher.advance(data[i:i + 1])
    return compared


@pytest.mark.parametrize("case", range(len(CASES)))
def test_follow_equals_walk_by_walk(table, case):
    assert follow_equals_walks(table, *CASES[case]) > 20


def test_buffers_that_overflow_grow(table, monkeypatch):
    """Tiny buffers: every mask overflows them at first, grows them and still comes out the same."""
    monkeypatch.setattr(follow_native, "_local", type(follow_native._local)())
    follow_native._local.buffers = follow_native.Buffers(2)
    assert follow_equals_walks(table, *CASES[0]) > 20
    assert follow_native._local.buffers.n > 2


def test_recursion_past_max_depth(table, monkeypatch):
    """A stack at MAX_DEPTH calls nothing more, in C as in the matcher."""
    monkeypatch.setattr(matcher_module, "MAX_DEPTH", 7)
    monkeypatch.setattr(masks_module, "MAX_DEPTH", 7)
    schema, value = CASES[2]
    grammar, masks = compile_json_schema(schema), MaskComputer(table)
    matcher = Matcher(grammar)
    text = json.dumps(value).encode()
    refused = next(i for i in range(len(text)) if not matcher.advance(text[i:i + 1]))
    assert refused < len(text)                    # the limit bites inside this text
    assert follow_equals_walks(table, schema, value | {"kids": []}) > 10
    np.testing.assert_array_equal(masks._compute(matcher), masks._compute_by_walks(matcher))


def test_threads_sharing_a_grammar(table):
    """Two threads computing masks of one grammar at once (each with its own buffers) get the masks
    one thread gets."""
    schema, value = CASES[0]
    grammar, masks = compile_json_schema(schema), MaskComputer(table)
    data, matchers = json.dumps(value).encode(), []
    matcher = Matcher(grammar)
    for i in range(len(data)):
        matchers.append(matcher.copy())
        assert matcher.advance(data[i:i + 1])
    want = [masks._compute_by_walks(m) for m in matchers]
    got: dict[int, list] = {0: [], 1: []}

    def run(k: int) -> None:
        got[k] = [masks._compute(m) for m in matchers[k::2] * 3]

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        for m, w in zip(got[k], want[k::2] * 3):
            np.testing.assert_array_equal(m, w)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_flat_grammar_calls_in_c_equal_the_numpy_sort(case, monkeypatch):
    """The C CSR of a grammar's calls (flat_grammar) is numpy's stable sort of them, flags included."""
    from gateway.structured import flat_grammar
    grammar = compile_json_schema(CASES[case][0])
    native = flat_grammar.FlatGrammar(grammar)
    monkeypatch.setattr(flat_grammar, "_dll", [None])
    plain = flat_grammar.FlatGrammar(grammar)
    assert len(native.call_rule) > 3
    for name in ("call_off", "call_rule", "call_ret", "flags", "base"):
        np.testing.assert_array_equal(getattr(native, name), getattr(plain, name), err_msg=name)
