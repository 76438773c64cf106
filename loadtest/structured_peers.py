"""The grammar engines the structured-decoding benchmark drives (ours and its peers), behind one interface.

An engine compiles a JSON Schema once (`compile`; `NotCompiled` when it refuses), then walks each
instance: `start` a fresh matcher, and per step `mask` (the timed part: the whole packed token
bitmask the sampler would get), `allows(token)` (a bit of that mask) and `commit(token)`.
`reset` runs before each schema, outside the timings: it drops whatever an engine caches per schema,
so every schema starts cold, while per-tokenizer state (built in `__init__`) stays warm.

Peers follow their own documentation and MaskBench's drivers: llguidance's LLMatcher over an
LLTokenizer from the HF tokenizer; XGrammar's GrammarCompiler (one thread, its grammar cache off)
in its JSON Schema compliant mode (any whitespace, strict_mode=False), the reading our
`"strict": False` compile has.
"""
from __future__ import annotations

import json
import re
import sys
from typing import Protocol

import numpy as np


LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: .*? is false: )?")   # XGrammar's errors


class NotCompiled(Exception):
    """The engine refused the schema: `key` names the cause for tallies (a keyword where the engine
    names one), the message gives the whole reason."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key or (message.strip().splitlines() or ["?"])[0][:60]


class Engine(Protocol):
    name: str

    def reset(self) -> None: ...
    def compile(self, schema: dict) -> None: ...
    def start(self) -> None: ...
    def mask(self) -> None: ...
    def allows(self, token: int) -> bool: ...
    def commit(self, token: int) -> bool: ...


def bit(words: np.ndarray, token: int) -> bool:
    """Token `token` of an int32 bitmask (bit j of word w is token 32*w + j)."""
    return bool((int(words[token >> 5]) >> (token & 31)) & 1)


class LLGuidance:
    name = "llguidance"

    def __init__(self, hf):
        import llguidance
        import llguidance.hf
        self._LLMatcher = llguidance.LLMatcher
        self.tokenizer = llguidance.hf.from_tokenizer(hf)
        self.words = np.zeros(-(-self.tokenizer.vocab_size // 32), dtype=np.int32)
        self._ptr, self._nbytes = self.words.ctypes.data, self.words.nbytes
        self._root = self._matcher = None

    def reset(self) -> None:
        self._root = self._matcher = None

    def compile(self, schema: dict) -> None:
        try:
            grammar = self._LLMatcher.grammar_from_json_schema(schema)
        except ValueError as err:
            raise NotCompiled(str(err)) from None
        root = self._LLMatcher(self.tokenizer, grammar, log_level=0)
        if root.is_error():
            raise NotCompiled(root.get_error())
        self._root = root

    def start(self) -> None:
        self._matcher = self._root.deep_copy()

    def mask(self) -> None:
        self._matcher.unsafe_compute_mask_ptr(self._ptr, self._nbytes)

    def allows(self, token: int) -> bool:
        return bit(self.words, token)

    def commit(self, token: int) -> bool:
        return self._matcher.consume_token(token)


class XGrammar:
    name = "xgrammar"

    def __init__(self, hf):
        import xgrammar
        self._xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(hf, vocab_size=len(hf))
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._bitmask = xgrammar.allocate_token_bitmask(1, info.vocab_size)    # torch int32 [1, words]
        self.words = self._bitmask.numpy()[0]                                  # the same memory
        self._compiled = self._matcher = None

    def reset(self) -> None:
        self._compiled = self._matcher = None

    def compile(self, schema: dict) -> None:
        try:
            self._compiled = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=True,
                                                                strict_mode=False)
        except (RuntimeError, ValueError) as err:
            raise NotCompiled(LOG_PREFIX.sub("", str(err))) from None

    def start(self) -> None:
        self._matcher = self._xgr.GrammarMatcher(self._compiled)

    def mask(self) -> None:
        self._matcher.fill_next_token_bitmask(self._bitmask)

    def allows(self, token: int) -> bool:
        return bit(self.words, token)

    def commit(self, token: int) -> bool:
        return self._matcher.accept_token(token)


class Ours:
    """radixgate's compiler, matcher and masks. Its timed mask is the packed int32 words the engine's
    sampler gets; `mask_kind` says what the last mask cost."""
    name = "ours"

    def __init__(self, hf):
        from gateway.structured.masks import MaskComputer
        from gateway.structured.tokens import TokenTable
        self._MaskComputer = MaskComputer
        from gateway.structured.block_walks import warm_blocks
        self.table = TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
        warm_blocks(self.table)              # per tokenizer: the trie and the JSON building blocks' walks
        self.masks = MaskComputer(self.table)
        self.grammar = self.matcher = self.words = None
        self._masks_held = 0

    def reset(self) -> None:
        """Forget what earlier schemas left: masks and walks, memoised compiles (constraints, regexes)
        and json_cache's pool of shared automata. Kept, as llguidance and XGrammar keep their
        tokenizer state: the per-tokenizer table, its trie and the building blocks' walks and
        automata (block_walks: plain strings, numbers, literals, formats), never a schema's own."""
        from gateway.structured import json_cache
        self.masks = self._MaskComputer(self.table)
        for name, module in list(sys.modules.items()):
            if name.startswith("gateway.structured"):
                for value in vars(module).values():
                    if callable(getattr(value, "cache_clear", None)):
                        value.cache_clear()
        json_cache.clear()

    def compile(self, schema: dict) -> None:
        from gateway.protocol import Constraint, InvalidRequest
        from gateway.structured.constraint import compile_constraint
        try:
            self.grammar = compile_constraint(Constraint("json_schema", {"schema": schema, "strict": False}))
        except InvalidRequest as err:
            keyword = (err.param or "").removeprefix("response_format.json_schema.schema").lstrip(".")
            raise NotCompiled(str(err), keyword or "(schema)") from None

    def start(self) -> None:
        from gateway.structured.matcher import Matcher
        self.matcher = Matcher(self.grammar)
        self._masks_held = len(self.masks._masks)

    def mask(self) -> None:
        self.words = self.masks.words(self.matcher)

    def mask_kind(self) -> str:
        """'cached' when MaskComputer had the whole mask, else 'computed' (per-state splits, new or
        cached, plus exact checks of the tokens that cross a rule boundary). Read outside the timed call."""
        before, self._masks_held = self._masks_held, len(self.masks._masks)
        return "cached" if self._masks_held == before else "computed"

    def allows(self, token: int) -> bool:
        return bit(self.words, token)

    def commit(self, token: int) -> bool:
        data = self.table.token_bytes[token]
        return data is not None and self.matcher.advance(data)


ENGINES = {"ours": Ours, "llguidance": LLGuidance, "xgrammar": XGrammar}
