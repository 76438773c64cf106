"""A counted string's walks made from the plain string's (counted_walks) equal its own walks of
the trie, at every count, from every token and from the tails its walks leave, standalone and
inside a union; a walk from the wrong count would differ."""
from __future__ import annotations

import numpy as np
import pytest

from gateway.structured.json_schema import compile_json_schema
from gateway.structured.masks import MaskComputer, unpack
from gateway.structured.token_walk import ALL, Walk, walk

SCHEMAS = [{"type": "string", "maxLength": 30}, {"type": ["string", "null"], "minLength": 2, "maxLength": 12},
           {"type": "string", "minLength": 4}, {"type": "string", "minLength": 3, "maxLength": 3}]


def as_sets(w: Walk) -> tuple[list[int], dict]:
    """Tokens read whole (a words-only walk's from its words) and exit tails, as sets."""
    ids = w.consumed if w.consumed is not None else np.flatnonzero(unpack(w.words.view(np.int32), len(w.words) * 32))
    return sorted(set(ids.tolist())), {s: {d: sorted(set(n.tolist())) for d, n in t.roots.items()} for s, t in w.exits}


@pytest.mark.parametrize("schema", SCHEMAS)
def test_counted_walks_equal_trie_walks(table, schema):
    rule = compile_json_schema(schema).rules[0]
    masks, num_words = MaskComputer(table), -(-table.vocab_size // 32)
    exits = masks._rule_key(rule)[1]
    counts = [s for s in range(rule.dfa.num_states) if masks._counted_at(rule, s) is not None]
    assert len(counts) >= 4, "the rule's counted string is recognised"
    for state in counts:
        own = walk(table.trie, num_words, rule.dfa.trans, exits, state, ALL)
        assert as_sets(masks._walk(rule, state, ALL)) == as_sets(own), state
        for _, tails in own.exits[:3]:
            for other in counts[::3]:
                assert as_sets(masks._walk(rule, other, tails)) == \
                    as_sets(walk(table.trie, num_words, rule.dfa.trans, exits, other, tails)), (state, other)


def test_a_walk_from_the_wrong_count_differs(table):
    """The comparison above would catch a filter off by one count."""
    rule = compile_json_schema({"type": "string", "minLength": 2, "maxLength": 5}).rules[0]
    masks, num_words = MaskComputer(table), -(-table.vocab_size // 32)
    exits = masks._rule_key(rule)[1]
    counts = [s for s in range(rule.dfa.num_states) if masks._counted_at(rule, s) is not None]
    for here, there in zip(counts, counts[1:]):
        assert as_sets(masks._walk(rule, there, ALL)) != \
            as_sets(walk(table.trie, num_words, rule.dfa.trans, exits, here, ALL))


def test_a_changed_block_is_walked_as_any_state(table):
    """An automaton whose rows no longer hold the layout (an edge added after the closing quote)
    is not taken for a counted string."""
    rule = compile_json_schema({"type": "string", "maxLength": 6}).rules[0]
    trans = rule.dfa.trans.copy()
    final = int(rule.dfa.accept.nonzero()[0][0])
    trans[final, ord(",")] = 1
    from gateway.structured.grammar import Dfa, Rule
    changed = Rule("string", Dfa(trans, rule.dfa.accept, rule.dfa.counted), rule.calls)
    masks = MaskComputer(table)
    assert masks._counted_at(rule, 1) is not None and masks._counted_at(changed, 1) is None
