"""POST /v1/completions: the legacy text completion body -> one GenerateRequest per prompt, and
Deltas -> OpenAI's text_completion objects (several prompts: choice index = prompt * n + i)."""
from __future__ import annotations

from typing import Any

from gateway.api.chat import usage_object
from gateway.api.errors import invalid
from gateway.api.params import (MAX_INT, Body, check_model, constraint, namespace, sampling_params,
                                stream_options)
from gateway.api.shapes import MIN_LOGPROB, Shaper
from gateway.protocol import Delta, GenerateRequest, TokenLogprob, Usage


def parse_completion(data: Any, served: set[str], api_key: str, request_id: str):
    """(one GenerateRequest per prompt, the model name, stream, include_usage, echo prefixes)."""
    body = Body(data)
    model = check_model(body, served)
    prompts = split_prompts(body.require("prompt", (str, list)))
    n = body.get("n", int, 1, low=1, high=128)
    best_of = body.get("best_of", int, None, low=1, high=128)
    if best_of is not None and best_of != n:
        raise invalid("'best_of' other than 'n' is not supported by this server.", "best_of", "unsupported_parameter")
    logprobs = body.get("logprobs", int, None, low=0, high=5)
    echo = body.get("echo", bool, False)
    if echo and (logprobs is not None or not all(isinstance(p, str) for p in prompts)):
        raise invalid("'echo' is supported for text prompts without 'logprobs' only.", "echo", "unsupported_parameter")
    stream = body.get("stream", bool, False)
    include_usage = stream_options(body, stream)
    body.refuse("suffix", "(insertion after a suffix) is not supported by this server")
    body.get("user", str)
    structured = constraint(body)
    params = sampling_params(body, body.get("max_tokens", int, 16, low=0, high=MAX_INT), logprobs is not None, logprobs or 0)
    ns = namespace(api_key, body)
    body.check_all_used()
    reqs = [GenerateRequest(f"{request_id}-{i}", params, n=n, namespace=ns, constraint=structured,
                            **({"prompt": p} if isinstance(p, str) else {"prompt_token_ids": p}))
            for i, p in enumerate(prompts)]
    echoes = [p if echo else "" for p in prompts]
    return reqs, model, stream, include_usage, echoes


def split_prompts(prompt: str | list) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise invalid("'prompt' must not be empty.", "prompt", "empty_array")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return [prompt]
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
           for p in prompt):
        return list(prompt)
    raise invalid("'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.",
                  "prompt", "invalid_type")


def completion_logprobs(entries: list[TokenLogprob], offset: int = 0) -> dict:
    tokens, offsets = [], []
    for e in entries:
        offsets.append(offset)
        tokens.append(e.token)
        offset += len(e.token)
    return {"tokens": tokens, "token_logprobs": [max(e.logprob, MIN_LOGPROB) for e in entries],
            "top_logprobs": [{t: max(lp, MIN_LOGPROB) for _, t, lp in e.top} for e in entries],
            "text_offset": offsets}


class CompletionShaper(Shaper):
    object_full = object_chunk = "text_completion"
    id_prefix = "cmpl-"

    def __init__(self, model: str, n: int, want_logprobs: bool, echoes: list[str]):
        super().__init__(model, n, want_logprobs)
        self.echoes = echoes
        self.offsets = [0] * n

    def echo(self, index: int) -> str:
        return self.echoes[index // (self.n // len(self.echoes))]

    def choice(self, index: int, text: str, finish: str | None, logprobs: list[TokenLogprob]) -> dict:
        return {"text": self.echo(index) + text, "index": index, "finish_reason": finish,
                "logprobs": completion_logprobs(logprobs) if self.want_logprobs else None}

    def first_chunk_choice(self, index: int) -> dict | None:
        return None

    def chunk_choice(self, delta: Delta) -> dict:
        text = delta.text
        if not self.offsets[delta.index]:
            text = self.echo(delta.index) + text
        logprobs = None
        if self.want_logprobs:
            logprobs = completion_logprobs(delta.logprobs or [], self.offsets[delta.index])
        self.offsets[delta.index] += len(text)
        return {"text": text, "index": delta.index, "finish_reason": delta.finish_reason, "logprobs": logprobs}

    def usage(self, usage: Usage) -> dict:
        return usage_object(usage)
