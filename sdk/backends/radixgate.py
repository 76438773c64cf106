"""radixgate as a program backend: one assistant turn, however many gens and selects it holds, is ONE
chat request carrying the turn as radixgate's `program` extension (gateway/api/program.py). On the
local engine the turn runs with no client round trips, its prefix computed once, and each select is
scored server side (the mean log-probability of the choice's tokens after the exact prefix ids,
unless the select asks for another normalisation); the scores come back by name. Against
upstream APIs radixgate fills the turn by speculative execution and returns no scores.

Streaming (`on_text`): the server streams the turn's text; a literal segment arrives as one piece of
its own, so pieces between two literals belong to the field between them (of two fields with no
literal between them, the first takes them all while streaming). A field piece that
happens to equal the next literal whole is taken as that literal; the final values, which come
with the last chunk, are exact either way.
"""
from __future__ import annotations

import openai

from sdk.backends.base import ChatClient, OnText, ProgramError, TurnResult, Usage
from sdk.primitives import Gen, Segment, Text


class RadixGate:
    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 temperature: float | None = None, max_tokens: int | None = None, timeout: float = 600.0,
                 prefill_forks: bool = True, extra_body: dict | None = None, client: openai.OpenAI | None = None):
        """`temperature` and `max_tokens`: the defaults of gens that set none (None: the server's).
        `extra_body`: more request fields for every request (e.g. `cache_salt`, `chat_template_kwargs`).
        `prefill_forks`: before a fork, one short request computes the shared prompt, so the
        branches (sent together) all find it in the radix cache instead of each computing it."""
        self.chat = ChatClient(base_url, model, api_key, timeout, client)
        self.temperature, self.max_tokens, self.prefill_forks = temperature, max_tokens, prefill_forks
        self.extra_body = dict(extra_body or {})

    def _request(self, messages: list[dict], program: list[dict]) -> dict:
        kw: dict = {"messages": messages, "extra_body": {**self.extra_body, "program": program}}
        if self.temperature is not None:
            kw["temperature"] = self.temperature
        if self.max_tokens is not None:
            kw["max_tokens"] = self.max_tokens
        return kw

    def run_turn(self, messages: list[dict], segments: list[Segment], on_text: OnText | None = None) -> TurnResult:
        program = [s.segment() for s in segments]
        if on_text is None:
            r = self.chat.create(**self._request(messages, program))
            return _result(r.model_extra.get("program") if r.model_extra else None, Usage.of(r.usage))
        stream = self.chat.create(stream=True, stream_options={"include_usage": True},
                                  **self._request(messages, program))
        found, usage, route = None, None, _Router(segments, on_text)
        with stream:
            for chunk in stream:
                extra = chunk.model_extra or {}
                found = extra.get("program") or found
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        route.feed(choice.delta.content)
        return _result(found, Usage.of(usage))

    def prefill(self, messages: list[dict], partial: str) -> Usage:
        if not self.prefill_forks:
            return Usage()
        program = ([{"text": partial}] if partial else []) + [{"gen": "_prefill", "max_tokens": 1}]
        kw = self._request(messages, program)
        kw.pop("max_tokens", None)
        r = self.chat.create(**kw)
        if "upstream_calls" in ((r.model_extra or {}).get("program") or {}):
            self.prefill_forks = False         # radixgate fronts upstream APIs here: nothing is cached
        return Usage.of(r.usage)

    def close(self) -> None:
        self.chat.close()


def _result(program: dict | None, usage: Usage) -> TurnResult:
    if not isinstance(program, dict) or not isinstance(program.get("fields"), dict):
        raise ProgramError("the server's response has no 'program' object: is it radixgate? (for any other "
                           "OpenAI-compatible endpoint use sdk.OpenAICompatible)")
    return TurnResult(dict(program["fields"]), dict(program.get("scores") or {}), usage)


class _Router:
    """Hands streamed pieces of a turn to the field they belong to (see the module's docstring)."""

    def __init__(self, segments: list[Segment], on_text: OnText):
        self.segments, self.on_text = segments, on_text
        self.at, self.used = 0, 0               # the segment being streamed; characters of a literal seen

    def feed(self, piece: str) -> None:
        while piece and self.at < len(self.segments):
            seg = self.segments[self.at]
            if isinstance(seg, Text):
                rest = seg.text[self.used:]
                take = len(rest) if piece.startswith(rest) else min(len(rest), len(piece))
                piece, self.used = piece[take:], self.used + take
                if self.used >= len(seg.text):
                    self.at, self.used = self.at + 1, 0
                continue
            after = self.segments[self.at + 1] if self.at + 1 < len(self.segments) else None
            if isinstance(after, Text) and piece == after.text:
                self.at += 1
                continue
            name = seg.name
            self.on_text(name, piece)
            piece = ""
            if not isinstance(seg, Gen):
                self.at += 1                   # a select arrives as one piece
