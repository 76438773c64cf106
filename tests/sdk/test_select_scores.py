"""`select` on radixgate scores each choice by the log-probabilities of its own token ids after the
exact prefix ids, and the scores agree with the same model loaded by HF transformers; other
normalisations (sum, first token) likewise; choices of several tokens and choices whose text would
merge with the prefix's last token are scored as their own ids. A plain OpenAI-compatible
endpoint's select by logprobs returns first-token scores; a bad `normalize` is a clean 400."""
from __future__ import annotations

import math

import openai
import pytest

from loadtest.fake_upstream import Reply
from sdk import OpenAICompatible, RadixGate, assistant, function, select, system, user
from tests.sdk.conftest import Answers, reference

ASK = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Is a radix tree a trie?"}]
CHOICES = ["yes", "no", "it is a compressed trie", "maybe!"]


@function
def three_selects(s):
    s += system(ASK[0]["content"])
    s += user(ASK[1]["content"])
    s += assistant("Answer: " + select("mean", CHOICES) + "\nAgain: " + select("sum", CHOICES, normalize="sum")
                   + "\nOnce more " + select("first", CHOICES, normalize="first_token"))


def test_select_agrees_with_the_models_logits(local, tiny_engine, hf_model):
    state = three_selects.run(backend=RadixGate(local)).check()
    assert state.usage.requests == 1                       # the turn's three selects: one request
    tok = tiny_engine.tokenizer
    prefix = tok.encode_chat(ASK)
    how = {"mean": lambda lp: sum(lp) / len(lp), "sum": sum, "first": lambda lp: lp[0]}
    for name, literal in (("mean", "Answer: "), ("sum", "\nAgain: "), ("first", "\nOnce more ")):
        prefix += tok.encode(literal)                       # "Once more " ends in a space the choice does not merge into
        expected = [how[name](reference(hf_model, prefix, tok.encode(c))) for c in CHOICES]
        assert state.scores[name] == pytest.approx(expected, abs=2e-4), name
        best = CHOICES[max(range(len(CHOICES)), key=lambda i: expected[i])]
        assert state[name] == best
        prefix += tok.encode(best)
    assert any(len(tok.encode(c)) > 1 for c in CHOICES)


def test_a_plain_endpoints_select_by_logprobs_gives_first_token_scores(fake_model):
    # The fake's top logprobs at the first token are t0, t1, ... at -1, -2, ...
    upstream, _, fake = fake_model(Answers({"other": "b"}))
    backend = OpenAICompatible(upstream, select="logprobs")

    @function
    def pick(s):
        s += user("Pick one.")
        s += assistant(select("pick", ["t3x", "t1", "u"]) + " and " + select("other", ["a", "b"]))

    state = pick.run(backend=backend).check()
    assert state["pick"] == "t1" and state.scores["pick"] == [-4.0, -2.0, -math.inf]
    assert fake.bodies[0]["top_logprobs"] == 20 and fake.bodies[0]["max_tokens"] == 1
    # No top token begins either choice: the select falls back to an enum-constrained answer.
    assert "other" not in state.scores and state["other"] == "b"
    assert fake.bodies[-1]["response_format"]["json_schema"]["schema"]["properties"]["choice"]["enum"] == ["a", "b"]


def test_a_bad_normalize_is_a_400(local):
    client = openai.OpenAI(base_url=f"{local}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny-qwen3", messages=ASK, extra_body={
            "program": [{"select": "a", "choices": ["x", "y"], "normalize": "max"}]})
    assert err.value.body["param"] == "program[0].normalize"


def test_an_endpoint_without_structured_outputs_is_asked_by_instruction(fake_model):
    upstream, _, fake = fake_model(Answers({"pick": "blue"}))
    answer = fake.reply

    def no_response_format(body):
        if "response_format" in body:
            return Reply(status=400, message="response_format is not supported", param="response_format")
        return answer(body)

    fake.reply = no_response_format

    @function
    def pick(s):
        s += user("Pick a colour.")
        s += assistant("I pick " + select("pick", ["red", "blue"]))

    state = pick.run(backend=OpenAICompatible(upstream)).check()
    assert state["pick"] == "blue" and [("response_format" in b) for b in fake.bodies] == [True, False]
