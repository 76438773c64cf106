"""The `program` extension of chat completions: a list of segments that fills one assistant turn.

Segments as a client writes them, and the normal form every backend receives in
`GenerateRequest.program` (all keys present, so backends never re-validate):

    {"text": str}                                      literal text of the turn
    {"gen": name, "max_tokens": int | None, "stop": [str], "temperature": float | None,
     "regex": str | None, "json_schema": dict | None, "choices": [str] | None}
                                                       a generated field; at most one constraint
    {"select": name, "choices": [str], "normalize": "mean" | "sum" | "first_token"}
                                                       one of the choices, the best by the log-probability
                                                       of its own token ids after the turn so far
                                                       (normalize: their mean, the default, their sum, or
                                                       the first token's; gateway/engine/scoring.py); a
                                                       backend that scores returns the scores

A gen's `stop` may be a string or up to 4 strings; a gen's `temperature` and `max_tokens` fall back to
the request's.
Field names are unique, so the response can carry the fields by name.
"""
from __future__ import annotations

from typing import Any

from gateway.api.errors import invalid
from gateway.api.params import MAX_INT

MAX_SEGMENTS = 256
GEN_KEYS = ("gen", "max_tokens", "stop", "temperature", "regex", "json_schema", "choices")
CONSTRAINTS = ("regex", "json_schema", "choices")
NORMALIZE = ("mean", "sum", "first_token")          # how a select scores a choice (gateway.engine.scoring)


def parse_program(raw: Any) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise invalid("'program' must be a non-empty array of segments.", "program", "invalid_type")
    if len(raw) > MAX_SEGMENTS:
        raise invalid(f"'program' may have at most {MAX_SEGMENTS} segments.", "program", "invalid_value")
    names: set[str] = set()
    program = []
    for i, seg in enumerate(raw):
        where = f"program[{i}]"
        kinds = [k for k in ("text", "gen", "select") if isinstance(seg, dict) and k in seg]
        if len(kinds) != 1:
            raise invalid(f"Invalid '{where}': expected an object with exactly one of 'text', 'gen' and 'select'.",
                          where, "invalid_value")
        parsed = {"text": _text, "gen": _gen, "select": _select}[kinds[0]](seg, where)
        name = parsed.get(kinds[0]) if kinds[0] != "text" else None
        if name is not None:
            if name in names:
                raise invalid(f"Invalid '{where}.{kinds[0]}': the field name {name!r} is used twice.",
                              f"{where}.{kinds[0]}", "invalid_value")
            names.add(name)
        program.append(parsed)
    return program


def _unknown_keys(seg: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in seg:
        if key not in allowed:
            raise invalid(f"Unrecognized key in '{where}': {key!r}.", f"{where}.{key}", "unknown_parameter")


def _text(seg: dict, where: str) -> dict:
    _unknown_keys(seg, ("text",), where)
    if not isinstance(seg["text"], str):
        raise invalid(f"Invalid type for '{where}.text': expected a string.", f"{where}.text", "invalid_type")
    return {"text": seg["text"]}


def _name(seg: dict, key: str, where: str) -> str:
    name = seg[key]
    if not isinstance(name, str) or not name:
        raise invalid(f"Invalid '{where}.{key}': the field name must be a non-empty string.", f"{where}.{key}",
                      "invalid_value")
    return name


def _choices(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise invalid(f"Invalid '{param}': expected a non-empty array of non-empty strings.", param, "invalid_value")
    if len(set(value)) != len(value):
        raise invalid(f"Invalid '{param}': the choices must be distinct.", param, "invalid_value")
    return list(value)


def _gen(seg: dict, where: str) -> dict:
    _unknown_keys(seg, GEN_KEYS, where)
    out: dict[str, Any] = {"gen": _name(seg, "gen", where), "max_tokens": None, "stop": [], "temperature": None,
                           "regex": None, "json_schema": None, "choices": None}
    max_tokens = seg.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_INT:
            raise invalid(f"Invalid '{where}.max_tokens': expected an integer >= 1.", f"{where}.max_tokens",
                          "invalid_value")
        out["max_tokens"] = max_tokens
    stop = seg.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise invalid(f"Invalid '{where}.stop': expected a string or an array of up to 4 non-empty strings.",
                      f"{where}.stop", "invalid_value")
    out["stop"] = stop
    temperature = seg.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise invalid(f"Invalid '{where}.temperature': expected a number in [0, 2].", f"{where}.temperature",
                          "invalid_value")
        out["temperature"] = float(temperature)
    given = [k for k in CONSTRAINTS if seg.get(k) is not None]
    if len(given) > 1:
        raise invalid(f"Invalid '{where}': give at most one of 'regex', 'json_schema' and 'choices'.",
                      f"{where}.{given[1]}", "invalid_value")
    if seg.get("regex") is not None:
        if not isinstance(seg["regex"], str) or not seg["regex"]:
            raise invalid(f"Invalid '{where}.regex': expected a non-empty string.", f"{where}.regex", "invalid_value")
        out["regex"] = seg["regex"]
    if seg.get("json_schema") is not None:
        if not isinstance(seg["json_schema"], (dict, bool)):
            raise invalid(f"Invalid '{where}.json_schema': expected a JSON Schema object.", f"{where}.json_schema",
                          "invalid_type")
        out["json_schema"] = seg["json_schema"]
    if seg.get("choices") is not None:
        out["choices"] = _choices(seg["choices"], f"{where}.choices")
    return out


def _select(seg: dict, where: str) -> dict:
    _unknown_keys(seg, ("select", "choices", "normalize"), where)
    if "choices" not in seg:
        raise invalid(f"Missing required parameter: '{where}.choices'.", f"{where}.choices",
                      "missing_required_parameter")
    normalize = seg.get("normalize", "mean")
    if normalize not in NORMALIZE:
        raise invalid(f"Invalid '{where}.normalize': expected one of {', '.join(NORMALIZE)}.", f"{where}.normalize",
                      "invalid_value")
    return {"select": _name(seg, "select", where), "choices": _choices(seg["choices"], f"{where}.choices"),
            "normalize": normalize}


def refuse_with_program(body_fields: dict[str, Any]) -> None:
    """Request fields a program cannot be combined with: each gen has its own stop and constraint,
    and a program fills exactly one assistant turn."""
    reasons = {"n": "a program fills one assistant turn; 'n' must be 1",
               "tools": "tools cannot be combined with 'program'",
               "response_format": "give each gen its own 'regex', 'json_schema' or 'choices' instead",
               "regex": "give each gen its own 'regex' instead", "choices": "use a 'select' segment instead",
               "stop": "give each gen its own 'stop' instead",
               "logprobs": "logprobs are not returned for programs"}
    for name, why in reasons.items():
        value = body_fields.get(name)
        harmless = (None, False, [], {"type": "text"}) + ((1,) if name == "n" else ())
        if not any(value == h and type(value) is type(h) for h in harmless):
            raise invalid(f"'{name}' cannot be used with 'program': {why}.", name, "invalid_value")
