"""Grammars built from alternatives of `prefix CALL(grammar) suffix`, optionally repeated with a
separator, optionally beside free text: the shape of tool calls.

The root rule is a trie over the literal prefixes (so alternatives sharing `{"name": "` diverge only
at the name); each prefix's last state calls its argument grammar, whose rules are copied in with
their indices shifted; the suffix leads to an accepting end state.
"""
from __future__ import annotations

import numpy as np

from gateway.structured.grammar import Dfa, Grammar, Rule


def alternatives(branches: list[tuple[bytes, Grammar, bytes]], *, separator: bytes | None = None,
                 free_text_unless: bytes | None = None, text_before: bytes | None = None) -> Grammar:
    """Exactly one branch (or several joined by `separator`). With `free_text_unless`, any text
    whose first byte is not that byte is also accepted, unconstrained. With `text_before` (a prefix
    of every branch), free text comes first, up to the first occurrence of `text_before`, which
    starts the branches (text, then calls; either may be empty)."""
    trans: list[list[int]] = [[-1] * 256]
    accept: list[bool] = [False]
    calls: dict[int, list[tuple[int, int]]] = {}
    rules: list[Rule] = [Rule("root", Dfa(np.zeros((1, 256), np.int32), np.zeros(1, bool)))]

    def new_state(final: bool = False) -> int:
        trans.append([-1] * 256)
        accept.append(final)
        return len(trans) - 1

    def chain(start: int, data: bytes) -> int:
        state = start
        for b in data:
            if trans[state][b] < 0:
                trans[state][b] = new_state()
            state = trans[state][b]
        return state

    root = new_state() if text_before else 0        # where the branches start (again, after a separator)
    end = new_state(final=True)
    for prefix, grammar, suffix in branches:
        assert prefix, "every branch starts with a literal"
        assert not text_before or prefix.startswith(text_before), "text_before must begin every branch"
        call_at = chain(root, prefix)
        ret = new_state()
        offset = len(rules)
        for rule in grammar.rules:
            shifted = {s: [(callee + offset, r) for callee, r in targets] for s, targets in rule.calls.items()}
            rules.append(Rule(rule.name, rule.dfa, shifted))
        calls.setdefault(call_at, []).append((grammar.start + offset, ret))
        last = chain(ret, suffix[:-1]) if suffix else ret
        if suffix:
            assert trans[last][suffix[-1]] in (-1, end), "branches must not clash on their suffixes"
            trans[last][suffix[-1]] = end
        else:
            accept[ret] = True
    if separator:
        sep_end = chain(end, separator[:-1])
        trans[sep_end][separator[-1]] = root
    if free_text_unless is not None:
        text = new_state(final=True)
        for b in range(256):
            trans[text][b] = text
            if b != free_text_unless[0] and trans[0][b] < 0:
                trans[0][b] = text
    if text_before:
        _text_until(trans, accept, text_before, chain(root, text_before), new_state)
    rules[0] = Rule("root", Dfa(np.array(trans, dtype=np.int32), np.array(accept)), calls)
    grammar = Grammar(rules)
    grammar.check()
    return grammar



def _text_until(trans: list[list[int]], accept: list[bool], pattern: bytes, after: int, new_state) -> None:
    """State 0 and the states it leads to read free text (all accepting) with the Knuth-Morris-Pratt
    automaton of `pattern`: text state k has matched k bytes of it; matching all of it goes to `after`."""
    m = len(pattern)
    texts = [0] + [new_state() for _ in range(m - 1)]
    for k, row in enumerate(_kmp(pattern)):
        accept[texts[k]] = True
        trans[texts[k]] = [after if j == m else texts[j] for j in row]


def _kmp(pattern: bytes) -> list[list[int]]:
    """dfa[k][b]: how many bytes of pattern are matched after reading b with k matched."""
    dfa = [[0] * 256 for _ in pattern]
    dfa[0][pattern[0]] = 1
    fallback = 0
    for k in range(1, len(pattern)):
        dfa[k] = list(dfa[fallback])
        dfa[k][pattern[k]] = k + 1
        fallback = dfa[fallback][pattern[k]]
    return dfa
