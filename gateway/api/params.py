"""Reading an OpenAI request body: typed access that names the parameter in every error, and the
sampling fields chat and completions share. Every key of the body must be consumed or explicitly
accepted, so an unsupported field is a 400 naming it, never silently ignored."""
from __future__ import annotations

import math
from typing import Any

from gateway.api.errors import ApiError, invalid
from gateway.protocol import Constraint, InvalidRequest, SamplingParams

MAX_INT = 2 ** 31 - 1      # bound on counts, so absurd integers are a 400, not an overflow deeper in
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


class Body:
    def __init__(self, data: Any):
        if not isinstance(data, dict):
            raise invalid("The request body must be a JSON object.", None, "invalid_type")
        self.data = data
        self.used: set[str] = set()

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, *,
            low: float | None = None, high: float | None = None) -> Any:
        """The value of `name` (default when absent or null), checked for type and range."""
        self.used.add(name)
        value = self.data.get(name)
        if value is None:
            return default
        if type(value) is kind and kind is not float:  # (JSON gives exact types) nothing to convert or refuse
            if low is not None and value < low:
                raise invalid(f"Invalid '{name}': {value} is lower than the minimum of {low}.", name, "invalid_value")
            if high is not None and value > high:
                raise invalid(f"Invalid '{name}': {value} is greater than the maximum of {high}.", name,
                              "invalid_value")
            return value
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = type(value) in kinds or \
            any(isinstance(value, k) and not (k in (int, float) and isinstance(value, bool)) for k in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise invalid(f"Invalid type for '{name}': expected {expected}, but got {_TYPE_NAMES.get(type(value), type(value).__name__)} instead.",
                          name, "invalid_type")
        if isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"Invalid value for '{name}': must be a finite number.", name, "invalid_value")
        if low is not None and value < low:
            raise invalid(f"Invalid '{name}': {value} is lower than the minimum of {low}.", name, "invalid_value")
        if high is not None and value > high:
            raise invalid(f"Invalid '{name}': {value} is greater than the maximum of {high}.", name, "invalid_value")
        return value

    def require(self, name: str, kind: type) -> Any:
        if self.data.get(name) is None:
            raise invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        return self.get(name, kind)

    def accept(self, *names: str) -> None:
        """Fields that need no action from us (hints, or values equal to our only behaviour)."""
        self.used.update(names)

    def refuse(self, name: str, why: str = "is not supported by this server") -> None:
        self.used.add(name)
        if self.data.get(name) is not None:
            raise invalid(f"'{name}' {why}.", name, "unsupported_parameter")

    def check_all_used(self) -> None:
        self.check_known(self.used)

    def check_known(self, known: set[str] | frozenset[str]) -> None:
        """Refuse the body's first field outside `known` (a route reading a fixed set of fields names it
        here rather than having each read noted)."""
        if not known.issuperset(self.data):
            name = next(name for name in self.data if name not in known)
            raise invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")


def parse_stop(body: Body) -> list[str]:
    stop = body.get("stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise invalid("'stop' must be a string or a list of up to 4 strings.", "stop", "invalid_value")
    return stop


def parse_logit_bias(body: Body) -> dict[int, float]:
    raw = body.get("logit_bias", dict, {})
    bias = {}
    for key, value in raw.items():
        if not str(key).isdigit() or len(str(key)) > 12 or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"Invalid 'logit_bias': keys must be token ids and values numbers, got {key!r}: {value!r}.",
                          "logit_bias", "invalid_value")
        bias[int(key)] = float(value)
    return bias


# The numeric sampling fields: (name, type, default, low, high), checked in this order.
NUMERIC = (("temperature", float, 1.0, 0, 2), ("top_p", float, 1.0, 0, 1), ("top_k", int, 0, -1, MAX_INT),
           ("min_p", float, 0.0, 0, 1), ("presence_penalty", float, 0.0, -2, 2),
           ("frequency_penalty", float, 0.0, -2, 2), ("repetition_penalty", float, 1.0, 0.01, 10))
NUMERIC_NAMES = frozenset(name for name, *_ in NUMERIC)
SAMPLING = (*(name for name, *_ in NUMERIC), "stop_token_ids", "logit_bias", "seed", "stop", "ignore_eos",
            "skip_special_tokens")


def sampling_params(body: Body, max_tokens: int | None, logprobs: bool, top_logprobs: int) -> SamplingParams:
    """The sampling fields shared by chat and completions, plus our extensions. Only the fields the body
    has are read (an absent or null one takes its default), in the same order either way, so the first
    bad field is the one named."""
    data = body.data
    stop_ids = body.get("stop_token_ids", list, []) if "stop_token_ids" in data else []
    if stop_ids and not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_INT for t in stop_ids):
        raise invalid("'stop_token_ids' must be a list of token ids.", "stop_token_ids", "invalid_value")
    values = {name: body.get(name, kind, default, low=low, high=high)
              for name, kind, default, low, high in NUMERIC if name in data} \
        if not data.keys().isdisjoint(NUMERIC_NAMES) else {}
    if "top_p" in values:
        values["top_p"] = values["top_p"] or 1e-9          # 0 keeps only the top token
    if "logit_bias" in data:
        values["logit_bias"] = parse_logit_bias(body)
    if "seed" in data:
        values["seed"] = body.get("seed", int, None, low=-(2 ** 63), high=2 ** 64 - 1)
    if "stop" in data:
        values["stop"] = parse_stop(body)
    if "ignore_eos" in data:
        values["ignore_eos"] = body.get("ignore_eos", bool, False)
    if "skip_special_tokens" in data:
        values["skip_special_tokens"] = body.get("skip_special_tokens", bool, True)
    body.accept(*SAMPLING)
    try:
        return SamplingParams(max_tokens=max_tokens, stop_token_ids=stop_ids, logprobs=logprobs,
                              top_logprobs=top_logprobs, **values)
    except InvalidRequest as err:
        raise invalid(str(err), err.param, "invalid_value") from None


def stream_options(body: Body, stream: bool) -> bool:
    """Whether to send the usage chunk; stream_options without stream is an error, as at OpenAI."""
    opts = body.get("stream_options", dict, None)
    if opts is None:
        return False
    if not stream:
        raise invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options",
                      "invalid_value")
    unknown = set(opts) - {"include_usage", "include_obfuscation"}
    if unknown:
        raise invalid(f"Unrecognized stream_options field: {sorted(unknown)[0]}", "stream_options", "unknown_parameter")
    include = opts.get("include_usage", False)
    if not isinstance(include, bool):
        raise invalid("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage", "invalid_type")
    return include


def namespace(api_key: str, body: Body) -> str:
    """The radix-cache tenant: the API key, further split by `cache_salt` when given."""
    salt = body.get("cache_salt", str, None)
    return f"{api_key}|{salt}" if salt else api_key


def check_model(body: Body, served: set[str]) -> str:
    model = body.require("model", str)
    if model not in served:
        raise ApiError(404, f"The model '{model}' does not exist or you do not have access to it.", "model",
                       "model_not_found")
    return model


CONSTRAINT_FIELDS = frozenset(("response_format", "regex", "choices"))


def constraint(body: Body) -> Constraint | None:
    """response_format (json_object / json_schema) and the `regex` / `choices` extensions; at most one."""
    found = []
    fmt = body.get("response_format", dict, None)
    if fmt is not None:
        kind = fmt.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise invalid(f"Invalid value for 'response_format.type': {kind!r}.", "response_format.type",
                          "invalid_value")
        if kind == "json_object":
            found.append(Constraint("json_object"))
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or \
                    not isinstance(spec.get("schema", {}), (dict, bool)):
                raise invalid("'response_format.json_schema' must be an object with a 'name' and a 'schema'.",
                              "response_format.json_schema", "invalid_value")
            strict = spec.get("strict") or False
            if not isinstance(strict, bool):
                raise invalid("'response_format.json_schema.strict' must be a boolean.",
                              "response_format.json_schema.strict", "invalid_type")
            found.append(Constraint("json_schema", {"schema": spec.get("schema", {}), "strict": strict}))
    regex = body.get("regex", str, None)
    if regex is not None:
        found.append(Constraint("regex", regex))
    choices = body.get("choices", list, None)
    if choices is not None:
        found.append(Constraint("choice", choices))
    if len(found) > 1:
        raise invalid("Give at most one of 'response_format' (json), 'regex' and 'choices'.", "response_format",
                      "invalid_value")
    return found[0] if found else None
