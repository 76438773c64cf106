"""Structured output through the official client: response_format with a Pydantic model, JSON
mode, tool calls (required, named, streamed), and the regex / choices extensions. Every response is
validated against OpenAI's spec by the client_for fixture."""
from __future__ import annotations

import json
import re
from typing import Annotated

import jsonschema
import pytest
from pydantic import BaseModel, Field

from tests.api.test_openai_client import MODEL, client, client_for  # noqa: F401 (fixtures)

ASK = [{"role": "user", "content": "Tell me about someone."}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 20},
               "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"],
               "additionalProperties": False}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {
       "a": {"type": "integer", "minimum": -100, "maximum": 100}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}


class Person(BaseModel):
    name: Annotated[str, Field(max_length=12)]
    age: Annotated[int, Field(ge=0, le=120)]
    likes_tea: bool


def test_parse_with_a_pydantic_model(client):
    for seed in range(4):
        completion = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=Person,
                                                   max_completion_tokens=120, temperature=1.0, seed=seed)
        person = completion.choices[0].message.parsed
        assert isinstance(person, Person) and completion.choices[0].finish_reason == "stop"


def test_json_mode_gives_a_json_object(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"},
                                       max_completion_tokens=60, temperature=1.0, seed=3)
    assert isinstance(json.loads(r.choices[0].message.content), dict)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("parallel", [False, True])
def test_required_tool_calls_always_validate(client, seed, parallel):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, ADD], tool_choice="required",
                                       parallel_tool_calls=parallel, max_completion_tokens=150, temperature=1.0,
                                       seed=seed)
    choice = r.choices[0]
    assert choice.message.tool_calls
    if not parallel:      # one call, then the grammar is complete; in parallel a random model may go on calling
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    for call in choice.message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        assert call.type == "function" and call.id.startswith("call_")


def test_named_tool_choice_calls_that_tool_and_streams_like_openai(client):
    stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, ADD], stream=True,
                                            tool_choice={"type": "function", "function": {"name": "add"}},
                                            parallel_tool_calls=False, max_completion_tokens=100, seed=1)
    calls, finish = {}, None
    for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                entry["name"] += tc.function.name or ""
                entry["arguments"] += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and [c["name"] for c in calls.values()] == ["add"]
    jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS["add"])


def test_regex_and_choices_extensions(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=30, temperature=1.0,
                                       extra_body={"regex": r"[A-Z][a-z]{2,6} [0-9]{2}"})
    assert re.fullmatch(r"[A-Z][a-z]{2,6} [0-9]{2}", r.choices[0].message.content)
    r = client.completions.create(model=MODEL, prompt="Sentiment:", max_tokens=10, temperature=1.0,
                                  extra_body={"choices": ["good", "bad"]})
    assert r.choices[0].text in ("good", "bad")


def test_unenforceable_schema_is_a_400_naming_the_keyword(client):
    import openai
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format=fmt)
    assert "not" in (err.value.body.get("param") or "") + err.value.body["message"]
