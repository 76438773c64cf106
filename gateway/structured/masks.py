"""Token masks: which tokens a grammar allows next, as packed int32 bitmasks for the sampler.

For each rule state, one vectorised pass of the automaton over every token's bytes splits the
vocabulary into tokens consumed entirely inside the rule (allowed whatever the stack below holds),
tokens that die inside it (refused), and the few that pass a point where the rule could call or
return before dying: only those are checked against the full stack set. These per-state splits are
cached by automaton content, so equal building blocks (string bodies, numbers, whitespace) are
computed once per tokenizer and shared by every schema; whole masks are cached by stack set.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from gateway.structured.grammar import Rule
from gateway.structured.matcher import Matcher
from gateway.structured.tokens import TokenTable


def pack(allowed: np.ndarray) -> np.ndarray:
    """bool [V] -> int32 [ceil(V/32)], bit j of word w allowing token 32*w + j."""
    padded = np.zeros(-(-allowed.size // 32) * 32, dtype=np.bool_)
    padded[:allowed.size] = allowed
    return np.packbits(padded, bitorder="little").view("<i4").astype(np.int32)


class MaskComputer:
    def __init__(self, table: TokenTable, max_masks: int = 4096):
        self.table = table
        self._splits: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.max_masks = max_masks
        self._exits: dict[int, tuple[bytes, np.ndarray]] = {}

    def allowed(self, matcher: Matcher) -> np.ndarray:
        """bool [V]: the tokens whose bytes the matcher accepts, plus EOS once it is complete."""
        key = (id(matcher.grammar), matcher.configs)
        cached = self._masks.get(key)
        if cached is not None:
            self._masks.move_to_end(key)
            return cached
        allowed = np.zeros(self.table.vocab_size, dtype=np.bool_)
        candidates = []
        rules = matcher.grammar.rules
        for config in matcher.configs:
            rule, state = config[-1]
            inside, crossing = self._split(rules[rule], state)
            allowed[inside] = True
            candidates.append(crossing)
        if candidates:
            for t in np.unique(np.concatenate(candidates)):
                if not allowed[t] and matcher.allows(self.table.token_bytes[t]):
                    allowed[t] = True
        if matcher.accepting:
            allowed[list(self.table.eos_ids)] = True
        self._masks[key] = allowed
        if len(self._masks) > self.max_masks:
            self._masks.popitem(last=False)
        return allowed

    def _exit_points(self, rule: Rule) -> tuple[bytes, np.ndarray]:
        """States where a call or a return may happen, and their content key."""
        found = self._exits.get(id(rule))
        if found is None or found[0] is not rule:
            exits = rule.dfa.accept.copy()
            exits[list(rule.calls)] = True
            found = (rule, exits)
            self._exits[id(rule)] = found
        return rule.dfa.digest() + found[1].tobytes(), found[1]

    def _split(self, rule: Rule, state: int) -> tuple[np.ndarray, np.ndarray]:
        exit_key, exits = self._exit_points(rule)
        key = (exit_key, state)
        found = self._splits.get(key)
        if found is not None:
            return found
        trans, table = rule.dfa.trans, self.table
        firsts = np.nonzero(trans[state] >= 0)[0]
        ids = np.concatenate([table.by_first_byte[b] for b in firsts]) if len(firsts) else np.zeros(0, np.int64)
        ids = ids[np.argsort(-table.lengths[ids], kind="stable")]        # longest first: shrink as i grows
        lengths = table.lengths[ids]
        cur = np.full(len(ids), state, dtype=np.int32)
        alive = np.ones(len(ids), dtype=np.bool_)
        crossed = np.zeros(len(ids), dtype=np.bool_)
        for i in range(int(lengths[0]) if len(ids) else 0):
            n = int(np.searchsorted(-lengths, -i, side="left"))        # tokens longer than i bytes
            live = alive[:n]
            c = cur[:n]
            if i:
                crossed[:n] |= live & exits[c]
            nxt = trans[c, table.matrix[ids[:n], i]]
            ok = nxt >= 0
            alive[:n] = live & ok
            cur[:n] = np.where(ok, nxt, c)
        found = (ids[alive], ids[~alive & crossed])
        self._splits[key] = found
        return found
