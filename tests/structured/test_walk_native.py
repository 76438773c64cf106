"""The C token walk gives what the numpy reference walk gives: the same tokens read whole and the
same exit tails (nodes, depths and content keys), from every state of real schema rules, from
ALL and from the tails those walks leave."""
from __future__ import annotations

import numpy as np
import pytest

from gateway.structured import walk_native
from gateway.structured.json_schema import compile_json_schema
from gateway.structured.masks import MaskComputer
from gateway.structured.token_walk import ALL, Tails, Walk, walk, walk_reference

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "n": {"type": "number"},
                                      "tags": {"type": "array", "items": {"enum": ["a", "ab", "b"]}}},
     "required": ["name"]},
    {"type": "string", "pattern": "^[a-z]+\\d{2,3}$"},
    {"type": "string", "format": "date-time"},
]

pytestmark = pytest.mark.skipif(walk_native.native() is None, reason="no C compiler: the numpy walk runs")


def as_sets(w: Walk) -> tuple[list[int], dict]:
    exits = {state: (tails.key, {d: nodes.tolist() for d, nodes in tails.roots.items()}) for state, tails in w.exits}
    return sorted(w.consumed.tolist()), exits


@pytest.mark.parametrize("schema", SCHEMAS)
def test_native_walk_equals_reference(table, schema):
    masks, num_words = MaskComputer(table), -(-table.vocab_size // 32)
    compared = 0
    for rule in compile_json_schema(schema).rules:
        _, exits = masks._rule_key(rule)
        for state in range(rule.dfa.num_states):
            todo: list[tuple[int, Tails]] = [(state, ALL)]
            while todo and compared < 4000:
                s, tails = todo.pop()
                ref = walk_reference(table.trie, num_words, rule.dfa.trans, exits, s, tails)
                got = walk(table.trie, num_words, rule.dfa.trans, exits, s, tails)
                assert as_sets(got) == as_sets(ref), (rule.name, s)
                compared += 1
                todo += [(e, rest) for e, rest in ref.exits if e != s][:3]
    assert compared >= 5


def test_the_comparison_catches_a_wrong_walk(table):
    """as_sets tells apart a walk that lost one consumed token or one exit node."""
    rule = compile_json_schema({"type": "string"}).rules[0]
    _, exits = MaskComputer(table)._rule_key(rule)
    ref = walk_reference(table.trie, -(-table.vocab_size // 32), rule.dfa.trans, exits, 1, ALL)
    state, tails = ref.exits[0]
    depth = min(tails.roots)
    fewer_nodes = Tails({**tails.roots, depth: tails.roots[depth][1:]})
    assert as_sets(Walk(ref.consumed[1:], None, ref.exits)) != as_sets(ref)
    assert as_sets(Walk(ref.consumed, None, [(state, fewer_nodes), *ref.exits[1:]])) != as_sets(ref)


def test_overlapping_roots_fall_back_or_agree(table):
    """Roots nested in one another (a node and its child) are walked once per root, in C or not."""
    rule = compile_json_schema({"type": "string"}).rules[0]
    _, exits = MaskComputer(table)._rule_key(rule)
    level1 = table.trie.levels[1]
    parent = int(np.flatnonzero(level1.child_hi > level1.child_lo)[0])
    child = int(level1.child_lo[parent])
    tails = Tails({1: np.array([parent]), 2: np.array([child])})
    num_words = -(-table.vocab_size // 32)
    assert as_sets(walk(table.trie, num_words, rule.dfa.trans, exits, 1, tails)) == \
        as_sets(walk_reference(table.trie, num_words, rule.dfa.trans, exits, 1, tails))


def test_native_reachable_form_equals_the_python_search():
    """The C search numbers a state's reachable part as the Python one does, and gives up past the
    same limit."""
    from gateway.structured import form_native
    from gateway.structured.token_walk import reachable_order
    if form_native.native() is None:
        pytest.skip("no C compiler")
    for schema in [*SCHEMAS, {"type": "object", "properties": {"name": {}, "names": {"type": "integer"}}}]:
        for rule in compile_json_schema(schema).rules:
            for state in range(rule.dfa.num_states):
                for limit in (3, 512):
                    want = reachable_order(rule.dfa.trans, state, limit)
                    got = form_native.reach(rule.dfa.trans, state, limit)
                    assert (got is None) == (want is None), (rule.name, state, limit)
                    if got is not None:
                        assert got[0].tolist() == want.tolist()
                        assert (got[1][:-1][want] == np.arange(len(want))).all() and (got[1] >= 0).sum() == len(want)
