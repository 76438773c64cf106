"""JSON Schema output from an upstream that cannot take `response_format: json_schema`.

The schema goes in as an instruction (a system message); each choice's whole answer is validated with
`jsonschema`, and a choice that does not validate is asked again, with its answer and the validation
error as a follow-up turn, up to `retries` times. Only then do its Deltas go on, so the client never
sees an invalid answer: either every choice validates, or the request fails with one clean 502. A
choice cut by max_tokens (finish_reason "length") passes as it is, as OpenAI passes it.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import jsonschema

from gateway.protocol import Delta, GenerateRequest, InvalidRequest, UpstreamError, Usage
from gateway.spec_api.translate import Wire

INSTRUCTION = ("Answer with a single JSON value and nothing else (no prose, no code fences). It must validate "
               "against this JSON Schema:\n{schema}")
REPAIR = ("That answer is not valid: {error}. Answer again with only the corrected JSON value, which must "
          "validate against the schema.")

Stream = Callable[[GenerateRequest, str], AsyncIterator[Delta]]


def needs_guard(req: GenerateRequest, wire: Wire) -> bool:
    return req.constraint is not None and req.constraint.kind == "json_schema" and not wire.json_schema \
        and req.messages is not None


def problem(text: str, validator: jsonschema.protocols.Validator) -> str | None:
    """Why `text` is not a valid answer, or None when it is."""
    try:
        value = json.loads(text)
    except ValueError as err:
        return f"it is not JSON ({err})"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path))
    return f"at '/{where}': {error.message}" if where else error.message


async def collect(stream: Stream, req: GenerateRequest, model: str, usage: Usage) -> list[list[Delta]]:
    """Every choice's Deltas, usage added up into `usage`."""
    choices: list[list[Delta]] = [[] for _ in range(req.n)]
    async for d in stream(req, model):
        if d.usage is not None:
            usage.prompt_tokens += d.usage.prompt_tokens
            usage.completion_tokens += d.usage.completion_tokens
            usage.cached_tokens += d.usage.cached_tokens
        if d.text or d.finish_reason or d.logprobs or d.tool_calls:
            choices[d.index].append(replace(d, usage=None))
    return choices


async def guarded(stream: Stream, req: GenerateRequest, model: str, retries: int) -> AsyncIterator[Delta]:
    schema = req.constraint.spec["schema"]
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as err:
        raise InvalidRequest(f"Invalid JSON Schema in 'response_format': {err.message}",
                             "response_format.json_schema.schema") from None
    validator = validator_cls(schema)
    instruction = {"role": "system", "content": INSTRUCTION.format(schema=json.dumps(schema))}
    asked = replace(req, constraint=None, messages=[instruction, *req.messages])
    usage = Usage()
    choices = await collect(stream, asked, model, usage)
    for i, deltas in enumerate(choices):
        attempt = 0
        while (error := answer_problem(deltas, validator)) is not None:
            if attempt == retries:
                raise UpstreamError(502, f"The upstream's answer did not validate against the JSON Schema after "
                                         f"{retries + 1} attempts: {error}", "server_error",
                                    "upstream_invalid_output", retryable=False)
            attempt += 1
            text = "".join(d.text for d in deltas)
            follow_up = replace(asked, n=1, messages=[*asked.messages, {"role": "assistant", "content": text},
                                                      {"role": "user", "content": REPAIR.format(error=error)}])
            [deltas] = await collect(stream, follow_up, model, usage)
            for d in deltas:
                d.index = i
        choices[i] = deltas
    for deltas in choices:
        for d in deltas:
            yield d
    yield Delta(0, usage=usage)


def answer_problem(deltas: list[Delta], validator: jsonschema.protocols.Validator) -> str | None:
    if deltas and deltas[-1].finish_reason == "length":
        return None
    return problem("".join(d.text for d in deltas), validator)
