"""A scripted chat model for programs: in process as a `Complete` (gateway.spec_api.speculative), or
behind loadtest.fake_upstream's FakeUpstream as its reply function, over HTTP.

`FormFiller` answers the requests gateway.spec_api.speculative makes: the whole-turn form is filled
with the values it was given (a chosen share of replies drop one literal of the form, as a chat
model that does not follow the template would), and a single-field request gets that field's value
(as `{"choice": ...}` JSON when asked for an enum response_format). Tokens are counted as about four
bytes each, the same way for every request, so billed-token ratios compare like with like.
"""
from __future__ import annotations

import json
import math
import random
import re

from gateway.protocol import Constraint, Usage
from gateway.spec_api.turn_form import FORM_BEGIN, FORM_END

PLACEHOLDER = re.compile(r"(\[\[[^\]]+\]\])")
ASKED_FIELD = re.compile(r"value of \[\[([^\]]+)\]\]")


def count_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / 4)


def content_text(message: dict) -> str:
    content = message.get("content") or ""
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


class FormFiller:
    def __init__(self, values: dict[str, str], drop_rate: float = 0.0, seed: int = 0):
        self.values, self.drop_rate = values, drop_rate
        self.rng = random.Random(seed)
        self.calls = self.prompt_tokens = self.completion_tokens = self.dropped = 0
        self.bodies: list[dict] = []
        self.last_dropped: str | None = None

    def reply(self, messages: list[dict], body: dict) -> str:
        last = content_text(messages[-1]) if messages else ""
        if FORM_BEGIN in last:
            form = last.split(FORM_BEGIN + "\n", 1)[1].split("\n" + FORM_END, 1)[0]
            return self.fill(form)
        for m in reversed(messages):
            asked = ASKED_FIELD.search(content_text(m)) if m.get("role") == "user" else None
            if asked:
                value = self.values[asked.group(1)]
                fmt = body.get("response_format") or {}
                if fmt.get("type") == "json_schema" and "choice" in json.dumps(fmt):
                    return json.dumps({"choice": value})
                return value
        return "OK."

    def fill(self, form: str) -> str:
        parts = PLACEHOLDER.split(form)             # literals at even indices, placeholders at odd
        literals = [i for i in range(0, len(parts), 2) if parts[i]]
        if literals and self.rng.random() < self.drop_rate:
            at = self.rng.choice(literals)
            self.last_dropped, parts[at] = parts[at], ""
            self.dropped += 1
        return "".join(self.values[p[2:-2]] if i % 2 else p for i, p in enumerate(parts))

    def answer(self, body: dict) -> tuple[str, str, dict]:
        """(text, finish_reason, usage) for a chat completions body, held to its stop and max tokens."""
        messages = body.get("messages") or []
        self.bodies.append(body)
        text, finish = self.reply(messages, body), "stop"
        stops = body.get("stop") or []
        ends = [at for at in (text.find(s) for s in ([stops] if isinstance(stops, str) else stops)) if at >= 0]
        text = text[:min(ends)] if ends else text
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and count_tokens(text) > limit:
            text, finish = text[:4 * limit], "length"
        prompt = sum(count_tokens(content_text(m)) + 4 for m in messages)
        completion = count_tokens(text)
        self.calls += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        return text, finish, {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}

    async def complete(self, messages: list[dict], *, max_tokens: int | None = None, temperature: float | None = None,
                       stop: list[str] = (), constraint: Constraint | None = None) -> tuple[str, Usage]:
        """The Complete interface, as an upstream would answer the body built from these arguments."""
        body = {"messages": messages, "max_completion_tokens": max_tokens, "temperature": temperature,
                "stop": list(stop)}
        if constraint is not None and constraint.kind == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": constraint.spec.get("name", "response"), "schema": constraint.spec["schema"]}}
        text, _, usage = self.answer(body)
        return text, Usage(usage["prompt_tokens"], usage["completion_tokens"])

    def fake_reply(self, body: dict):
        """A reply function for loadtest.fake_upstream.FakeUpstream."""
        from loadtest.fake_upstream import Reply
        text, finish, usage = self.answer(body)
        pieces = tuple(text[at:at + 4] for at in range(0, len(text), 4))     # one token each, as counted here
        return Reply(pieces, finish_reason=finish, prompt_tokens=usage["prompt_tokens"])
