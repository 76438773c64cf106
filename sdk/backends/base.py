"""What a backend does for a program: fill one assistant turn (`run_turn`), and what it returns.

A turn is the conversation so far (plain chat messages) and the turn's segments in order: `Text`
literals and the fields (`Gen`, `Select`) to fill after them. A backend returns every field's value
by name; `on_text(name, piece)`, when given, receives a field's text as it is generated.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import openai

from sdk.primitives import Segment

OnText = Callable[[str, str], None]


class ProgramError(RuntimeError):
    """A program could not go on: a field's value broke its constraint, a backend answered wrongly,
    or a branch failed. The backend's own errors (openai.APIError and its kinds) pass through as they are."""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.requests += other.requests

    @classmethod
    def of(cls, usage) -> Usage:
        """From an OpenAI response's usage (None counts as nothing but the request)."""
        if usage is None:
            return cls(requests=1)
        details = getattr(usage, "prompt_tokens_details", None)
        return cls(usage.prompt_tokens or 0, usage.completion_tokens or 0,
                   (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0, 1)


@dataclass(slots=True)
class TurnResult:
    values: dict[str, str]
    scores: dict[str, list[float]] = field(default_factory=dict)    # per select, per choice, where scored
    usage: Usage = field(default_factory=Usage)


class Backend(Protocol):
    def run_turn(self, messages: list[dict], segments: list[Segment], on_text: OnText | None = None) -> TurnResult: ...

    def prefill(self, messages: list[dict], partial: str) -> Usage:
        """Compute and cache the prompt of `messages` with the turn so far, before a fork; a
        backend without a prefix cache does nothing."""
        ...


class ChatClient:
    """An `openai.OpenAI` client with its model resolved once (the server's first model when none is
    named), shared by the threads of a program and its branches."""

    def __init__(self, base_url: str | None, model: str | None, api_key: str | None, timeout: float,
                 client: openai.OpenAI | None):
        if client is None:
            url = None if base_url is None else base_url.rstrip("/")
            if url is not None and not url.endswith("/v1"):
                url += "/v1"
            client = openai.OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=2)
        self.client, self._model = client, model
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        with self._lock:
            if self._model is None:
                models = self.client.models.list().data
                if not models:
                    raise ProgramError("the server lists no models; name one with model=...")
                self._model = models[0].id
            return self._model

    def create(self, **kw):
        return self.client.chat.completions.create(model=self.model, **kw)

    def close(self) -> None:
        self.client.close()
