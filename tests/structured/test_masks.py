"""Token masks equal the brute-force answer: every token checked byte by byte against the matcher."""
from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from gateway.structured.grammar import Dfa, Grammar, Rule
from gateway.structured.masks import MaskComputer, pack
from gateway.structured.matcher import Matcher
from gateway.structured.tokens import TokenTable


def dfa(n: int, edges: dict[tuple[int, str], int], accept: set[int]) -> Dfa:
    trans = np.full((n, 256), -1, np.int32)
    for (state, chars), to in edges.items():
        for ch in chars:
            trans[state, ord(ch)] = to
    return Dfa(trans, np.array([i in accept for i in range(n)]))


DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz "


def list_grammar() -> Grammar:
    """'[' (item (', ' item)*)? ']' where item is a quoted word or a number: calls, pops, ambiguity."""
    root = dfa(5, {(0, "["): 1, (1, "]"): 4, (2, ","): 3, (2, "]"): 4, (3, " "): 1}, {4})
    word = dfa(3, {(0, '"'): 1, (1, LETTERS): 1, (1, '"'): 2}, {2})
    number = dfa(3, {(0, "-"): 1, (0, DIGITS): 2, (1, DIGITS): 2, (2, DIGITS): 2}, {2})
    return Grammar([Rule("list", root, {1: [(1, 2), (2, 2)]}), Rule("word", word), Rule("number", number)])


def brute_force(matcher: Matcher, table: TokenTable) -> np.ndarray:
    allowed = np.array([b is not None and matcher.allows(b) for b in table.token_bytes])
    if matcher.accepting:
        allowed[list(table.eos_ids)] = True
    return allowed


@pytest.mark.parametrize("prefix", ["", "[", '["ab', '["ab", 1', '["ab", 12', "[-", '[1, "x y"', '[1, "x y"]'])
def test_mask_equals_brute_force(table, prefix):
    matcher = Matcher(list_grammar())
    assert matcher.advance(prefix.encode())
    masks = MaskComputer(table)
    got = masks.allowed(matcher)
    np.testing.assert_array_equal(got, brute_force(matcher, table))
    assert masks.words(matcher) is masks.words(matcher), "the mask of a stack set is computed once"
    np.testing.assert_array_equal(masks.words(matcher), pack(got))


def test_token_bytes_round_trip(table, qwen3_tokenizer_dir):
    texts = ['{"name": "東京", "n": -1.5e3}', "  \n\t😀 ok"]
    hf = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir) if table.vocab_size > 100000 else None
    if hf is None:
        pytest.skip("checked on the real tokenizer")
    for text in texts:
        assert b"".join(table.token_bytes[t] for t in hf.encode(text, add_special_tokens=False)) == text.encode()


def test_pack_bit_order():
    allowed = np.zeros(70, dtype=np.bool_)
    allowed[[0, 31, 32, 69]] = True
    words = pack(allowed)
    assert words.dtype == np.int32 and words.shape == (3,)
    bits = [(int(words[w]) >> j) & 1 for w in range(3) for j in range(32)]
    assert [i for i, b in enumerate(bits) if b] == [0, 31, 32, 69]
