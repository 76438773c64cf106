"""GenerateRequest -> the upstream's OpenAI request body, and the upstream's stream chunks -> Deltas.

What the client asked for goes upstream as the same OpenAI fields; radixgate's own extensions (top_k,
regex, choices, ...) only to upstreams that take them (another radixgate, or a server with the same
extensions), else the request is refused naming the field, never sent weakened.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.protocol import Delta, GenerateRequest, InvalidRequest, TokenLogprob, ToolCall, Usage

# Extension fields: (SamplingParams attribute, wire name, value meaning "not asked for").
EXTENSIONS = (("top_k", "top_k", 0), ("min_p", "min_p", 0.0), ("repetition_penalty", "repetition_penalty", 1.0),
              ("stop_token_ids", "stop_token_ids", []), ("ignore_eos", "ignore_eos", False),
              ("skip_special_tokens", "skip_special_tokens", True))


@dataclass(slots=True)
class Wire:
    """What an upstream accepts besides plain OpenAI fields."""
    extensions: bool = False          # radixgate's extensions: top_k, min_p, regex, choices, cache_salt, ...
    json_schema: bool = True          # response_format json_schema


def request_body(req: GenerateRequest, model: str, wire: Wire, stream: bool) -> tuple[str, dict]:
    """(the path under the upstream's base URL, the JSON body); streamed calls ask for usage too."""
    p = req.params
    chat = req.messages is not None
    body: dict = {"model": model}
    if stream:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    if chat:
        body["messages"] = req.messages
    else:
        body["prompt"] = req.prompt if req.prompt is not None else req.prompt_token_ids
    if p.max_tokens is not None:
        body["max_completion_tokens" if chat else "max_tokens"] = p.max_tokens
    if p.temperature != 1.0:
        body["temperature"] = p.temperature
    if p.top_p != 1.0:
        body["top_p"] = p.top_p
    if p.presence_penalty:
        body["presence_penalty"] = p.presence_penalty
    if p.frequency_penalty:
        body["frequency_penalty"] = p.frequency_penalty
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = p.stop
    if p.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.logprobs:
        if chat:
            body["logprobs"] = True
            if p.top_logprobs:
                body["top_logprobs"] = p.top_logprobs
        else:
            body["logprobs"] = p.top_logprobs
    if req.n != 1:
        body["n"] = req.n
    for attr, name, unset in EXTENSIONS:
        value = getattr(p, attr)
        if value != unset:
            extension(wire, name)
            body[name] = value
    if req.chat_template_kwargs:
        extension(wire, "chat_template_kwargs")
        body["chat_template_kwargs"] = req.chat_template_kwargs
    if req.tools:
        body["tools"] = req.tools
    if wire.extensions and req.namespace:
        # The upstream sees one API key (ours): keep its cache per tenant, without sending the tenant's key.
        body["cache_salt"] = hashlib.blake2b(req.namespace.encode(), digest_size=12).hexdigest()
    if req.constraint is not None:
        constrain(body, req, wire, chat)
    return ("/chat/completions" if chat else "/completions"), body


def extension(wire: Wire, name: str) -> None:
    if not wire.extensions:
        raise InvalidRequest(f"'{name}' is a radixgate extension this model's upstream does not take.", name)


def constrain(body: dict, req: GenerateRequest, wire: Wire, chat: bool) -> None:
    c = req.constraint
    if c.kind == "tools":
        body["tool_choice"] = c.spec["choice"]
        if not c.spec.get("parallel", True):
            body["parallel_tool_calls"] = False
        return
    if c.kind in ("regex", "choice"):
        extension(wire, "regex" if c.kind == "regex" else "choices")
        body["regex" if c.kind == "regex" else "choices"] = c.spec
        return
    if not chat:
        extension(wire, "response_format")
    if c.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": c.spec.get("name", "response"), "schema": c.spec["schema"], "strict": c.spec.get("strict", False)}}


# ----- the stream back -----------------------------------------------------------------------------

def usage_of(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    details = usage.get("prompt_tokens_details") or {}
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
                 details.get("cached_tokens") or 0)


def chat_logprobs(lp: dict | None) -> list[TokenLogprob] | None:
    if not lp:
        return None
    return [TokenLogprob(0, e["token"], e["logprob"], [(0, t["token"], t["logprob"]) for t in e.get("top_logprobs") or ()])
            for e in lp.get("content") or ()]


def text_logprobs(lp: dict | None) -> list[TokenLogprob] | None:
    if not lp:
        return None
    tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
    return [TokenLogprob(0, tok, value, [(0, t, v) for t, v in (top or {}).items()])
            for tok, value, top in zip(lp["tokens"], lp["token_logprobs"], tops)]


def whole_deltas(response: dict, chat: bool) -> list[Delta]:
    """A non-streamed response as one Delta per choice, the last one carrying the usage (a Delta of its
    own when there is no choice)."""
    out = []
    for choice in response["choices"]:
        i = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            listed = message.get("tool_calls")
            calls = [ToolCall(k, c.get("id") or "", c["function"]["name"], c["function"].get("arguments") or "")
                     for k, c in enumerate(listed)] or None if listed else None
            lp = choice.get("logprobs")
            out.append(Delta(i, message.get("content") or "", [], chat_logprobs(lp) if lp else None,
                             choice.get("finish_reason"), None, calls))
        else:
            out.append(Delta(i, choice.get("text") or "", [], text_logprobs(choice.get("logprobs")),
                             choice.get("finish_reason")))
    usage = usage_of(response.get("usage")) or Usage()
    if out:
        out[-1].usage = usage
    else:
        out.append(Delta(0, usage=usage))
    return out


class ChunkReader:
    """Turns one upstream stream's chunks (chat or completions) into Deltas. Tool-call fragments are
    joined per choice and handed on whole, with the choice's finish reason, as ToolCall says."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.calls: dict[int, dict[int, list]] = {}        # choice -> call index -> [id, name, arguments]
        self.usage: Usage | None = None

    def deltas(self, chunk: dict) -> list[Delta]:
        self.usage = usage_of(chunk.get("usage")) or self.usage
        out = []
        for choice in chunk.get("choices") or ():
            d = self.chat_delta(choice) if self.chat else self.text_delta(choice)
            if d.text or d.logprobs or d.finish_reason or d.tool_calls:
                out.append(d)
        return out

    def chat_delta(self, choice: dict) -> Delta:
        i = choice.get("index", 0)
        delta = choice.get("delta") or {}
        for frag in delta.get("tool_calls") or ():
            call = self.calls.setdefault(i, {}).setdefault(frag.get("index", 0), ["", "", ""])
            fn = frag.get("function") or {}
            call[0] = frag.get("id") or call[0]
            call[1] += fn.get("name") or ""
            call[2] += fn.get("arguments") or ""
        finish = choice.get("finish_reason")
        calls = None
        if finish and i in self.calls:
            calls = [ToolCall(k, cid, name, args) for k, (cid, name, args) in sorted(self.calls.pop(i).items())]
        return Delta(i, delta.get("content") or "", [], chat_logprobs(choice.get("logprobs")), finish, None, calls)

    def text_delta(self, choice: dict) -> Delta:
        return Delta(choice.get("index", 0), choice.get("text") or "", [], text_logprobs(choice.get("logprobs")),
                     choice.get("finish_reason"))
