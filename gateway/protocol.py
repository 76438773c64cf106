"""The internal contract between the HTTP API and whatever generates: the local engine, an upstream
proxy, or a router over several of them. The API never knows which Backend it holds."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class InvalidRequest(ValueError):
    """A request a backend cannot serve as asked; `param` names the offending field (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class BackendUnavailable(RuntimeError):
    """The backend cannot take requests now (engine stopped, every upstream down): HTTP 503."""


class UpstreamError(RuntimeError):
    """An upstream API's failure, as the client should see it: HTTP `status` with OpenAI's error fields.
    `retryable` failures (connect errors, timeouts, 408/409/429/5xx, as the official client retries)
    may go to another attempt; the rest are the client's own (a 400 stays a 400)."""

    def __init__(self, status: int, message: str, type: str = "server_error", code: str | None = None,
                 param: str | None = None, retry_after: float | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.retry_after = retry_after
        self.retryable = status in (408, 409, 429) or status >= 500 if retryable is None else retryable


class Overloaded(RuntimeError):
    """Too much work queued; the client should retry after `retry_after` seconds: HTTP 429."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(slots=True)
class SamplingParams:
    max_tokens: int | None = None          # None: up to the context length
    temperature: float = 1.0               # 0: greedy
    top_p: float = 1.0
    top_k: int = 0                         # 0: off
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        # Plain ifs, no call per rule: this runs for every request (on a proxy's hot path).
        if not (self.max_tokens is None or self.max_tokens >= 0):
            raise self.invalid("max_tokens", "must be >= 0")
        if not self.temperature >= 0:
            raise self.invalid("temperature", "must be >= 0")
        if not 0 < self.top_p <= 1:
            raise self.invalid("top_p", "must be in (0, 1]")
        if not (self.top_k >= 0 or self.top_k == -1):
            raise self.invalid("top_k", "must be >= 0 (or -1 for off)")
        if not 0 <= self.min_p <= 1:
            raise self.invalid("min_p", "must be in [0, 1]")
        if not -2 <= self.presence_penalty <= 2:
            raise self.invalid("presence_penalty", "must be in [-2, 2]")
        if not -2 <= self.frequency_penalty <= 2:
            raise self.invalid("frequency_penalty", "must be in [-2, 2]")
        if not self.repetition_penalty > 0:
            raise self.invalid("repetition_penalty", "must be > 0")
        if not 0 <= self.top_logprobs <= 20:
            raise self.invalid("top_logprobs", "must be in [0, 20]")
        if self.logit_bias and not all(-100 <= b <= 100 for b in self.logit_bias.values()):
            raise self.invalid("logit_bias", "values must be in [-100, 100]")
        if self.top_k == -1:
            self.top_k = 0

    def invalid(self, param: str, rule: str) -> InvalidRequest:
        return InvalidRequest(f"{param} {rule}, got {getattr(self, param)!r}", param)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass(slots=True)
class Constraint:
    """Structured output: kind is json_schema | json_object | regex | choice | tools."""
    kind: str
    spec: Any = None


@dataclass(slots=True)
class GenerateRequest:
    request_id: str
    params: SamplingParams = field(default_factory=SamplingParams)
    prompt: str | None = None                       # exactly one of prompt, messages, prompt_token_ids
    messages: list[dict] | None = None
    prompt_token_ids: list[int] | None = None
    tools: list[dict] | None = None
    chat_template_kwargs: dict = field(default_factory=dict)
    n: int = 1
    constraint: Constraint | None = None
    program: list[dict] | None = None
    namespace: str = ""                             # radix-cache tenant: API key or cache_salt
    model: str | None = None                        # the served model asked for; None: the backend's only one
    stream: bool = True                             # False: the client takes the answer whole, so a backend may
                                                    # produce it in one piece (an upstream: one non-streamed call)

    def __post_init__(self) -> None:
        given = (self.prompt is not None) + (self.messages is not None) + (self.prompt_token_ids is not None)
        if given != 1:
            raise InvalidRequest("exactly one of prompt, messages and prompt_token_ids must be given", "prompt")
        if self.n < 1:
            raise InvalidRequest(f"n must be >= 1, got {self.n}", "n")


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]] = field(default_factory=list)   # (token_id, token, logprob)


@dataclass(slots=True)
class ToolCall:
    """One complete tool call the model made; arguments is JSON text that validates against the
    tool's parameters schema."""
    index: int
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Delta:
    """New output of one choice. A choice's last Delta has finish_reason set; the request's very
    last Delta also carries the Usage summed over its choices."""
    index: int = 0
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None               # stop | length | abort | tool_calls
    usage: Usage | None = None
    tool_calls: list[ToolCall] | None = None
    fields: dict[str, str] | None = None           # a program's filled fields by name, on its last Delta
    upstream_calls: int | None = None              # upstream API calls a program took (None: local engine)
    scores: dict[str, list[float]] | None = None   # a program's select scores by name, per choice (local engine)


@dataclass(frozen=True, slots=True)
class ModelCard:
    id: str
    owned_by: str = "radixgate"
    created: int = 0
    max_context: int | None = None


class Backend(Protocol):
    def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]: ...
    def models(self) -> list[ModelCard]: ...
    async def health(self) -> dict: ...
    async def abort(self, request_id: str) -> None: ...
