"""Hypothesis-generated request bodies against both POST routes, on a server over InstantBackend.

Bodies mix valid and broken fields: wrong types, unknown fields, huge and negative numbers,
non-finite floats, malformed messages and prompts, and bytes that are not JSON at all. Whatever
arrives, the server answers within the timeout, never with a 5xx, every refusal is an OpenAI error
envelope and every success a valid response or stream; afterwards it still serves normally.
"""
from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.servers import INSTANT_MODEL
from tests.api.openapi import check_response

CHAT_EXAMPLES, COMPLETION_EXAMPLES, RAW_EXAMPLES = 1000, 800, 400
FUZZ = settings(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# ----- bodies: a valid request, then up to three mutations ----------------------------------

HUGE = st.integers(-(2 ** 70), 2 ** 70)
JUNK = st.one_of(st.none(), st.booleans(), HUGE, st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
TEXT = st.text(max_size=30)

SAMPLING = {
    "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "top_k": st.integers(-1, 50), "min_p": st.floats(0, 1),
    "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.01, 10), "seed": st.integers(-(2 ** 63), 2 ** 64 - 1),
    "stop": st.one_of(TEXT, st.lists(TEXT, max_size=4)), "n": st.integers(1, 4), "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "logit_bias": st.dictionaries(st.integers(0, 150_000).map(str), st.floats(-100, 100), max_size=3),
    "stop_token_ids": st.lists(st.integers(0, 150_000), max_size=3), "ignore_eos": st.booleans(),
    "user": TEXT, "cache_salt": TEXT, "skip_special_tokens": st.booleans(),
}
ROLES = ["system", "developer", "user", "assistant"]
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": st.one_of(TEXT, st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=2))})
BAD_MESSAGE = st.one_of(
    JUNK,
    st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["function", "wizard", "", "USER"]), JUNK), "content": TEXT}),
    st.fixed_dictionaries({"role": st.sampled_from(ROLES + ["tool"])}, optional={"content": JUNK, "tool_call_id": JUNK,
                                                                               "name": JUNK, "tool_calls": JUNK}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(st.one_of(JUNK, st.fixed_dictionaries(
        {"type": st.sampled_from(["image_url", "input_audio", "file", "text"]), "text": JUNK})), min_size=1, max_size=2)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none(), "tool_calls": st.lists(
        st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({},
            optional={"name": st.one_of(TEXT, JUNK), "arguments": st.one_of(TEXT, JUNK)})}), max_size=2)}),
)

CHAT_FIELDS = SAMPLING | {
    "model": st.just(INSTANT_MODEL), "messages": st.lists(MESSAGE, min_size=1, max_size=3),
    "max_tokens": st.integers(1, 8), "max_completion_tokens": st.integers(1, 8), "logprobs": st.booleans(),
    "top_logprobs": st.integers(0, 20), "response_format": st.just({"type": "text"}),
    "tool_choice": st.sampled_from(["none", "auto"]), "parallel_tool_calls": st.booleans(), "store": st.just(False),
    "modalities": st.just(["text"]), "service_tier": st.sampled_from(["auto", "default"]),
    "chat_template_kwargs": st.dictionaries(st.sampled_from(["enable_thinking", "x"]), st.booleans(), max_size=1),
}
# Valid shapes of fields OpenAI has and this server may refuse (400) rather than serve.
UNKNOWN_MODEL = st.sampled_from(["gpt-4o", "", INSTANT_MODEL.upper(), INSTANT_MODEL + " "])
CHAT_EXTRAS = {
    "model": UNKNOWN_MODEL,
    "response_format": st.one_of(st.just({"type": "json_object"}), st.fixed_dictionaries(
        {"type": st.sampled_from(["json_schema", "xml"])}, optional={"json_schema": JUNK})),
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": TEXT, "parameters": st.just({"type": "object"})})}), max_size=2),
    "tool_choice": st.just("required"), "store": st.just(True), "modalities": st.just(["text", "audio"]),
    "service_tier": st.just("flex"), "reasoning_effort": st.just("low"), "metadata": st.just({"a": "b"}),
    "functions": st.just([{"name": "f"}]), "audio": st.just({"voice": "alloy", "format": "wav"}),
}
COMPLETION_FIELDS = SAMPLING | {
    "model": st.just(INSTANT_MODEL),
    "prompt": st.one_of(TEXT.filter(str.strip), st.lists(TEXT.filter(str.strip), min_size=1, max_size=3),
                        st.lists(st.integers(0, 150_000), min_size=1, max_size=5),
                        st.lists(st.lists(st.integers(0, 150_000), min_size=1, max_size=5), min_size=1, max_size=3)),
    "max_tokens": st.integers(0, 8), "logprobs": st.integers(0, 5), "echo": st.booleans(),
}
COMPLETION_EXTRAS = {"model": UNKNOWN_MODEL, "best_of": st.integers(1, 4), "suffix": TEXT, "prompt": st.lists(st.one_of(TEXT, st.integers()),
                                                                                   min_size=2, max_size=3)}


def request_bodies(fields: dict, always: tuple[str, ...], extras: dict) -> st.SearchStrategy[dict]:
    """A valid body (the `always` fields and a few others), then up to three mutations: a field set
    to a wrong type or out-of-range value, one of `always` dropped, an unknown field, a valid-looking
    field this server may not support, or (chat) a broken message."""
    optional = sorted(set(fields) - set(always))
    names = sorted(fields)
    mutations = [
        st.tuples(st.just("set"), st.sampled_from(names), JUNK),
        st.sampled_from(sorted(extras)).flatmap(lambda k: st.tuples(st.just("set"), st.just(k), extras[k])),
        st.tuples(st.just("drop"), st.sampled_from(always), st.none()),
        st.tuples(st.just("set"), st.text(min_size=1, max_size=10), JUNK),
    ]
    if "messages" in fields:
        mutations.append(st.tuples(st.just("message"), st.integers(0, 2), BAD_MESSAGE))
    mutation = st.one_of(mutations)

    def build(parts) -> dict:
        body, mutations = parts
        for kind, key, value in mutations:
            if kind == "set":
                body[key] = value
            elif kind == "drop":
                body.pop(key, None)
            elif isinstance(body.get("messages"), list) and body["messages"]:     # not when set to []
                body["messages"][key % len(body["messages"])] = value
        return body
    chosen = st.lists(st.sampled_from(optional), max_size=5, unique=True)
    valid = chosen.flatmap(lambda ks: st.fixed_dictionaries({k: fields[k] for k in (*always, *ks)}))
    return st.tuples(valid, st.lists(mutation, max_size=3)).map(build)


CHAT = request_bodies(CHAT_FIELDS, ("model", "messages", "stream"), CHAT_EXTRAS)
COMPLETION = request_bodies(COMPLETION_FIELDS, ("model", "prompt", "stream"), COMPLETION_EXTRAS)

OK_CHAT = b'{"model": "instant", "messages": [{"role": "user", "content": "hi"}], '
PATHOLOGICAL = st.one_of(                  # JSON that json.loads refuses in ways other than a syntax error
    st.integers(4000, 6000).map(lambda k: OK_CHAT + b'"max_tokens": ' + b"9" * k + b"}"),    # > 4300 digits
    st.integers(2, 200_000).map(lambda d: OK_CHAT + b'"stop": ' + b"[" * d + b"]" * d + b"}"),  # too deep
    st.integers(2, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.sampled_from([b"1e999", b"-1e999", b"NaN", b"-Infinity"]).map(lambda x: OK_CHAT + b'"temperature": ' + x + b"}"),
)
RAW = st.one_of(
    PATHOLOGICAL,
    st.binary(max_size=120),                                                   # not JSON at all
    st.builds(lambda b, cut: json.dumps(b).encode()[:cut], CHAT, st.integers(0, 200)),   # truncated
    st.builds(lambda b, at, junk: (lambda s: s[:at] + junk + s[at:])(json.dumps(b).encode()),
              CHAT, st.integers(0, 200), st.sampled_from([b"\xff", b"\xc3", b"\x00", b"}", b",", b"NaN"])),
    st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=10), st.integers(), st.none()).map(
        lambda v: json.dumps(v).encode()),                                     # JSON, but not an object
)

# ----- the server and the checks --------------------------------------------------------------


@pytest.fixture
def post(live_server, instant_backend) -> Callable[[str, bytes], httpx.Response]:
    base = live_server(instant_backend)
    client = httpx.Client(base_url=base, timeout=10, headers={"content-type": "application/json"})
    sent = []

    def send(path: str, content: bytes) -> httpx.Response:
        response = client.post(path, content=content)
        sent.append(response)
        assert response.status_code < 500, f"{response.status_code} for {content[:500]!r}: {response.text[:500]}"
        check_response(response)
        return response

    send.sent = sent
    yield send
    # The server survived: health, and a plain valid request, still answer.
    assert client.get("/health").status_code == 200
    ok = client.post("/v1/chat/completions", json={"model": INSTANT_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and check_response(ok)[0]["choices"][0]["message"]["content"] == "Hello, world"
    client.close()


def encode(body: dict) -> bytes:
    return json.dumps(body, allow_nan=True).encode()       # NaN and Infinity travel as Python writes them


def test_fuzz_chat_completions(post):
    @settings(FUZZ, max_examples=CHAT_EXAMPLES)
    @given(CHAT)
    def run(body):
        post("/v1/chat/completions", encode(body))
    run()
    statuses = {r.status_code for r in post.sent}
    assert len(post.sent) >= CHAT_EXAMPLES and {200, 400} <= statuses, statuses


def test_fuzz_completions(post):
    @settings(FUZZ, max_examples=COMPLETION_EXAMPLES)
    @given(COMPLETION)
    def run(body):
        post("/v1/completions", encode(body))
    run()
    statuses = {r.status_code for r in post.sent}
    assert len(post.sent) >= COMPLETION_EXAMPLES and {200, 400} <= statuses, statuses


def test_fuzz_bytes_that_are_not_a_request(post):
    @settings(FUZZ, max_examples=RAW_EXAMPLES)
    @given(st.sampled_from(["/v1/chat/completions", "/v1/completions"]), RAW)
    def run(path, content):
        r = post(path, content)
        assert r.status_code == 400 or content.strip().startswith(b"{"), f"{r.status_code} for {content!r}"
    run()


# ----- the same promise with the engine behind: inputs only a real tokenizer or model meets --------

ENGINE_MODEL = "tiny-qwen3"
HI = [{"role": "user", "content": "hi"}]
# name: (route, body, whether serving it is acceptable, or only a 4xx is)
ENGINE_CASES = {
    "lone surrogate in a message": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800 x"}]}, False),
    "lone surrogate in a prompt": ("/v1/completions", {"prompt": "x \udfff"}, False),
    "template kwarg add_generation_prompt": ("/v1/chat/completions",
                                             {"messages": HI, "chat_template_kwargs": {"add_generation_prompt": False}},
                                             True),
    "template kwarg messages": ("/v1/chat/completions", {"messages": HI, "chat_template_kwargs": {"messages": []}}, False),
    "template kwarg tools": ("/v1/chat/completions", {"messages": HI, "chat_template_kwargs": {"tools": 1}}, False),
    "stop_token_ids outside the vocabulary": ("/v1/chat/completions", {"messages": HI, "stop_token_ids": [-1, 10 ** 12]},
                                              False),
    "logit_bias outside the vocabulary": ("/v1/chat/completions", {"messages": HI, "logit_bias": {"999999999": 1}}, False),
    "prompt token ids outside the vocabulary": ("/v1/completions", {"prompt": [10 ** 9]}, False),
}


@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
def test_engine_inputs_it_cannot_serve_are_4xx(live_server, tiny_engine, case):
    path, body, may_serve = ENGINE_CASES[case]
    with httpx.Client(base_url=live_server(tiny_engine), timeout=60) as client:
        r = client.post(path, content=encode({"model": ENGINE_MODEL, "max_tokens": 2, **body}),
                        headers={"content-type": "application/json"})
        check_response(r)
        assert 400 <= r.status_code < 500 or (may_serve and r.status_code == 200), f"{r.status_code}: {r.text[:300]}"
