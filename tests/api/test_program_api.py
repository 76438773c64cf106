"""The `program` extension through the official client (extra_body): on the tiny CPU engine one
request fills the turn, fields come back by name, gens keep their stop / max_tokens / regex, select
picks a choice and every step after the first finds the prefix in the radix cache; invalid programs
are clean 400s naming the bad field."""
from __future__ import annotations

import re
import uuid

import openai
import pytest

from tests.api.test_openai_client import MODEL, client, client_for  # noqa: F401 (fixtures)

ASK = [{"role": "user", "content": "Describe a character."}]
MOODS = ["happy", "sad", "angry"]
PERSON = [{"text": "Name: "}, {"gen": "name", "max_tokens": 6}, {"text": "\nAge: "},
          {"gen": "age", "regex": "[1-9][0-9]?", "max_tokens": 3}, {"text": "\nMood: "},
          {"select": "mood", "choices": MOODS}, {"text": "."}]


def ask(client, program, **kw):
    extra = {"program": program, "cache_salt": uuid.uuid4().hex}       # a fresh cache namespace per call
    return client.chat.completions.create(model=MODEL, messages=ASK, temperature=0,
                                          extra_body=extra | kw.pop("extra", {}), **kw)


def turn(program: list[dict], fields: dict) -> str:
    return "".join(seg["text"] if "text" in seg else fields[seg.get("gen") or seg.get("select")] for seg in program)


def test_a_program_fills_the_turn_in_one_request(client, tiny_engine):
    r = ask(client, PERSON)
    fields = r.model_extra["program"]["fields"]
    assert set(fields) == {"name", "age", "mood"} and "upstream_calls" not in r.model_extra["program"]
    assert r.choices[0].message.content == turn(PERSON, fields) and r.choices[0].finish_reason == "stop"
    assert re.fullmatch("[1-9][0-9]?", fields["age"]) and fields["mood"] in MOODS
    # The prefix is computed once: each step prefills only the text appended since the last one
    # (plus, per gen, its last token, which was sampled but never fed back).
    tok = tiny_engine.tokenizer
    first = len(tok.encode_chat(ASK)) + len(tok.encode("Name: "))
    texts = sum(len(tok.encode(seg["text"])) for seg in PERSON[2:-1] if "text" in seg)
    usage = r.usage
    assert usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens <= first + texts + 3
    assert usage.prompt_tokens_details.cached_tokens >= 2 * first


def test_gens_keep_their_stop_and_max_tokens(client):
    free = ask(client, [{"text": "Say: "}, {"gen": "said", "max_tokens": 12}])
    said = free.model_extra["program"]["fields"]["said"]
    assert free.usage.completion_tokens <= 12
    stop = next(said[i:i + 2] for i in range(1, len(said) - 1) if said[i:i + 2].strip())
    cut = ask(client, [{"text": "Say: "}, {"gen": "said", "max_tokens": 12, "stop": [stop]}, {"text": "!"}])
    assert cut.model_extra["program"]["fields"]["said"] == said[:said.index(stop)]
    assert cut.choices[0].message.content == "Say: " + said[:said.index(stop)] + "!"


def test_a_program_streams_the_same_turn(client):
    whole = ask(client, PERSON)
    chunks = list(ask(client, PERSON, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].model_extra["program"] == whole.model_extra["program"]


def test_an_unenforceable_constraint_names_its_segment(client):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, [{"text": "x"}, {"gen": "a", "regex": "a{1000000}"}])
    assert err.value.body["param"].startswith("program[1].regex")


@pytest.mark.parametrize("program, param", [
    ([], "program"),
    ("Name: {name}", "program"),
    ([{"text": 1}], "program[0].text"),
    ([{"text": "a", "gen": "b"}], "program[0]"),
    ([{"gen": ""}], "program[0].gen"),
    ([{"text": "a"}, {"gen": "a", "max_tokens": 0}], "program[1].max_tokens"),
    ([{"gen": "a", "stop": ["", "x"]}], "program[0].stop"),
    ([{"gen": "a", "temperature": 3}], "program[0].temperature"),
    ([{"gen": "a", "regex": "x", "choices": ["y"]}], "program[0].choices"),
    ([{"gen": "a", "bogus": 1}], "program[0].bogus"),
    ([{"gen": "a"}, {"select": "a", "choices": ["x"]}], "program[1].select"),
    ([{"select": "s"}], "program[0].choices"),
    ([{"select": "s", "choices": ["x", "x"]}], "program[0].choices"),
])
def test_invalid_programs_are_400s_naming_the_field(live_server, instant_backend, client_for, program, param):
    c = client_for(live_server(instant_backend))
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="instant", messages=ASK, extra_body={"program": program})
    assert err.value.body["param"] == param and err.value.status_code == 400


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"), ({"stop": "x"}, "stop"), ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
])
def test_a_program_refuses_request_fields_it_cannot_honour(live_server, instant_backend, client_for, extra, param):
    c = client_for(live_server(instant_backend))
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model="instant", messages=ASK, extra_body={"program": [{"gen": "a"}], **extra})
    assert err.value.body["param"] == param
