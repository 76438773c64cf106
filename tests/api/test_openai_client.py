"""The official OpenAI Python client, with strict response validation, against a live server on the
tiny CPU engine. Every body and stream chunk the client receives is also checked, from the raw
bytes, against OpenAI's OpenAPI description (tests/api/openapi.py)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from gateway.config import ServeConfig
from tests.api.openapi import check_response

MODEL = "tiny-qwen3"
ASK = [{"role": "user", "content": "Tell me something about radix trees."}]
GREEDY = {"temperature": 0}


class Recorder:
    """An httpx response hook: reads each response and validates it before the client parses it.
    Failures are kept, not raised, since the client would turn them into a connection error."""

    def __init__(self) -> None:
        self.chunks: list[list] = []           # per response: the body, or the stream's chunks
        self.failures: list[AssertionError] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        try:
            self.chunks.append(check_response(response))
        except AssertionError as err:
            self.failures.append(err)


@pytest.fixture
def client_for() -> Iterator[Callable[..., openai.OpenAI]]:
    """`client_for(base_url, api_key="sk-test", strict=True)`: an OpenAI client whose every response is
    validated; at teardown, no validation failed and at least one response was seen."""
    recorder, clients = Recorder(), []

    def make(base: str, api_key: str = "sk-test", strict: bool = True) -> openai.OpenAI:
        http = httpx.Client(event_hooks={"response": [recorder]}, timeout=60)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=api_key, max_retries=0, http_client=http,
                               _strict_response_validation=strict)
        clients.append(client)
        return client

    make.recorder = recorder
    yield make
    for c in clients:
        c.close()
    assert not recorder.failures, "\n\n".join(map(str, recorder.failures))
    assert recorder.chunks, "no response was validated"


@pytest.fixture
def client(live_server, tiny_engine, client_for) -> openai.OpenAI:
    return client_for(live_server(tiny_engine))


def greedy_text(client: openai.OpenAI, tokens: int = 16) -> str:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=tokens,
                                       extra_body={"ignore_eos": True}, **GREEDY)
    return r.choices[0].message.content


# ----- chat -----------------------------------------------------------------------------------

def test_chat_plain(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=8, **GREEDY)
    assert r.object == "chat.completion" and r.model == MODEL and r.id
    [choice] = r.choices
    assert choice.index == 0 and choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    if choice.finish_reason == "length":
        assert u.completion_tokens == 8


def test_chat_stream_with_usage_matches_the_whole_response(client):
    expected = greedy_text(client)
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=16, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}, **GREEDY)
    chunks = list(stream)
    *body, last = chunks
    assert last.choices == [] and last.usage.completion_tokens == 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + 16
    assert all(c.usage is None for c in body), "only the last chunk carries usage"
    assert body[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in body) == expected
    finishes = [c.choices[0].finish_reason for c in body]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=4, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_chat_n3_gives_three_choices_and_summed_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, n=3, max_completion_tokens=6, seed=7,
                                       temperature=1.0, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 18
    stream = client.chat.completions.create(model=MODEL, messages=ASK, n=3, max_completion_tokens=6, seed=7,
                                            temperature=1.0, stream=True, extra_body={"ignore_eos": True})
    texts = ["", "", ""]
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in r.choices], "the same seed gives the same three samples"


def test_chat_stop_cuts_before_the_stop_string(client):
    full = greedy_text(client, 24)
    stop = full[len(full) // 2: len(full) // 2 + 2]
    assert stop.strip(), f"greedy output too short or blank to pick a stop from: {full!r}"
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=24, stop=[stop, "\x00never"],
                                       extra_body={"ignore_eos": True}, **GREEDY)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:full.index(stop)]


def test_chat_logprobs_and_top_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=8, logprobs=True,
                                       top_logprobs=3, extra_body={"ignore_eos": True}, **GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 8
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert math.isclose(entry.logprob, tops[0], abs_tol=1e-4), "greedy picks the most likely token"
        assert entry.token == entry.top_logprobs[0].token
    # OpenAI's `bytes` are each token's own UTF-8 bytes, so they rebuild the text even where a
    # character spans tokens.
    assert bytes(b for e in content for b in e.bytes).decode("utf-8") == r.choices[0].message.content


def test_chat_max_completion_tokens_and_legacy_max_tokens(client):
    for limit in ({"max_completion_tokens": 3}, {"max_tokens": 3}):
        r = client.chat.completions.create(model=MODEL, messages=ASK, extra_body={"ignore_eos": True}, **limit, **GREEDY)
        assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


# ----- completions ----------------------------------------------------------------------------

def test_completion_plain_text_and_token_prompts(client):
    r = client.completions.create(model=MODEL, prompt="The radix tree", max_tokens=5, extra_body={"ignore_eos": True},
                                  **GREEDY)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert isinstance(r.choices[0].text, str) and r.usage.completion_tokens == 5
    by_ids = client.completions.create(model=MODEL, prompt=[[1, 2, 3, 4], [5, 6, 7]], max_tokens=2,
                                       extra_body={"ignore_eos": True}, **GREEDY)
    assert [c.index for c in by_ids.choices] == [0, 1]
    assert by_ids.usage.prompt_tokens == 7 and by_ids.usage.completion_tokens == 4


def test_completion_stream_matches_the_whole_response(client_for, live_server, tiny_engine):
    # OpenAI streams completions with finish_reason null until a choice's last chunk; the client's
    # strict validation (like the spec) forbids that null, so this one stream is read unstrictly.
    # The raw chunks are still validated, with only that null allowed.
    base = live_server(tiny_engine)
    args = dict(model=MODEL, prompt="The radix tree", max_tokens=6, extra_body={"ignore_eos": True}, **GREEDY)
    whole = client_for(base).completions.create(**args)
    chunks = list(client_for(base, strict=False).completions.create(
        **args, stream=True, stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage.completion_tokens == 6
    assert "".join(c.choices[0].text for c in body) == whole.choices[0].text
    assert body[-1].choices[0].finish_reason == "length"


def test_completion_integer_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="The radix tree", max_tokens=5, logprobs=2,
                                  extra_body={"ignore_eos": True}, **GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert "".join(lp.tokens) == r.choices[0].text


def test_completion_echo_is_honoured_or_refused(client):
    prompt = "The radix tree"
    try:
        r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=3, echo=True, **GREEDY)
    except openai.BadRequestError as err:
        assert err.body["param"] == "echo"
        return
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=3, **GREEDY)
    assert r.choices[0].text == prompt + plain.choices[0].text


# ----- models ---------------------------------------------------------------------------------

def test_models_list_and_retrieve(client):
    [card] = client.models.list().data
    assert card.id == MODEL and card.object == "model"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


# ----- errors ---------------------------------------------------------------------------------

def test_bad_parameter_is_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, temperature=5)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "hi"}])
    assert err.value.body["param"].startswith("messages")


def test_context_length_exceeded_is_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "radix " * 3000}])
    assert err.value.code == "context_length_exceeded" and err.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=100_000)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="radix " * 3000, stream=True)
    assert err.value.code == "context_length_exceeded" and err.value.body["param"] == "prompt"


def test_wrong_api_key_is_401(live_server, tiny_engine, client_for):
    base = live_server(tiny_engine, ServeConfig(api_keys=("sk-right",)))
    with pytest.raises(openai.AuthenticationError) as err:
        client_for(base, api_key="sk-wrong").chat.completions.create(model=MODEL, messages=ASK, max_tokens=2)
    assert err.value.code == "invalid_api_key"
    assert client_for(base, api_key="sk-right").models.list().data[0].id == MODEL


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=ASK)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-9", prompt="hi")


def test_body_over_the_limit_is_413(live_server, tiny_engine, client_for):
    client = client_for(live_server(tiny_engine, ServeConfig(max_body_bytes=4096)))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 5000}])
    assert err.value.status_code == 413
    assert client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2).choices


def test_rate_limit_is_429_with_retry_after(live_server, tiny_engine, client_for):
    client = client_for(live_server(tiny_engine, ServeConfig(requests_per_minute=1)))
    client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2)
    assert int(err.value.response.headers["retry-after"]) >= 1
