"""Any plain OpenAI-compatible chat endpoint as a program backend: one request per field.

Each field is asked for with the turn so far as the assistant's partial reply and an instruction to
write only that field's value (a turn that is one free field alone is asked as a plain chat reply):

    free gen     the text, cut at its stop strings, within max_tokens
    regex gen    checked here with `re.fullmatch` (else the first match in the reply is taken);
                 asked again with the error up to `retries` times, then a ProgramError
    json gen     response_format json_schema (non-strict); the reply must parse as JSON
    select,      select="enum" (default): a response_format whose schema is {"choice": enum}, the
    gen choices  reply read back (or the choice it names); select="logprobs": one token with
                 top_logprobs, each choice scored by the best log-probability of a top token its
                 text starts with (first-token scores, returned like radixgate's); where none
                 matches, the enum way

An endpoint that answers a response_format with a 400 is asked without one from then on (the
instruction names the rules, and the reply is read back and checked here).
"""
from __future__ import annotations

import json
import math
import re

import openai

from sdk.backends.base import ChatClient, OnText, ProgramError, TurnResult, Usage
from sdk.primitives import Field, Gen, Segment, Select, Text

FIELD = ("Continue your reply from exactly where it stops. Write only the value of [[{name}]] ({rules}), "
         "with nothing before or after it.")
FIRST_FIELD = "Write only the value of [[{name}]] ({rules}) as your reply, with nothing before or after it."
REPAIR = "That value is not valid: {error}. Write only the corrected value, with nothing before or after it."


class OpenAICompatible:
    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 temperature: float | None = None, max_tokens: int | None = None, select: str = "enum",
                 retries: int = 1, timeout: float = 600.0, extra_body: dict | None = None,
                 client: openai.OpenAI | None = None):
        """`temperature` and `max_tokens`: the defaults of gens that set none; `extra_body`: more
        request fields for every request (an endpoint's own extensions)."""
        if select not in ("enum", "logprobs"):
            raise ValueError("select must be 'enum' or 'logprobs'")
        self.chat = ChatClient(base_url, model, api_key, timeout, client)
        self.temperature, self.max_tokens, self.select, self.retries = temperature, max_tokens, select, retries
        self.extra_body = dict(extra_body or {})
        self.json_schema = True                # until the endpoint refuses a response_format

    def prefill(self, messages: list[dict], partial: str) -> Usage:
        return Usage()

    def close(self) -> None:
        self.chat.close()

    def run_turn(self, messages: list[dict], segments: list[Segment], on_text: OnText | None = None) -> TurnResult:
        result, partial = TurnResult({}), ""
        alone = len(segments) == 1
        for seg in segments:
            if isinstance(seg, Text):
                partial += seg.text
                continue
            ask = messages if alone and _free(seg) else _asking(messages, partial, seg)
            if isinstance(seg, Select) or seg.choices is not None:
                value = self._choose(result, ask, seg)
            else:
                value = self._generate(result, ask, seg, on_text)
            result.values[seg.name] = value
            partial += value
        return result

    # ----- one field ---------------------------------------------------------------------------

    def _params(self, kw: dict) -> dict:
        """The request's parameters: a field's temperature and max_tokens, else the backend's."""
        out = {k: v for k, v in kw.items() if v is not None}
        if self.extra_body:
            out["extra_body"] = self.extra_body
        for key, default in (("temperature", self.temperature), ("max_tokens", self.max_tokens)):
            if key not in out and default is not None:
                out[key] = default
        return out

    def _call(self, result: TurnResult, ask: list[dict], **kw):
        if not self.json_schema:
            kw.pop("response_format", None)
        try:
            r = self.chat.create(messages=ask, **self._params(kw))
        except openai.BadRequestError:
            if "response_format" not in kw:
                raise
            self.json_schema = False            # the endpoint refuses structured outputs: instructions alone
            return self._call(result, ask, **kw)
        result.usage.add(Usage.of(r.usage))
        if not r.choices:
            raise ProgramError("the endpoint answered with no choices")
        return r.choices[0]

    def _generate(self, result: TurnResult, ask: list[dict], seg: Gen, on_text: OnText | None) -> str:
        kw: dict = {"max_tokens": seg.max_tokens, "temperature": seg.temperature}
        if seg.stop:
            kw["stop"] = seg.stop[:4]
        if seg.json_schema is not None:
            kw["response_format"] = {"type": "json_schema", "json_schema": {"name": seg.name, "strict": False,
                                                                          "schema": seg.json_schema}}
        if on_text is not None and seg.regex is None and seg.json_schema is None:
            return self._stream(result, ask, seg, on_text, kw)
        problem = None
        for _ in range(self.retries + 1):
            text = _cut_at_stop(self._call(result, ask, **kw).message.content or "", seg.stop)
            value, problem = _checked(seg, text)
            if problem is None:
                return value
            ask = [*ask, {"role": "assistant", "content": text}, {"role": "user", "content": REPAIR.format(error=problem)}]
        raise ProgramError(f"the value of {seg.name!r} stayed invalid after {self.retries + 1} tries: {problem}")

    def _stream(self, result: TurnResult, ask: list[dict], seg: Gen, on_text: OnText, kw: dict) -> str:
        text, usage = "", None
        with self.chat.create(messages=ask, stream=True, stream_options={"include_usage": True},
                              **self._params(kw)) as stream:
            for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    piece = choice.delta.content or ""
                    cut = _cut_at_stop(text + piece, seg.stop)
                    if len(cut) > len(text):
                        on_text(seg.name, cut[len(text):])
                    text = cut
        result.usage.add(Usage.of(usage))
        return text

    def _choose(self, result: TurnResult, ask: list[dict], seg: Field) -> str:
        choices = seg.choices
        if self.select == "logprobs":
            choice = self._call(result, ask, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
            scores = _first_token_scores(choice.logprobs, choices)
            if scores is not None:
                if isinstance(seg, Select):
                    result.scores[seg.name] = scores
                return choices[scores.index(max(scores))]
        schema = {"type": "object", "properties": {"choice": {"type": "string", "enum": choices}},
                  "required": ["choice"], "additionalProperties": False}
        fmt = {"type": "json_schema", "json_schema": {"name": "choice", "strict": True, "schema": schema}}
        text = self._call(result, ask, temperature=0.0, response_format=fmt).message.content or ""
        try:
            value = json.loads(text)["choice"]
        except (ValueError, TypeError, KeyError):
            value = _named_choice(text, choices)
        if value not in choices:
            raise ProgramError(f"the endpoint's answer for {seg.name!r} names none of the choices: {text!r}")
        return value


def _free(seg: Field) -> bool:
    return isinstance(seg, Gen) and seg.regex is None and seg.json_schema is None and seg.choices is None


def _rules(seg: Field) -> str:
    rules = []
    choices = seg.choices
    if choices is not None:
        rules.append("exactly one of " + ", ".join(json.dumps(c) for c in choices))
    if isinstance(seg, Gen):
        if seg.regex is not None:
            rules.append(f"matches the regular expression {seg.regex}")
        if seg.json_schema is not None:
            rules.append(f"a JSON value valid against the schema {json.dumps(seg.json_schema)}")
        if seg.stop:
            rules.append("does not contain " + " or ".join(json.dumps(s) for s in seg.stop))
        if seg.max_tokens is not None:
            rules.append(f"at most {seg.max_tokens} tokens")
    return "; ".join(rules) or "free text"


def _asking(messages: list[dict], partial: str, seg: Field) -> list[dict]:
    """The conversation, the turn so far as the assistant's partial reply, and the field's instruction."""
    if partial:
        return [*messages, {"role": "assistant", "content": partial},
                {"role": "user", "content": FIELD.format(name=seg.name, rules=_rules(seg))}]
    instruction = FIRST_FIELD.format(name=seg.name, rules=_rules(seg))
    out = [dict(m) for m in messages]
    if out and out[-1].get("role") == "user" and isinstance(out[-1].get("content"), str):
        out[-1]["content"] += "\n\n" + instruction
    else:
        out.append({"role": "user", "content": instruction})
    return out


def _checked(seg: Gen, text: str) -> tuple[str, str | None]:
    """(the value, None) or (the text, why it breaks the gen's constraint)."""
    if seg.regex is not None:
        if re.fullmatch(seg.regex, text):
            return text, None
        found = re.search(seg.regex, text)
        if found is not None and found.group(0):
            return found.group(0), None
        return text, f"{text!r} does not match the regular expression {seg.regex}"
    if seg.json_schema is not None:
        try:
            json.loads(text)
        except ValueError as err:
            return text, f"it is not JSON ({err})"
    return text, None


def _cut_at_stop(text: str, stops: list[str]) -> str:
    ends = [at for at in (text.find(s) for s in stops) if at >= 0]
    return text[:min(ends)] if ends else text


def _named_choice(text: str, choices: list[str]) -> str | None:
    bare = text.strip().strip("\"'`.").strip()
    if bare in choices:
        return bare
    found = [(at, -len(c), c) for c in choices if (at := text.find(c)) >= 0]
    return min(found)[2] if found else None


def _first_token_scores(logprobs, choices: list[str]) -> list[float] | None:
    """Each choice's best top-token log-probability among the tokens its text starts with."""
    content = getattr(logprobs, "content", None) or []
    if not content:
        return None
    scores = [-math.inf] * len(choices)
    for top in content[0].top_logprobs or []:
        token = top.token.lstrip()
        for i, c in enumerate(choices):
            if token and c.lstrip().startswith(token):
                scores[i] = max(scores[i], top.logprob)
    return scores if any(s > -math.inf for s in scores) else None
