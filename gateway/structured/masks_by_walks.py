"""A mask walk by walk in Python: the reference of MaskComputer's C follow (follow_native) and its
fallback where no C compiler is found. Every tails set a walk leaves at an exit point is walked
(cached by content) from each stack that goes on there (Matcher.leaving), until all are read."""
from __future__ import annotations

import numpy as np

from gateway.structured.matcher import Config, Matcher
from gateway.structured.token_walk import ALL, Tails, or_ids


def compute_by_walks(masks, matcher: Matcher) -> np.ndarray:
    """The mask walk by walk in Python: every tails set left at an exit point is walked (cached
    by content) from each stack that goes on there. The reference of _compute's C follow."""
    words = np.zeros(masks.num_words, np.uint32)
    small: list[np.ndarray] = []
    leaves, memo, _ = masks._leaves_of(matcher)
    rules = matcher.grammar.rules
    seen: set[tuple[Config, bytes]] = set()
    todo: list[tuple[Config, Tails]] = [(c, ALL) for c in matcher.configs]
    while todo:
        config, tails = todo.pop()
        if (config, tails.key) in seen:
            continue
        seen.add((config, tails.key))
        rule, state = config[-1]
        w = memo.get((rule, state, tails.key))
        if w is None:
            if len(memo) > masks.max_walks:
                memo.clear()
            w = memo[(rule, state, tails.key)] = masks._walk(rules[rule], state, tails)
        if w.words is not None:
            np.bitwise_or(words, w.words, out=words)
        elif len(w.consumed):
            small.append(w.consumed)
        for exit_state, rest in w.exits:
            key = (config, exit_state)
            after = leaves.get(key)
            if after is None:
                after = leaves[key] = matcher.leaving(config, exit_state)
            todo.extend((c, rest) for c in after)
    if small:
        or_ids(words, np.concatenate(small))
    if matcher.accepting:
        np.bitwise_or(words, masks._eos, out=words)
    return words.view(np.int32)
