"""API speculative execution of a program (see gateway/api/program.py) against an upstream chat API.

One call asks for the whole assistant turn as a filled form (turn_form.py) and reads the fields
back. Where the reply stops following the form, each remaining field falls back to a call of its
own, with the turn so far as the assistant's partial reply: a select (and a gen with choices) as an
enum-constrained JSON answer, a json_schema gen with response_format, a regex gen asked for and
checked here, asked again with the error up to `retries` times. Billed tokens and upstream calls
add up over every call.

A select is the choice the upstream names, not a scored one: a chat API cannot score given
continuations, so the response has no `scores` (and a select's `normalize` has no effect here).

Everything runs through one minimal interface, `Complete`: an async
`complete(messages, *, max_tokens, temperature, stop, constraint) -> (text, Usage)`;
`backend_complete` builds it over any Backend's `generate`, so an upstream Backend runs a program
with `return speculative_program(self.generate, req)`.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from itertools import count

from gateway.protocol import Constraint, Delta, GenerateRequest, InvalidRequest, UpstreamError, Usage
from gateway.spec_api.turn_form import field_choices, field_name, field_rules, form_instruction, read_form, violation

Complete = Callable[..., Awaitable[tuple[str, Usage]]]
Generate = Callable[[GenerateRequest], AsyncIterator[Delta]]

FIELD_INSTRUCTION = ("Continue your reply from exactly where it stops. Write only the value of [[{name}]] "
                     "({rules}), with nothing before or after it.")
FIRST_FIELD_INSTRUCTION = "Write only the value of [[{name}]] ({rules}) as your reply, with nothing before or after it."
REPAIR = "That value is not valid: {error}. Write only the corrected value, with nothing before or after it."


@dataclass(slots=True)
class ProgramResult:
    text: str                                  # the whole turn: literals and field values in order
    fields: dict[str, str]
    usage: Usage = field(default_factory=Usage)
    upstream_calls: int = 0
    speculated: int = 0                        # segments taken from the whole-turn call


async def run_program(complete: Complete, messages: list[dict], program: list[dict], *,
                      temperature: float = 1.0, max_tokens: int | None = None, speculative: bool = True,
                      enum_select: bool = True, retries: int = 1) -> ProgramResult:
    """Fill the program's turn after `messages`. `temperature` and `max_tokens` are the request's,
    the defaults of gens that give none; speculative=False runs one call per field from the start."""
    for i, seg in enumerate(program):
        if seg.get("regex") is not None:
            try:
                re.compile(seg["regex"])
            except re.error as err:
                raise InvalidRequest(f"program[{i}].regex is not a valid regular expression: {err}",
                                     f"program[{i}].regex") from None
    result = ProgramResult("", {})
    values: list[str] = []
    if speculative and any("text" not in seg for seg in program):
        reply = await _call(result, complete, with_instruction(messages, form_instruction(program)),
                            max_tokens=_turn_budget(program, max_tokens), temperature=_turn_temperature(program,
                                                                                                    temperature))
        values = read_form(program, reply, max_tokens)
        result.speculated = len(values)
    for seg in program[len(values):]:
        if "text" in seg:
            values.append(seg["text"])
        else:
            values.append(await _fill_field(result, complete, messages, "".join(values), seg, temperature,
                                            max_tokens, enum_select, retries))
    result.text = "".join(values)
    result.fields = {field_name(seg): v for seg, v in zip(program, values) if "text" not in seg}
    return result


def with_instruction(messages: list[dict], instruction: str) -> list[dict]:
    """The conversation with an instruction added to its last user message (a new user message if
    the last one is not the user's): every chat template takes that, unlike a late system message."""
    out = [dict(m) for m in messages]
    last = out[-1] if out else None
    if last is not None and last.get("role") == "user" and isinstance(last.get("content"), str):
        last["content"] = f"{last['content']}\n\n{instruction}"
    elif last is not None and last.get("role") == "user" and isinstance(last.get("content"), list):
        last["content"] = [*last["content"], {"type": "text", "text": instruction}]
    else:
        out.append({"role": "user", "content": instruction})
    return out


async def _call(result: ProgramResult, complete: Complete, messages: list[dict], **params) -> str:
    text, usage = await complete(messages, **params)
    result.upstream_calls += 1
    result.usage.prompt_tokens += usage.prompt_tokens
    result.usage.completion_tokens += usage.completion_tokens
    result.usage.cached_tokens += usage.cached_tokens
    return text


def _turn_budget(program: list[dict], default: int | None) -> int | None:
    """max_tokens for the whole turn: every field's budget and the literals, with some slack; None
    when a gen has no budget."""
    total = 16
    for seg in program:
        if "text" in seg:
            total += len(seg["text"].encode("utf-8")) // 2 + 1
        elif (choices := field_choices(seg)) is not None and seg.get("max_tokens") is None:
            total += max(len(c.encode("utf-8")) for c in choices)
        elif (budget := seg.get("max_tokens") or default) is None:
            return None
        else:
            total += budget
    return total


def _turn_temperature(program: list[dict], default: float) -> float:
    """The lowest temperature any field asks for: a greedy field must not be sampled hot."""
    asked = [0.0 if "select" in seg else seg.get("temperature") for seg in program if "text" not in seg]
    return min([t for t in asked if t is not None] or [default])


async def _fill_field(result: ProgramResult, complete: Complete, messages: list[dict], prefix: str, seg: dict,
                      temperature: float, max_tokens: int | None, enum_select: bool, retries: int) -> str:
    name = field_name(seg)
    template = FIELD_INSTRUCTION if prefix else FIRST_FIELD_INSTRUCTION
    ask = [*messages, *([{"role": "assistant", "content": prefix}] if prefix else []),
           {"role": "user", "content": template.format(name=name, rules=field_rules(seg))}]
    choices = field_choices(seg)
    if choices is not None and enum_select:
        schema = {"type": "object", "properties": {"choice": {"type": "string", "enum": choices}},
                  "required": ["choice"], "additionalProperties": False}
        text = await _call(result, complete, ask, max_tokens=None, temperature=0.0, stop=[],
                           constraint=Constraint("json_schema", {"schema": schema, "strict": True, "name": "choice"}))
        try:
            value = json.loads(text)["choice"]
        except (ValueError, TypeError, KeyError):
            value = None
        if value in choices:
            return value
        value = pick_choice(text, choices)
        if value is not None:
            return value
    budget = seg.get("max_tokens") or max_tokens
    temp = 0.0 if choices is not None and "select" in seg else (
        seg.get("temperature") if seg.get("temperature") is not None else temperature)
    constraint = None
    if seg.get("json_schema") is not None:
        constraint = Constraint("json_schema", {"schema": seg["json_schema"], "strict": False, "name": name})
    for attempt in range(retries + 1):
        text = await _call(result, complete, ask, max_tokens=budget, temperature=temp, stop=list(seg.get("stop") or []),
                           constraint=constraint)
        value = _cut_at_stop(text, seg.get("stop") or [])
        if choices is not None:
            value = pick_choice(value, choices) or value
        problem = violation(seg, value)            # the upstream itself held the value to max_tokens
        if problem is None:
            return value
        ask = [*ask, {"role": "assistant", "content": text}, {"role": "user", "content": REPAIR.format(error=problem)}]
    raise UpstreamError(502, f"The upstream's value for the program field {name!r} stayed invalid after "
                             f"{retries + 1} tries: {problem}", code="upstream_invalid_output")


def _cut_at_stop(text: str, stops: list[str]) -> str:
    ends = [at for at in (text.find(s) for s in stops) if at >= 0]
    return text[:min(ends)] if ends else text


def pick_choice(text: str, choices: list[str]) -> str | None:
    """The choice an answer names: itself, quoted or not, else the one it mentions first."""
    bare = text.strip().strip("\"'`.").strip()
    if bare in choices:
        return bare
    found = [(at, -len(c), c) for c in choices if (at := text.find(c)) >= 0]
    return min(found)[2] if found else None


def backend_complete(generate: Generate, req: GenerateRequest) -> Complete:
    """A Complete over a Backend's generate: each call is a sub-request of `req` (its model,
    namespace and sampling settings) with the call's own messages, budget, stop and constraint."""
    ids = count()

    async def complete(messages: list[dict], *, max_tokens: int | None = None, temperature: float | None = None,
                       stop: list[str] = (), constraint: Constraint | None = None) -> tuple[str, Usage]:
        params = replace(req.params, max_tokens=max_tokens, stop=list(stop), logprobs=False, top_logprobs=0,
                         temperature=req.params.temperature if temperature is None else temperature)
        sub = GenerateRequest(f"{req.request_id}/call{next(ids)}", params, messages=messages,
                              chat_template_kwargs=req.chat_template_kwargs, constraint=constraint,
                              namespace=req.namespace, model=req.model)
        text, usage = "", Usage()
        async for d in generate(sub):
            text += d.text if d.index == 0 else ""
            usage = d.usage or usage
        return text, usage
    return complete


async def program_deltas(complete: Complete, req: GenerateRequest, **options) -> AsyncIterator[Delta]:
    """A program request as the one Delta a Backend yields: the whole turn, its fields by name, the
    usage summed over every upstream call and the number of calls."""
    if req.messages is None or req.program is None:
        raise InvalidRequest("a program needs chat messages", "program")
    result = await run_program(complete, req.messages, req.program, temperature=req.params.temperature,
                               max_tokens=req.params.max_tokens, **options)
    yield Delta(0, result.text, finish_reason="stop", usage=result.usage, fields=result.fields,
                upstream_calls=result.upstream_calls)


def speculative_program(generate: Generate, req: GenerateRequest, **options) -> AsyncIterator[Delta]:
    """What an upstream Backend's generate returns for a request with a program."""
    return program_deltas(backend_complete(generate, req), req, **options)
