"""Turning Deltas into OpenAI's response objects and stream chunks; shared by chat and completions.

A Shaper collects a request's Deltas. Non-streaming, `full()` builds the whole response; streaming,
`chunks(delta)` gives the chunks to send for one Delta: a choice's first chunk carries the role,
text chunks carry content, and the last chunk of a choice has an empty delta and the finish reason,
as OpenAI sends them.
"""
from __future__ import annotations

import os
import random
import time
from abc import ABC, abstractmethod

from gateway.protocol import Delta, TokenLogprob, Usage

SYSTEM_FINGERPRINT = "fp_radixgate"
MIN_LOGPROB = -9999.0          # what OpenAI reports for impossible tokens; JSON has no -inf

# Ids need to be unique, not secret: drawn in-process (seeded from the OS once), not with a system call each.
_ids = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))     # forked workers draw apart


def random_hex(digits: int) -> str:
    return "%0*x" % (digits, _ids.getrandbits(4 * digits))


def _lp(x: float) -> float:
    return max(x, MIN_LOGPROB)


def _token_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": _lp(logprob), "bytes": list(token.encode("utf-8"))}


def chat_logprobs(entries: list[TokenLogprob] | None) -> dict:
    return {"content": [{**_token_entry(e.token, e.logprob),
                         "top_logprobs": [_token_entry(t, lp) for _, t, lp in e.top]} for e in entries or []],
            "refusal": None}


class Shaper(ABC):
    object_full: str
    object_chunk: str
    id_prefix: str

    def __init__(self, model: str, n: int, want_logprobs: bool):
        self.model, self.n, self.want_logprobs = model, n, want_logprobs
        self.id = self.id_prefix + random_hex(24)
        self.created = int(time.time())
        self.text = [""] * n
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)] if n != 1 else [[]]
        self.finish: list[str | None] = [None] * n
        self.started = [False] * n
        self.tool_calls: list[list] = [[] for _ in range(n)] if n != 1 else [[]]   # (no comprehension call for one)
        self.final_usage: Usage | None = None

    @abstractmethod
    def choice(self, index: int, text: str, finish: str | None, logprobs: list[TokenLogprob]) -> dict: ...

    @abstractmethod
    def first_chunk_choice(self, index: int) -> dict | None: ...

    @abstractmethod
    def chunk_choice(self, delta: Delta) -> dict: ...

    @abstractmethod
    def usage(self, usage: Usage) -> dict: ...

    def add(self, delta: Delta) -> None:
        i = delta.index
        self.text[i] += delta.text
        self.logprobs[i] += delta.logprobs or []
        self.tool_calls[i] += delta.tool_calls or []
        if delta.finish_reason:
            self.finish[i] = delta.finish_reason
        if delta.usage:
            self.final_usage = delta.usage

    def envelope(self, obj: str, choices: list[dict]) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices}

    def full(self) -> dict:
        body = self.envelope(self.object_full, [self.choice(i, self.text[i], self.finish[i], self.logprobs[i])
                                                for i in range(self.n)])
        body["usage"] = self.usage(self.final_usage or Usage())
        return body

    def chunks(self, delta: Delta, include_usage: bool) -> list[dict]:
        out = []
        if not self.started[delta.index]:
            self.started[delta.index] = True
            first = self.first_chunk_choice(delta.index)
            if first is not None:
                out.append(first)
        if delta.finish_reason and (delta.text or delta.logprobs or delta.tool_calls):
            out.append(self.chunk_choice(Delta(delta.index, delta.text, delta.token_ids, delta.logprobs,
                                               tool_calls=delta.tool_calls)))
            delta = Delta(delta.index, finish_reason=delta.finish_reason)
        if delta.text or delta.logprobs or delta.finish_reason or delta.tool_calls:
            out.append(self.chunk_choice(delta))
        chunks = [self.envelope(self.object_chunk, [c]) for c in out]
        if include_usage:
            for c in chunks:
                c["usage"] = None
        return chunks

    def usage_chunk(self) -> dict:
        chunk = self.envelope(self.object_chunk, [])
        chunk["usage"] = self.usage(self.final_usage or Usage())
        return chunk
