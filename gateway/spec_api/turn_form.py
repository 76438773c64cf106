"""A program's whole assistant turn as one form for an upstream chat model to fill, and reading the
filled form back into segment values.

The form is the turn with each field written as a placeholder `[[name]]`; the instruction lists
each placeholder's rules (choices, regex, schema, what it must not contain, its length). Reading
back walks the segments: a literal must appear where expected, a field ends at its first stop
string, else where the next literal begins (a select at the longest choice the rest agrees with),
and each value is checked against its rules.

Invariant: a field is accepted only together with what confirms its end (the next literal, its
stop string, or the end of the reply). A literal the model dropped would otherwise let the field
before it swallow the next field's value and still pass its checks.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

FORM_BEGIN, FORM_END = "-----BEGIN REPLY-----", "-----END REPLY-----"
INSTRUCTION = ("Write your reply as the form between the lines {begin} and {end} below, filled in. Copy every "
               "character outside the [[placeholders]] exactly, including spaces, punctuation and line breaks; "
               "replace each placeholder with its value; write nothing before or after the form and do not write "
               "the {begin}/{end} lines themselves.\n{begin}\n{form}\n{end}\nPlaceholders:\n{rules}")
CHARS_PER_TOKEN = 4                  # a rough upper estimate; a value over its token budget is a mismatch


def field_name(seg: dict) -> str | None:
    return seg.get("gen") if "gen" in seg else seg.get("select")


def field_choices(seg: dict) -> list[str] | None:
    return seg["choices"] if "select" in seg else seg.get("choices")


def field_rules(seg: dict) -> str:
    rules = []
    if (choices := field_choices(seg)) is not None:
        rules.append("exactly one of " + ", ".join(json.dumps(c) for c in choices))
    if seg.get("regex") is not None:
        rules.append(f"matches the regular expression {seg['regex']}")
    if seg.get("json_schema") is not None:
        rules.append(f"a JSON value valid against the schema {json.dumps(seg['json_schema'])}")
    if seg.get("stop"):
        rules.append("does not contain " + " or ".join(json.dumps(s) for s in seg["stop"]))
    if seg.get("max_tokens") is not None:
        rules.append(f"at most {seg['max_tokens']} tokens")
    return "; ".join(rules) or "free text"


def form_instruction(program: list[dict]) -> str:
    form = "".join(seg["text"] if "text" in seg else f"[[{field_name(seg)}]]" for seg in program)
    rules = "\n".join(f"- [[{field_name(seg)}]]: {field_rules(seg)}" for seg in program if "text" not in seg)
    return INSTRUCTION.format(begin=FORM_BEGIN, end=FORM_END, form=form, rules=rules)


def violation(seg: dict, value: str, budget: int | None = None) -> str | None:
    """Why `value` breaks the field's rules, or None when it keeps them; its length is checked
    against `budget` tokens (estimated) when given."""
    choices = field_choices(seg)
    if choices is not None and value not in choices:
        return f"{value!r} is not one of the choices"
    if seg.get("regex") is not None and re.fullmatch(seg["regex"], value) is None:
        return f"{value!r} does not match the regular expression {seg['regex']}"
    if seg.get("json_schema") is not None:
        return json_violation(value, seg["json_schema"])
    if any(s in value for s in seg.get("stop") or ()):
        return f"{value!r} contains a stop string"
    if budget is not None and math.ceil(len(value.encode("utf-8")) / CHARS_PER_TOKEN) > budget:
        return f"the value is longer than {budget} tokens"
    return None


def json_violation(value: str, schema: Any) -> str | None:
    try:
        parsed = json.loads(value)
    except ValueError as err:
        return f"it is not JSON ({err})"
    try:
        import jsonschema
    except ImportError:                     # a dev dependency: without it, parsing is all we check
        return None
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(parsed))
    return None if error is None else f"it does not validate: {error.message}"


def read_form(program: list[dict], reply: str, max_tokens: int | None = None) -> list[str]:
    """The values of the leading segments the reply fills correctly (literals as written), in order;
    shorter than the program where the reply stops following the form."""
    values: list[str] = []
    pos = 0 if program and "text" in program[0] else len(reply) - len(reply.lstrip())
    for i, seg in enumerate(program):
        if "text" in seg:
            at = _literal_at(program, i, reply, pos)
            if at is None:
                break
            values.append(seg["text"])
            pos = at
            continue
        cut = _cut_field(program, i, reply, pos)
        if cut is None or violation(seg, cut[0], seg.get("max_tokens") or max_tokens) is not None:
            break
        values.append(cut[0])
        pos = cut[1]
    else:
        return values                            # text after the filled form is left out of the turn
    return _unconfirmed_dropped(program, values)


def _unconfirmed_dropped(program: list[dict], values: list[str]) -> list[str]:
    """Drop a trailing field: nothing after it confirmed where it ends."""
    while values and "text" not in program[len(values) - 1]:
        values.pop()
    return values


def _literal_at(program: list[dict], i: int, reply: str, pos: int) -> int | None:
    """Where the reply continues after literal i if it appears at pos; chat models drop whitespace
    at the very start and end of a reply, so there it is optional."""
    text = program[i]["text"]
    if reply.startswith(text, pos):
        return pos + len(text)
    rest_is_literal = all("text" in s for s in program[i:])
    if rest_is_literal and reply.startswith(text.rstrip(), pos) and not reply[pos + len(text.rstrip()):].strip():
        return len(reply)
    lead = len(reply) - len(reply.lstrip())
    if pos == 0 and reply.startswith(text.lstrip(), lead):
        return lead + len(text.lstrip())
    return None


def _cut_field(program: list[dict], i: int, reply: str, pos: int) -> tuple[str, int] | None:
    """(the field's value, where the reply continues) or None when its end cannot be told."""
    seg = program[i]
    after = program[i + 1] if i + 1 < len(program) else None
    literal = after["text"] if after is not None and "text" in after and after["text"] else None
    choices = field_choices(seg)
    if choices is not None:
        for choice in sorted(choices, key=len, reverse=True):
            end = pos + len(choice)
            if reply.startswith(choice, pos) and (literal is None or _literal_at(program, i + 1, reply, end)
                                                  is not None):
                return choice, end
        return None
    stops = [(reply.find(s, pos), s) for s in seg.get("stop") or ()]
    stops = [(at, s) for at, s in stops if at >= 0]
    if stops:
        at, s = min(stops)
        continue_at = at if literal is not None and reply.startswith(literal, at) else at + len(s)
        return reply[pos:at], continue_at
    if literal is not None:
        at = reply.find(literal, pos)
        if at < 0 and all("text" in s for s in program[i + 1:]) and not "".join(
                s["text"] for s in program[i + 1:]).strip():
            at = len(reply.rstrip())             # only whitespace follows, and the model left it off
        return (reply[pos:at], at) if at >= 0 else None
    if after is None:
        return reply[pos:], len(reply)
    return None                                  # two fields back to back, no stop between: no way to tell
