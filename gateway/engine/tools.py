"""Tool calls in the model's own format: the grammar that makes them valid, and the parser that
turns generated text back into OpenAI tool calls.

The format is read off the chat template: Hermes-style `<tool_call>\\n{"name": ..., "arguments": ...}
\\n</tool_call>` (Qwen and ChatML templates) or Llama 3.1's bare `{"name": ..., "parameters": ...}`.
A template with neither cannot be given tools.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache

from gateway.protocol import InvalidRequest, ToolCall
from gateway.structured.alternatives import alternatives
from gateway.structured.grammar import Grammar


@dataclass(frozen=True, slots=True)
class ToolFormat:
    kind: str
    opening: str            # text before the JSON object of each call
    args_key: str
    closing: str            # text after it
    text_first: bool        # text (thinking, a preamble) may come before the calls: their opening is distinct

    def prefix(self, name: str) -> bytes:
        return (self.opening + json.dumps({"name": name})[:-1] + f', "{self.args_key}": ').encode()

    @property
    def suffix(self) -> bytes:
        return ("}" + self.closing).encode()

    @property
    def trigger(self) -> str:
        """What starts the calls: the opening tag, or a bare JSON object's brace (then only first)."""
        return self.opening.strip() if self.text_first else (self.opening or "{")[:1]

    @classmethod
    def detect(cls, chat_template) -> "ToolFormat | None":
        source = json.dumps(chat_template) if not isinstance(chat_template, str) else chat_template
        if "<tool_call>" in source:
            return cls("hermes", "<tool_call>\n", "arguments", "\n</tool_call>", text_first=True)
        if '"parameters"' in source or "ipython" in source:
            return cls("llama3_json", "", "parameters", "", text_first=False)
        return None


def tool_grammar(fmt: ToolFormat, spec: dict) -> Grammar:
    return _tool_grammar(fmt, json.dumps(spec))          # key order matters: properties


@lru_cache(maxsize=256)
def _tool_grammar(fmt: ToolFormat, spec_json: str) -> Grammar:
    from gateway.structured.json_schema import compile_json_schema

    spec = json.loads(spec_json)
    tools = [t["function"] for t in spec["tools"]]
    choice = spec["choice"]
    if isinstance(choice, dict):
        tools = [t for t in tools if t["name"] == choice["function"]["name"]]
    branches = []
    for fn in tools:
        try:
            args = compile_json_schema(fn.get("parameters") or {"type": "object", "properties": {}},
                                       strict=bool(fn.get("strict")))
        except ValueError as err:
            keyword = getattr(err, "keyword", None)
            raise InvalidRequest(f"cannot enforce the parameters of tool '{fn['name']}': {err}",
                                 "tools" + (f".{keyword}" if keyword else "")) from None
        branches.append((fmt.prefix(fn["name"]), args, fmt.suffix))
    auto = choice == "auto"
    return alternatives(branches, separator=b"\n" if spec["parallel"] else None,
                        free_text_unless=fmt.trigger.encode() if auto and not fmt.text_first else None,
                        text_before=fmt.trigger.encode() if auto and fmt.text_first else None)


class ToolCallStream:
    """Splits a choice's generated text into content and complete tool calls, as it arrives. Content
    ends where the calls begin: at the first character (a bare JSON format) or at the opening tag
    (text first), text that could be the start of the tag held back until it is decided."""

    def __init__(self, fmt: ToolFormat):
        self.fmt, self.buffer, self.mode, self.calls = fmt, "", None, 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buffer += text
        if self.mode == "calls":
            return "", self._complete_calls()
        trigger = self.fmt.trigger
        if self.mode is None and not self.fmt.text_first:
            if not self.buffer:
                return "", []
            self.mode = "calls" if self.buffer.startswith(trigger) else "text"
        if self.mode == "text":
            text, self.buffer = self.buffer, ""
            return text, []
        at = self.buffer.find(trigger)
        if at >= 0:
            content, self.buffer, self.mode = self.buffer[:at], self.buffer[at:], "calls"
            return content, self._complete_calls()
        hold = next((n for n in range(min(len(trigger) - 1, len(self.buffer)), 0, -1)
                     if self.buffer.endswith(trigger[:n])), 0)
        content, self.buffer = self.buffer[:len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return content, []

    def flush(self) -> tuple[str, list[ToolCall]]:
        if self.mode != "calls":
            text, self.buffer = self.buffer, ""
            return text, []
        return "", self._complete_calls()

    def _complete_calls(self) -> list[ToolCall]:
        out, decoder = [], json.JSONDecoder()
        while True:
            body = self.buffer.lstrip("\n")
            if not body.startswith(self.fmt.opening):
                return out
            try:
                obj, end = decoder.raw_decode(body, len(self.fmt.opening))
            except json.JSONDecodeError:
                return out
            if not body[end:].startswith(self.fmt.closing):
                return out
            self.buffer = body[end + len(self.fmt.closing):]
            args = json.dumps(obj[self.fmt.args_key], ensure_ascii=False)
            out.append(ToolCall(self.calls, "call_" + uuid.uuid4().hex[:24], obj["name"], args))
            self.calls += 1
