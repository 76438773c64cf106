"""A wide state's walk put together from a reference state's walk and the nodes where runs from the
two differ (difference_walk) reads the tokens and leaves the exit tails that the plain walk from
that state does: keys of objects that allow other keys (the declared keys' prefixes, their ends,
keys that share prefixes) and patterned keys."""
from __future__ import annotations

import pytest

from gateway.structured import difference_walk
from gateway.structured.json_schema import compile_json_schema
from gateway.structured.masks import MaskComputer
from gateway.structured.token_walk import ALL, WIDE, Tails, pack_ids, walk

pytestmark = pytest.mark.skipif(difference_walk.native() is None, reason="no C compiler: wide states split by first byte")

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "names": {"type": "integer"}, "nam": {},
                                      "type": {"type": "boolean"}, "": {"type": "null"}, "é\"x": {}}},
    {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}},
]


def as_sets(w, num_words) -> tuple[list[int], dict]:
    words = w.words if w.words is not None else pack_ids(w.consumed, num_words)
    return words.tolist(), {state: {d: n.tolist() for d, n in t.roots.items()} for state, t in w.exits}


@pytest.mark.parametrize("schema", SCHEMAS)
def test_difference_walk_equals_the_plain_walk(table, schema):
    masks, num_words = MaskComputer(table), -(-table.vocab_size // 32)
    compared = 0
    for rule in compile_json_schema(schema).rules:
        _, exits = masks._rule_key(rule)
        for state in range(rule.dfa.num_states):
            if int((rule.dfa.trans[state] >= 0).sum()) <= WIDE:
                continue
            got = masks._by_difference(rule, state)
            if got is None:
                continue
            want = walk(table.trie, num_words, rule.dfa.trans, exits, state, ALL)
            assert as_sets(got, num_words) == as_sets(want, num_words), (rule.name, state)
            compared += 1
    if table.vocab_size > 100_000:              # the trained vocabulary is too small for a quarter in one group
        assert compared >= 2


def test_a_wide_state_found_by_its_form_equals_the_plain_walk(table, monkeypatch):
    """The other keys' string body of a second object is found by its reachable form (made by the
    first object's rule, as the building blocks' are per tokenizer), numbered back into the second
    rule: the same walk as the plain one, and the difference walks resting on it too."""
    from gateway.structured import masks as masks_module
    masks, num_words = MaskComputer(table), -(-table.vocab_size // 32)
    first = compile_json_schema({"type": "object", "properties": {"zeta": {}, "alpha": {"type": "integer"}}})
    for rule in first.rules:
        masks.walk_rule(rule)
    splits = []
    real_split = masks_module.first_byte_split
    monkeypatch.setattr(masks_module, "first_byte_split", lambda *a: splits.append(a) or real_split(*a))
    compared = 0
    for rule in compile_json_schema(SCHEMAS[0]).rules:
        _, exits = masks._rule_key(rule)
        for state in range(rule.dfa.num_states):
            if int((rule.dfa.trans[state] >= 0).sum()) <= WIDE:
                continue
            got = masks._walk(rule, state, ALL)
            want = walk(table.trie, num_words, rule.dfa.trans, exits, state, ALL)
            assert as_sets(got, num_words) == as_sets(want, num_words), (rule.name, state)
            compared += 1
    assert compared >= 4
    if table.vocab_size > 100_000:
        assert not splits, "the string body's walk was split again instead of found by its form"


def test_tails_made_from_global_nodes_equal_tails_made_from_roots(table):
    rule = compile_json_schema({"type": "object", "properties": {"a": {}}}).rules[0]
    masks = MaskComputer(table)
    flat = table.trie.flat
    for state in range(rule.dfa.num_states):
        for _, tails in walk(table.trie, masks.num_words, rule.dfa.trans, masks._rule_key(rule)[1], state, ALL).exits:
            glob = tails.global_nodes(flat)
            again = Tails.of_global(flat, glob)
            assert again.key == Tails(tails.roots).key
            assert {d: n.tolist() for d, n in again.roots.items()} == {d: n.tolist() for d, n in tails.roots.items()}
