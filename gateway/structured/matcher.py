"""Byte-level matching of a Grammar: the set of possible call stacks after the bytes seen so far.

A configuration is a tuple of frames (rule, state), the top last. Its closure adds every
configuration reachable without consuming a byte: entering a callee (the caller's frame moves to
the call's return state) and leaving a callee that is in an accepting state. JSON grammars keep
this set tiny (a number may end or go on; whitespace may end or go on), so a set is exact and cheap.
"""
from __future__ import annotations

import numpy as np

from gateway.structured.grammar import Grammar

Config = tuple[tuple[int, int], ...]
MAX_DEPTH = 128          # recursion a schema may nest to; deeper output is refused, not mis-matched


class Matcher:
    def __init__(self, grammar: Grammar, configs: frozenset[Config] | None = None):
        self.grammar = grammar
        self.configs = configs if configs is not None else self._closure({((grammar.start, 0),)})

    def copy(self) -> "Matcher":
        return Matcher(self.grammar, self.configs)

    @property
    def accepting(self) -> bool:
        """The bytes so far form a complete match."""
        rules = self.grammar.rules
        return any(len(c) == 1 and rules[c[0][0]].dfa.accept[c[0][1]] for c in self.configs)

    @property
    def dead(self) -> bool:
        return not self.configs

    def step(self, configs: frozenset[Config], byte: int) -> frozenset[Config]:
        rules = self.grammar.rules
        moved = set()
        for c in configs:
            rule, state = c[-1]
            nxt = int(rules[rule].dfa.trans[state, byte])
            if nxt >= 0:
                moved.add(c[:-1] + ((rule, nxt),))
        return self._closure(moved) if moved else frozenset()

    def advance(self, data: bytes) -> bool:
        """Consume data if the grammar allows all of it; otherwise change nothing and say False."""
        configs = self._after(data)
        if configs:
            self.configs = configs
        return bool(configs)

    def allows(self, data: bytes) -> bool:
        return bool(self._after(data))

    def _after(self, data: bytes) -> frozenset[Config]:
        """The stack set after data, empty as soon as a byte is refused."""
        configs = self.configs
        for b in data:
            configs = self.step(configs, b)
            if not configs:
                break
        return configs

    def leaving(self, config: Config, state: int) -> frozenset[Config]:
        """The stacks reachable from `config` with its top frame at `state` by calling or returning
        there (not by reading on in the same rule), closed. Masks continue a token's tail from them."""
        rules = self.grammar.rules
        rule, base = config[-1][0], config[:-1]
        moves = [base + ((rule, ret), (callee, 0)) for callee, ret in rules[rule].calls.get(state, ())
                 if len(config) < MAX_DEPTH]
        if base and rules[rule].dfa.accept[state]:
            moves.append(base)
        return self._closure(moves) if moves else frozenset()

    def next_bytes(self) -> list[int]:
        rules = self.grammar.rules
        out = set()
        for c in self.configs:
            rule, state = c[-1]
            row = rules[rule].dfa.trans[state]
            out.update(int(b) for b in (row >= 0).nonzero()[0])
        return sorted(out)

    def forced(self, limit: int = 256) -> bytes:
        """The bytes every continuation must start with (jump-forward): extended while exactly one
        byte is possible and the match could not end here instead."""
        probe, out = self.copy(), bytearray()
        while len(out) < limit and not probe.accepting:
            nxt = probe.next_bytes()
            if len(nxt) != 1:
                break
            probe.configs = probe.step(probe.configs, nxt[0])
            out.append(nxt[0])
        return bytes(out)

    def shortest_completion(self, limit: int = 4096) -> bytes | None:
        """The fewest bytes that complete the match from here, or None when there is no completion
        within `limit` bytes. Follows the grammar's per-state distances to acceptance (each frame
        of a stack must still reach its rule's end), so it costs the length of the answer, not a
        search. Used to end validly when max_tokens runs out."""
        if self.accepting:
            return b""
        dist = self.grammar.to_accept()
        cost = lambda c: sum(dist[r][s] for r, s in c)
        best = min(self.configs, key=cost, default=None)
        if best is None or not cost(best) <= limit:
            return None
        out = bytearray()
        for rule, state in reversed(best):
            self._shortest_in(rule, state, dist, out)
        return bytes(out) if self.allows(bytes(out)) else None

    def completion_cost(self) -> float:
        """Length in bytes of the shortest completion (inf if none), without building it."""
        dist = self.grammar.to_accept()
        return min((sum(dist[r][s] for r, s in c) for c in self.configs), default=np.inf)

    def _shortest_in(self, rule: int, state: int, dist: list[np.ndarray], out: bytearray) -> None:
        """Append to out the shortest bytes taking `rule` from `state` to acceptance."""
        r = self.grammar.rules[rule]
        level: set[int] = set()               # states visited at this distance (via empty callees)
        while dist[rule][state] > 0:
            want = dist[rule][state]
            level.add(state)
            for callee, ret in r.calls.get(state, ()):
                if dist[callee][0] + dist[rule][ret] == want and ret not in level:
                    self._shortest_in(callee, 0, dist, out)
                    if dist[rule][ret] < want:
                        level = set()
                    state = ret
                    break
            else:
                row = r.dfa.trans[state]
                b = next(b for b in range(256) if row[b] >= 0 and dist[rule][row[b]] + 1 == want)
                out.append(b)
                state = int(row[b])
                level = set()

    def _closure(self, start) -> frozenset[Config]:
        rules = self.grammar.rules
        seen, todo = set(start), list(start)
        while todo:
            c = todo.pop()
            rule, state = c[-1]
            nexts = []
            for callee, ret in rules[rule].calls.get(state, ()):
                if len(c) < MAX_DEPTH:
                    nexts.append(c[:-1] + ((rule, ret), (callee, 0)))
            if len(c) > 1 and rules[rule].dfa.accept[state]:
                nexts.append(c[:-1])
            for n in nexts:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return frozenset(seen)
