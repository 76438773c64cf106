"""API speculative execution of programs: reading the filled form back, one upstream call when the
upstream follows it, the right fallback calls when it does not, and billed tokens over all calls."""
from __future__ import annotations

import asyncio

import pytest

from gateway.api.program import parse_program
from gateway.protocol import GenerateRequest, InvalidRequest, SamplingParams, UpstreamError, Usage
from gateway.spec_api.speculative import pick_choice, run_program, speculative_program
from gateway.spec_api.turn_form import FORM_BEGIN, form_instruction, read_form
from loadtest.program_upstream import FormFiller

ASK = [{"role": "user", "content": "Describe a character."}]
PROGRAM = parse_program([
    {"text": "Name: "}, {"gen": "name", "stop": "\n", "max_tokens": 16},
    {"text": "\nAge: "}, {"gen": "age", "regex": "[0-9]+", "max_tokens": 4},
    {"text": "\nClass: "}, {"select": "class", "choices": ["mage", "warrior", "war"]},
    {"text": "\nMotto: "}, {"gen": "motto", "max_tokens": 32, "stop": ["\n"]},
    {"text": "\n"}])
VALUES = {"name": "Ada Lovelace", "age": "36", "class": "warrior", "motto": "Numbers all the way down."}
TURN = "Name: Ada Lovelace\nAge: 36\nClass: warrior\nMotto: Numbers all the way down.\n"
FIELDS = 4


def run(filler: FormFiller, program=PROGRAM, **kw):
    return asyncio.run(run_program(filler.complete, ASK, program, **kw))


def test_the_form_shows_every_literal_and_placeholder():
    text = form_instruction(PROGRAM)
    assert f"{FORM_BEGIN}\n{TURN.replace('Ada Lovelace', '[[name]]').replace('36', '[[age]]')}" \
        .replace("warrior", "[[class]]").replace("Numbers all the way down.", "[[motto]]") in text
    assert '- [[class]]: exactly one of "mage", "warrior", "war"' in text


def test_a_reply_that_follows_the_form_is_read_whole():
    assert "".join(read_form(PROGRAM, TURN)) == TURN
    assert read_form(PROGRAM, TURN.strip()) == read_form(PROGRAM, TURN)       # whitespace at the ends
    assert read_form(PROGRAM, "\n" + TURN + "Anything after the form.")[:-1] == read_form(PROGRAM, TURN)[:-1]


@pytest.mark.parametrize("reply, kept", [
    ("Name: Ada Lovelace36\nClass: warrior\nMotto: x\n", 1),       # "\nAge: " dropped: name is not confirmed
    ("Name: Ada Lovelace\nAge: thirty-six\nClass: warrior\n", 3),  # age breaks its regex
    ("Name: Ada Lovelace\nAge: 36\nClass: rogue\nMotto: x\n", 5),  # not one of the choices
    ("Name: Ada Lovelace\nAge: 36\nClass: warriorMotto: x\n", 5),  # "\nMotto: " dropped after a select
    ("Name: Ada Lovelace\nAge: 3600000000000000000000\n", 3),       # over max_tokens (estimated)
    ("Hello! Name: Ada", 0),
])
def test_a_reply_that_leaves_the_form_keeps_only_confirmed_segments(reply, kept):
    assert len(read_form(PROGRAM, reply)) == kept


def test_a_select_takes_the_longest_choice_the_rest_agrees_with():
    program = parse_program([{"select": "c", "choices": ["war", "warrior"]}, {"text": "!"}])
    assert read_form(program, "warrior!") == ["warrior", "!"]
    assert read_form(program, "war!") == ["war", "!"]


def test_following_upstream_costs_one_call():
    filler = FormFiller(VALUES)
    r = run(filler)
    assert r.fields == VALUES and r.text == TURN and r.upstream_calls == 1 == filler.calls
    assert r.usage.prompt_tokens == filler.prompt_tokens and r.usage.completion_tokens == filler.completion_tokens


def test_one_call_per_field_without_speculation():
    filler = FormFiller(VALUES)
    r = run(filler, speculative=False)
    assert r.fields == VALUES and r.text == TURN and r.upstream_calls == FIELDS == filler.calls
    # fallback calls carry the turn so far as the assistant's partial reply
    assert filler.bodies[-1]["messages"][-2] == {"role": "assistant", "content": TURN.split("Numbers")[0]}


@pytest.mark.parametrize("seed", range(8))
def test_a_dropped_literal_falls_back_to_one_call_per_unconfirmed_field(seed):
    filler = FormFiller(VALUES, drop_rate=1.0, seed=seed)
    r = run(filler)
    assert r.fields == VALUES and r.text == TURN and filler.dropped == 1
    fallbacks = FIELDS - sum(1 for seg in PROGRAM[:r.speculated] if "text" not in seg)
    assert r.upstream_calls == 1 + fallbacks == filler.calls
    assert fallbacks >= 1 or filler.last_dropped == "\n"      # whitespace ending a reply may go missing


def test_a_select_fallback_is_an_enum_constrained_answer():
    filler = FormFiller(VALUES)
    program = parse_program([{"text": "Class: "}, {"select": "class", "choices": ["mage", "warrior"]}])
    r = run(filler, program, speculative=False)
    assert r.fields == {"class": "warrior"} and r.upstream_calls == 1
    assert filler.bodies[0]["response_format"]["json_schema"]["schema"]["properties"]["choice"]["enum"] == \
        ["mage", "warrior"]
    asked = run(FormFiller(VALUES), program, speculative=False, enum_select=False)
    assert asked.fields == {"class": "warrior"} and asked.upstream_calls == 1


def test_pick_choice_reads_plain_answers():
    assert pick_choice(' "warrior".', ["mage", "warrior"]) == "warrior"
    assert pick_choice("I pick the mage, not the warrior", ["mage", "warrior"]) == "mage"
    assert pick_choice("none", ["mage", "warrior"]) is None


class Flaky(FormFiller):
    """Answers a field with `bad` the first `times` times it is asked alone."""

    def __init__(self, values, bad: str, times: int):
        super().__init__(values)
        self.bad, self.times = bad, times

    def reply(self, messages, body):
        text = super().reply(messages, body)
        if self.times and FORM_BEGIN not in messages[-1]["content"]:
            self.times -= 1
            return self.bad
        return text


def test_an_invalid_field_is_asked_again_with_the_error():
    program = parse_program([{"text": "Age: "}, {"gen": "age", "regex": "[0-9]+"}])
    filler = Flaky(VALUES, "thirty-six", times=1)
    r = run(filler, program, speculative=False)
    assert r.fields == {"age": "36"} and r.upstream_calls == 2
    assert "does not match" in filler.bodies[-1]["messages"][-1]["content"]
    with pytest.raises(UpstreamError, match="stayed invalid"):
        run(Flaky(VALUES, "thirty-six", times=5), program, speculative=False, retries=2)


def test_a_bad_regex_is_refused_naming_its_segment():
    with pytest.raises(InvalidRequest) as err:
        run(FormFiller(VALUES), parse_program([{"gen": "x", "regex": "(["}]))
    assert err.value.param == "program[0].regex"


def test_a_backend_runs_a_program_through_its_own_generate():
    """speculative_program drives any Backend's generate: here one that answers from the filler."""
    from gateway.protocol import Delta
    filler = FormFiller(VALUES)
    seen: list[GenerateRequest] = []

    async def generate(sub: GenerateRequest):
        seen.append(sub)
        text, usage = await filler.complete(sub.messages, max_tokens=sub.params.max_tokens, stop=sub.params.stop,
                                            constraint=sub.constraint)
        yield Delta(0, text, finish_reason="stop", usage=usage)

    req = GenerateRequest("r", SamplingParams(temperature=0.7, seed=3), messages=ASK, program=PROGRAM,
                          namespace="k", model="m")

    async def collect():
        return [d async for d in speculative_program(generate, req)]
    deltas = asyncio.run(collect())
    assert len(deltas) == 1 and deltas[0].text == TURN and deltas[0].fields == VALUES
    assert deltas[0].upstream_calls == 1 and deltas[0].finish_reason == "stop"
    assert isinstance(deltas[0].usage, Usage) and deltas[0].usage.prompt_tokens == filler.prompt_tokens
    assert seen[0].model == "m" and seen[0].namespace == "k" and seen[0].params.seed == 3
    assert seen[0].program is None and seen[0].params.temperature == 0.0      # the select asks for greedy


@pytest.mark.parametrize("drop_rate, seed, calls", [(0.0, 0, 1), (1.0, 7, 5)])
def test_through_the_gateway_to_a_fake_upstream(drop_rate, seed, calls):
    """The official client -> radixgate (UpstreamBackend) -> a fake upstream on loopback."""
    import openai

    from gateway.api.app import create_app
    from gateway.spec_api.upstream import UpstreamBackend
    from gateway.spec_api.upstream_config import UpstreamConfig
    from loadtest.fake_upstream import FAKE_MODEL, FakeUpstream
    from loadtest.servers import serve

    filler = FormFiller(VALUES, drop_rate=drop_rate, seed=seed)
    fake = FakeUpstream(reply=filler.fake_reply)
    with serve(fake.app) as upstream_url:
        backend = UpstreamBackend(UpstreamConfig("fake", f"{upstream_url}/v1", {"gpt-test": FAKE_MODEL}))
        with serve(create_app(backend)) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test",
                                                                max_retries=0) as client:
            r = client.chat.completions.create(model="gpt-test", messages=ASK, extra_body={"program": PROGRAM})
    assert r.choices[0].message.content == TURN and r.choices[0].finish_reason == "stop"
    assert r.model_extra["program"] == {"fields": VALUES, "upstream_calls": calls} and fake.calls == calls
    assert r.usage.prompt_tokens == filler.prompt_tokens and r.usage.completion_tokens == filler.completion_tokens
