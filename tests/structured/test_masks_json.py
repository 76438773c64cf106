"""Masks of real JSON Schema grammars equal the brute-force answer at every step of a valid text:
calls, returns, keys that share prefixes, bounded whitespace, formats, recursion, all through the
trie walk and its caches."""
from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from gateway.structured import json_cache
from gateway.structured.block_walks import warm_blocks
from gateway.structured.json_formats import format_dfa
from gateway.structured.json_schema import compile_json_schema
from gateway.structured.json_text import string_text
from gateway.structured.masks import MaskComputer
from gateway.structured.matcher import Matcher
from gateway.structured.tokens import TokenTable

TREE = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": -5},
                                                             "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                           "required": ["v"], "additionalProperties": False}},
        "$ref": "#/$defs/node"}
CASES = [
    ({"type": "object", "properties": {"name": {"type": "string"}, "names": {"type": "array", "items": {"type": "string"}},
                                       "n": {"type": "number"}}, "required": ["name"]},
     {"name": "Ada \"Lovelace\" 東京", "names": ["a", "b c"], "n": -1.25e3, "extra": [True, None, {"k": 1}]}),
    ({"type": "array", "items": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}, {"type": "null"}]},
      "maxItems": 4}, ["2024-01-02T03:04:05Z", 17, None]),
    ({"type": "object", "properties": {"kind": {"enum": ["alpha", "alphabet", "beta"]},
                                       "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d+$", "maxLength": 8}},
      "required": ["kind", "code"], "additionalProperties": False}, {"kind": "alphabet", "code": "AB-12"}),
    (TREE, {"v": 1, "kids": [{"v": 2, "kids": []}, {"v": -5, "kids": [{"v": 3}]}]}),
    # a counted string longer than the trained vocabulary's longest token (26 bytes)
    ({"type": "object", "properties": {"s": {"type": "string", "minLength": 3, "maxLength": 60}}, "required": ["s"]},
     {"s": "abcdefghij klmnopqrstuvwxyz 東京 \"0123456789\" ABCDEFG"}),
]


def brute_force(matcher: Matcher, table: TokenTable) -> np.ndarray:
    firsts = set(matcher.next_bytes())
    allowed = np.array([bool(b) and b[0] in firsts and matcher.allows(b) for b in table.token_bytes])
    if matcher.accepting:
        allowed[list(table.eos_ids)] = True
    return allowed


def check_along(grammar, text: str, table: TokenTable, every: int) -> int:
    """Compare at every `every`-th byte of text (and at its end); the number of masks compared."""
    matcher, masks, data, compared = Matcher(grammar), MaskComputer(table), text.encode(), 0
    for i in range(len(data) + 1):
        if i % every == 0 or i == len(data):
            np.testing.assert_array_equal(masks.allowed(matcher), brute_force(matcher, table), err_msg=repr(data[:i]))
            compared += 1
        if i < len(data):
            assert matcher.advance(data[i:i + 1])
    assert matcher.accepting
    return compared


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
@pytest.mark.parametrize("blocks", ["cold", "warm"])
def test_json_masks_equal_brute_force(trained_tokenizer_dir, case, separators, blocks):
    """Warm: the building blocks' walks, made from other grammars, are reused (block_walks)."""
    hf = AutoTokenizer.from_pretrained(trained_tokenizer_dir)
    table = TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
    if blocks == "warm":
        assert warm_blocks(table) > 0 and table.block_walks
    schema, value = CASES[case]
    text = json.dumps(value, separators=separators, ensure_ascii=False)
    assert check_along(compile_json_schema(schema), text, table, every=1) > len(text)


def test_json_masks_equal_brute_force_on_a_real_vocabulary(qwen3_tokenizer_dir):
    """Qwen3's 151k tokens: long whitespace runs, multi-byte pieces, tokens spanning `", "` and `":`."""
    hf = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    table = TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
    warm_blocks(table)
    schema, value = CASES[0]
    assert check_along(compile_json_schema(schema), json.dumps(value, ensure_ascii=False), table, every=9) >= 10


def test_strict_masks_equal_brute_force(trained_tokenizer_dir):
    """Strict mode's grammar (schema key order, no whitespace) through the same walks."""
    hf = AutoTokenizer.from_pretrained(trained_tokenizer_dir)
    table = TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
    warm_blocks(table)
    schema = {"type": "object", "properties": {"kind": {"enum": ["alpha", "alphabet"]}, "n": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["kind", "n", "tags"], "additionalProperties": False}
    text = json.dumps({"kind": "alphabet", "n": -12, "tags": ["x y", ""]}, separators=(",", ":"))
    assert check_along(compile_json_schema(schema, strict=True), text, table, every=1) > len(text)


def test_building_block_automata_outlive_a_cleared_pool(trained_tokenizer_dir):
    """warm_blocks pins the blocks' automata: json_cache.clear() (the benchmark's per-schema reset)
    keeps them, so schemas compile by composing them, and drops what a schema added."""
    hf = AutoTokenizer.from_pretrained(trained_tokenizer_dir)
    warm_blocks(TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id})))
    block, own = format_dfa("uuid"), string_text("^[a-z]+$", None, 2, 9)
    json_cache.clear()
    assert format_dfa("uuid") is block
    assert string_text("^[a-z]+$", None, 2, 9) is not own


def test_memory_per_rule_stays_bounded_across_many_schemas(trained_tokenizer_dir):
    """A long-running server meets new schemas without end: what the mask computer keeps per rule is
    forgotten past max_rules, and masks after that still equal the brute-force answer."""
    hf = AutoTokenizer.from_pretrained(trained_tokenizer_dir)
    table = TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
    masks = MaskComputer(table, max_rules=12)
    kept = []
    for i in range(12):
        schema = {"type": "object", "properties": {f"k{i}": {"enum": [f"v{i}a", f"v{i}bc"]},
                                                   "n": {"type": "integer", "maximum": i + 3}},
                  "required": [f"k{i}", "n"], "additionalProperties": False}
        matcher, data = Matcher(compile_json_schema(schema)), json.dumps({f"k{i}": f"v{i}bc", "n": i}).encode()
        for j in range(len(data) + 1):
            if j % 3 == 0:
                np.testing.assert_array_equal(masks.allowed(matcher), brute_force(matcher, table), err_msg=f"{i} {data[:j]!r}")
                kept.append(max(len(masks._rules), len(masks._forms), len(masks._counted)))
            if j < len(data):
                assert matcher.advance(data[j:j + 1])
    assert masks.forgotten >= 2 and 0 < max(kept) < 2 * masks.max_rules
