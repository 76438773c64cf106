"""Tool calls with tool_choice "auto" in the Hermes format (Qwen, ChatML): text may come first (a
Qwen3 `<think>` block, a preamble) and the calls begin at the first `<tool_call>`; after them, only
more calls. The bare-JSON format (Llama 3.1) decides on the first character. Checked byte by byte
with the grammar's matcher and through the stream splitter, fed in arbitrary pieces."""
from __future__ import annotations

import json

import pytest

from gateway.engine.tools import ToolCallStream, ToolFormat, tool_grammar
from gateway.structured.matcher import Matcher

ADD = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
       "b": {"type": "integer"}}, "required": ["a", "b"], "additionalProperties": False}}
HERMES = ToolFormat.detect("{% for t in tools %}<tool_call>{% endfor %}")
LLAMA = ToolFormat.detect('{"name": ..., "parameters": ...}')
CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def accepts(fmt: ToolFormat, text: str, parallel: bool = True) -> bool:
    grammar = tool_grammar(fmt, {"tools": [{"type": "function", "function": ADD}], "choice": "auto",
                                 "parallel": parallel})
    matcher = Matcher(grammar)
    return matcher.advance(text.encode()) and matcher.accepting


@pytest.mark.parametrize("text", ["Hello.", "", "a < b and <b>bold</b>", "<think>\nadd them\n</think>\n\n" + CALL,
                                  CALL, CALL + "\n" + CALL, "Let me add.\n" + CALL, "<tool_cal", "<tool_c>x"])
def test_hermes_auto_accepts_text_then_calls(text):
    assert accepts(HERMES, text)


@pytest.mark.parametrize("text", [CALL + "\nDone.", "<tool_call>\n{\"name\": \"sub\"", CALL + CALL,
                                  '<think></think><tool_call>\n{"name": "add", "arguments": {"a": "1", "b": 2}}'])
def test_hermes_auto_refuses_what_is_not_text_then_valid_calls(text):
    assert not accepts(HERMES, text)


def test_bare_json_format_decides_on_the_first_character():
    call = '{"name": "add", "parameters": {"a": 1, "b": 2}}'
    assert accepts(LLAMA, call) and accepts(LLAMA, "The answer is {a}.")
    assert not accepts(LLAMA, '{"name": "sub"}')


@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_stream_splits_content_from_calls(piece):
    text = "<think>\nI should add <these>.\n</think>\n\n" + CALL + "\n" + CALL.replace('"a": 1', '"a": 5')
    stream, content, calls = ToolCallStream(HERMES), "", []
    for i in range(0, len(text), piece):
        c, more = stream.feed(text[i:i + piece])
        content, calls = content + c, calls + more
    c, more = stream.flush()
    content, calls = content + c, calls + more
    assert content == "<think>\nI should add <these>.\n</think>\n\n"
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 1, "b": 2}), ("add", {"a": 5, "b": 2})]


def test_stream_of_plain_text_holds_back_only_a_possible_opening():
    stream = ToolCallStream(HERMES)
    assert stream.feed("x <tool") == ("x ", [])
    assert stream.feed("box>") == ("<toolbox>", [])
    assert stream.flush() == ("", [])
