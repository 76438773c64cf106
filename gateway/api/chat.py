"""POST /v1/chat/completions: the OpenAI chat body -> GenerateRequest, and Deltas -> OpenAI shapes."""
from __future__ import annotations

from typing import Any

from gateway.api.errors import invalid
from gateway.api.params import (CONSTRAINT_FIELDS, MAX_INT, SAMPLING, Body, check_model, constraint, namespace,
                                sampling_params, stream_options)
from gateway.api.program import parse_program, refuse_with_program
from gateway.api.shapes import Shaper, chat_logprobs
from gateway.protocol import Constraint, Delta, GenerateRequest, ToolCall, Usage

ROLES = ("system", "developer", "user", "assistant", "tool")
PLAIN_ROLES = ("system", "developer", "user", "assistant")
REFUSED = {"audio": "audio output", "functions": "the deprecated 'functions' (use 'tools')",
           "function_call": "the deprecated 'function_call' (use 'tool_choice')", "prediction": "predicted outputs",
           "reasoning_effort": "reasoning effort", "verbosity": "verbosity", "web_search_options": "web search",
           "moderation": "moderation", "prompt_cache_options": "prompt cache options",
           "prompt_cache_retention": "prompt cache retention", "metadata": "stored-completion metadata"}


# Groups of optional fields, each read only when the body has one of its fields: an absent field takes
# its default, which no check refuses, so skipping the group changes nothing but the cost (a plain body
# has three or four fields of the ~50 read here; each read is a call).
TOOL_FIELDS = frozenset(("tools", "tool_choice", "parallel_tool_calls"))
OPTIONS = frozenset(("modalities", "store", "service_tier", "user", "safety_identifier", "prompt_cache_key",
                     "chat_template_kwargs", *REFUSED))
# Every field parse_chat reads; any other is refused as unrecognized.
FIELDS = frozenset(("model", "messages", "n", "max_completion_tokens", "max_tokens", "logprobs", "top_logprobs",
                    "stream", "stream_options", "cache_salt", "program", *TOOL_FIELDS, *CONSTRAINT_FIELDS, *OPTIONS,
                    *SAMPLING))


def parse_chat(data: Any, served: set[str], api_key: str, request_id: str) -> tuple[GenerateRequest, str, bool, bool]:
    """(the request, the model name, stream, include_usage)."""
    body = Body(data)
    model = check_model(body, served)
    messages = body.require("messages", list)
    for i, m in enumerate(messages):
        check_message(m, i)
    if not messages:
        raise invalid("'messages' must contain at least one message.", "messages", "empty_array")
    # `has(name)`: the field is given; an absent (or null) one takes its default without a read (a call each)
    has = data.get
    n = body.get("n", int, 1, low=1, high=128) if has("n") is not None else 1
    max_tokens = body.get("max_completion_tokens", int, None, low=1, high=MAX_INT) \
        if has("max_completion_tokens") is not None else None
    legacy = body.get("max_tokens", int, None, low=1, high=MAX_INT) if has("max_tokens") is not None else None
    max_tokens = max_tokens if max_tokens is not None else legacy
    logprobs = body.get("logprobs", bool, False) if has("logprobs") is not None else False
    top_logprobs = body.get("top_logprobs", int, 0, low=0, high=20) if has("top_logprobs") is not None else 0
    if top_logprobs and not logprobs:
        raise invalid("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs", "invalid_value")
    stream = body.get("stream", bool, False) if has("stream") is not None else False
    include_usage = stream_options(body, stream) if has("stream_options") is not None else False
    fields = data.keys()
    tools, tool_constraint = parse_tools(body) if not fields.isdisjoint(TOOL_FIELDS) else (None, None)
    structured = constraint(body) if not fields.isdisjoint(CONSTRAINT_FIELDS) else None
    if tool_constraint is not None:
        if structured is not None:
            raise invalid("'response_format' (or 'regex' / 'choices') cannot be combined with tool calls; set "
                          "tool_choice to 'none' or drop one.", "response_format", "invalid_value")
        structured = tool_constraint
    kwargs = options(body) if not fields.isdisjoint(OPTIONS) else {}
    params = sampling_params(body, max_tokens, logprobs, top_logprobs)
    ns = namespace(api_key, body) if has("cache_salt") is not None else api_key
    program = body.get("program", list, None) if has("program") is not None else None
    if program is not None:
        refuse_with_program(data)
        program = parse_program(program)
    body.check_known(FIELDS)
    req = GenerateRequest(request_id, params, messages=messages, n=n, namespace=ns, chat_template_kwargs=kwargs,
                          constraint=structured, tools=tools, program=program)
    return req, model, stream, include_usage


def options(body: Body) -> dict:
    """The fields with one accepted value or none to act on, and the refused ones; the chat template's
    kwargs."""
    modalities = body.get("modalities", list, ["text"])
    if modalities != ["text"]:
        raise invalid("Only the 'text' modality is supported.", "modalities", "unsupported_parameter")
    if body.get("store", bool, False):
        raise invalid("'store' is not supported: this server does not store completions.", "store",
                      "unsupported_parameter")
    tier = body.get("service_tier", str, "auto")
    if tier not in ("auto", "default"):
        raise invalid(f"service_tier '{tier}' is not available on this server.", "service_tier", "unsupported_parameter")
    body.get("user", str)
    body.get("safety_identifier", str)
    body.get("prompt_cache_key", str)           # a routing hint; prefix caching here is automatic
    kwargs = body.get("chat_template_kwargs", dict, {})
    reserved = sorted(set(kwargs) & {"messages", "tools", "documents"})
    if reserved:
        raise invalid(f"'chat_template_kwargs' may not set '{reserved[0]}'; use the request field instead.",
                      "chat_template_kwargs", "invalid_value")
    for name, what in REFUSED.items():
        if name in body.data:                   # formatted only for a body that has it
            body.refuse(name, f"({what}) is not supported by this server")
    return kwargs


def parse_tools(body: Body) -> tuple[list[dict] | None, Constraint | None]:
    """tools (rendered into the prompt) and, unless tool_choice is 'none', the constraint that makes
    every call parse and validate against its function's parameters."""
    tools = body.get("tools", list, [])
    names = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"] \
                or not isinstance(fn.get("parameters", {}), dict):
            raise invalid(f"Invalid 'tools[{i}]': expected {{'type': 'function', 'function': {{'name': ..., "
                          f"'parameters': {{...}}}}}}.", f"tools[{i}]", "invalid_value")
        names.append(fn["name"])
    if len(set(names)) != len(names):
        raise invalid("Tool names must be unique.", "tools", "invalid_value")
    choice = body.get("tool_choice", (str, dict), "auto" if tools else "none")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in names:
            raise invalid("'tool_choice' must name one of the given tools.", "tool_choice", "invalid_value")
    elif choice not in ("none", "auto", "required"):
        raise invalid(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice", "invalid_value")
    elif choice != "none" and not tools:
        raise invalid(f"'tool_choice' {choice!r} requires 'tools'.", "tool_choice", "invalid_value")
    parallel = body.get("parallel_tool_calls", bool, True)
    if not tools:
        return None, None
    if choice == "none":
        return tools, None
    return tools, Constraint("tools", {"tools": tools, "choice": choice, "parallel": parallel})


def check_message(message: Any, i: int) -> dict:
    if type(message) is dict and message.get("role") in PLAIN_ROLES and type(message.get("content")) is str \
            and not message.get("tool_calls"):
        return message                          # the common message, with nothing more to check
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid(f"Invalid '{where}': expected an object.", where, "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"Invalid value for '{where}.role': {role!r}. Supported: {', '.join(ROLES)}.",
                      f"{where}.role", "invalid_value")
    content = message.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise invalid(f"Invalid content part '{where}.content[{j}]' of type {kind!r}: only text parts are "
                              f"supported.", f"{where}.content[{j}]", "unsupported_content")
    elif content is None:
        if not (role == "assistant" and message.get("tool_calls")):
            raise invalid(f"Missing required parameter: '{where}.content'.", f"{where}.content",
                          "missing_required_parameter")
    elif not isinstance(content, str):
        raise invalid(f"Invalid type for '{where}.content': expected a string or an array of text parts.",
                      f"{where}.content", "invalid_type")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise invalid(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id",
                      "missing_required_parameter")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid(f"Invalid type for '{where}.tool_calls': expected an array.", f"{where}.tool_calls", "invalid_type")
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if role != "assistant" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                or not isinstance(fn.get("arguments"), str):
            raise invalid(f"Invalid '{where}.tool_calls[{j}]'.", f"{where}.tool_calls[{j}]", "invalid_value")
    return message


class ChatShaper(Shaper):
    object_full, object_chunk, id_prefix = "chat.completion", "chat.completion.chunk", "chatcmpl-"
    program: dict | None = None           # a program's fields, from its last Delta

    def add(self, delta: Delta) -> None:
        super().add(delta)
        if delta.fields is not None:
            self.program = program_object(delta)

    def full(self) -> dict:
        body = super().full()
        if self.program is not None:
            body["program"] = self.program
        return body

    def chunks(self, delta: Delta, include_usage: bool) -> list[dict]:
        out = super().chunks(delta, include_usage)
        if delta.fields is not None and out:
            out[-1]["program"] = program_object(delta)
        return out

    def choice(self, index: int, text: str, finish: str | None, logprobs: list | None) -> dict:
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if self.tool_calls[index]:
            message["tool_calls"] = [tool_call(c) for c in self.tool_calls[index]]
            message["content"] = text or None
        return {"index": index, "message": message,
                "logprobs": chat_logprobs(logprobs) if self.want_logprobs else None, "finish_reason": finish}

    def first_chunk_choice(self, index: int) -> dict:
        return {"index": index, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
                "finish_reason": None}

    def chunk_choice(self, delta: Delta) -> dict:
        body = {"content": delta.text} if delta.text or not (delta.finish_reason or delta.tool_calls) else {}
        if delta.tool_calls:
            body["tool_calls"] = [{"index": c.index, **tool_call(c)} for c in delta.tool_calls]
        logprobs = chat_logprobs(delta.logprobs) if self.want_logprobs and delta.logprobs else None
        return {"index": delta.index, "delta": body, "logprobs": logprobs, "finish_reason": delta.finish_reason}

    def usage(self, usage: Usage) -> dict:
        return usage_object(usage)


def tool_call(call: ToolCall) -> dict:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def usage_object(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def program_object(delta: Delta) -> dict:
    """The `program` extension of a response: the filled fields by name, each select's scores per
    choice where the backend scores them (the local engine), and the upstream calls."""
    body: dict = {"fields": dict(delta.fields or {})}
    if delta.scores:
        body["scores"] = {name: list(s) for name, s in delta.scores.items()}
    if delta.upstream_calls is not None:
        body["upstream_calls"] = delta.upstream_calls
    return body
