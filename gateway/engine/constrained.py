"""Structured decoding inside the engine: a request's Matcher, its token mask each step, and
jump-forward (appending the bytes every continuation must start with, as tokens, without sampling).

The token table and masks are built per tokenizer on first use; grammars are compiled in the
caller's thread (see `gateway.structured.constraint`), never on the step loop.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from gateway.engine.tokenizer import Tokenizer
from gateway.structured.block_walks import warm_blocks
from gateway.structured.masks import MaskComputer
from gateway.structured.matcher import Matcher
from gateway.structured.tokens import TokenTable

CLOSE_MARGIN = 6           # tokens one more sampled token could add to the ending


class Constraints:
    def __init__(self, tokenizer: Tokenizer, vocab_size: int, device: torch.device, jump_forward: bool = True):
        self.tokenizer, self.vocab_size, self.device = tokenizer, vocab_size, device
        self.jump_forward = jump_forward
        self._masks: MaskComputer | None = None
        self._lock = threading.Lock()
        self.forced_tokens = 0                     # tokens appended by jump-forward, for the benchmark

    @property
    def masks(self) -> MaskComputer:
        with self._lock:                           # first use may come from a request thread
            if self._masks is None:
                table = TokenTable.shared(self.tokenizer.hf, self.vocab_size, self.tokenizer.eos_token_ids)
                warm_blocks(table)
                self._masks = MaskComputer(table)
            return self._masks

    def bitmask(self, matchers: list[Matcher | None]) -> torch.Tensor | None:
        """int32 [rows, ceil(V/32)] for the sampler, or None when no row is constrained."""
        if all(m is None for m in matchers):
            return None
        words = -(-self.vocab_size // 32)
        out = np.full((len(matchers), words), -1, dtype=np.int32)
        for i, m in enumerate(matchers):
            if m is not None:
                out[i] = self.masks.words(m)
        return torch.from_numpy(out).to(self.device)

    def advance(self, matcher: Matcher, token: int) -> None:
        data = self.masks.table.token_bytes[token]
        assert data is not None and matcher.advance(data), "the sampler chose a token the mask refused"

    def follow(self, matcher: Matcher, token: int, left: int) -> tuple[list[int], bool, bool]:
        """After sampling `token` with `left` tokens of budget (it included): the tokens to append,
        whether the output is complete, and whether it was closed early to end validly. The tokens
        are the sampled one, then any forced stretch (jump-forward), then the shortest valid ending
        once the budget is nearly spent. Invariant: a valid ending always fits the budget left.
        A token that would break it (opening an object whose required keys no longer fit) is not
        appended: the ending from before it is, in its place."""
        before = matcher.copy()
        self.advance(matcher, token)
        if not self._room(matcher, left - 1):
            ending = self._ending(before, left)
            if ending is not None:
                matcher.configs = before.configs
                assert matcher.advance(b"".join(self.masks.table.token_bytes[t] for t in ending))
                return ending, self.complete(matcher), True
        tokens, complete, closed = [token], self.complete(matcher), False
        if not complete:
            tokens += self.forced_tokens_for(matcher, left - 1)
            complete = self.complete(matcher)
        if not complete:
            ending = self.closing_tokens(matcher, left - len(tokens))
            if ending is not None:
                tokens, closed = tokens + ending, True
        return tokens, complete, closed

    def _room(self, matcher: Matcher, budget: int) -> bool:
        """A valid ending fits in `budget` tokens (or none can be found to check)."""
        cost = matcher.completion_cost()
        if cost <= budget or cost == np.inf:           # tokens never outnumber bytes
            return True
        ending = matcher.shortest_completion()
        ids = None if ending is None else self._exact_tokens(ending)
        return ids is None or len(ids) <= budget

    def _ending(self, matcher: Matcher, budget: int) -> list[int] | None:
        """The tokens of the shortest valid ending, when they fit in `budget`."""
        ending = matcher.shortest_completion()
        ids = None if ending is None else self._exact_tokens(ending)
        return ids if ids is not None and len(ids) <= budget else None

    @staticmethod
    def complete(matcher: Matcher) -> bool:
        """Nothing more may follow: the output is finished."""
        return matcher.accepting and not matcher.next_bytes()

    def closing_tokens(self, matcher: Matcher, remaining: int) -> list[int] | None:
        """When the token budget is nearly spent, the tokens of the shortest valid ending, if it is
        time to emit them now (they fit, with a margin for what one more sampled token could open)."""
        if matcher.completion_cost() + CLOSE_MARGIN < remaining:    # tokens never outnumber bytes
            return None
        ending = matcher.shortest_completion()
        if ending is None:
            return None
        ids = self._exact_tokens(ending)
        if ids is None or len(ids) + CLOSE_MARGIN < remaining or len(ids) > remaining:
            return None
        assert matcher.advance(ending)
        return ids

    def _exact_tokens(self, data: bytes) -> list[int] | None:
        """Token ids whose bytes are exactly `data`, or None."""
        if not data:
            return []
        table = self.masks.table
        head = 0                              # continuation bytes finishing a character cut by the last token
        while head < len(data) and 0x80 <= data[head] < 0xC0:
            head += 1
        if any(b not in table.byte_token for b in data[:head]):
            return None
        try:
            ids = [table.byte_token[b] for b in data[:head]] + self.tokenizer.encode(data[head:].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        return ids if b"".join(table.token_bytes[t] or b"\0" for t in ids) == data else None

    def forced_tokens_for(self, matcher: Matcher, budget: int) -> list[int]:
        """Tokens for the forced continuation (at most `budget`), advancing the matcher over them.
        Only tokens whose bytes are exactly the forced bytes are used; a stretch that tokenizes
        differently is left to ordinary decoding."""
        if not self.jump_forward or budget <= 0:
            return []
        # Trailing whitespace stays with the model: tokenizers glue it to the next word.
        ids = (self._exact_tokens(matcher.forced().rstrip(b" \n\t\r")) or [])[:budget]
        if not ids or not matcher.advance(b"".join(self.masks.table.token_bytes[t] for t in ids)):
            return []
        self.forced_tokens += len(ids)
        return ids
