"""radixgate in front of one fake upstream, driven by the official client in strict mode: what the
client sees is what the upstream said (text, chunking, logprobs, tool calls, usage), what it asked
goes upstream as the same fields, and what the upstream cannot take is refused naming the field."""
from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway.config import ServeConfig
from gateway.spec_api.upstream_config import UpstreamConfig, load_pool, pool_from_flags
from loadtest.fake_upstream import FakeUpstream, Reply
from tests.spec_api.conftest import MODEL, chat

ANSWER = "The quick brown fox jumps"


def test_chat_passes_text_usage_and_maps_the_model(one):
    one.fake.reply = lambda body: Reply.text(ANSWER, prompt_tokens=7)
    r = chat(one.client, max_completion_tokens=20)
    assert r.model == MODEL and r.choices[0].message.content == ANSWER and r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 5, 12)
    sent = one.fake.bodies[-1]
    assert sent["model"] == "fake-model" and "stream" not in sent       # taken whole: one non-streamed call
    assert sent["messages"] == [{"role": "user", "content": "hi"}] and sent["max_completion_tokens"] == 20


def test_stream_passes_chunk_by_chunk_with_usage(one):
    one.fake.reply = lambda body: Reply.text(ANSWER, chunk_delay=0.05)
    texts, usage = [], None
    for chunk in chat(one.client, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert texts == list(Reply.text(ANSWER).pieces) and usage.completion_tokens == 5   # one chunk per chunk
    assert one.fake.bodies[-1]["stream"] and one.fake.bodies[-1]["stream_options"] == {"include_usage": True}
    arrivals, start = [], time.perf_counter()                       # (the checked client reads whole bodies)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{one.base}/v1/chat/completions", json=body, timeout=10) as r:
        for line in r.iter_lines():
            if '"content":"' in line.replace(" ", "") and '"content":""' not in line.replace(" ", ""):
                arrivals.append(time.perf_counter() - start)
    assert len(arrivals) == 5 and arrivals[0] < arrivals[-1] - 0.15  # the first did not wait for the last


def test_completions_with_logprobs_and_n(one, proxy):
    r = one.client.completions.create(model=MODEL, prompt="Say hi", n=2, logprobs=2, max_tokens=8)
    assert [c.text for c in r.choices] == ["Hello, world!"] * 2
    lp = r.choices[1].logprobs
    assert lp.tokens == ["Hello", ",", " world", "!"] and lp.token_logprobs == [-0.5] * 4
    assert lp.top_logprobs[0] == {"t0": -1.0, "t1": -2.0}
    sent = one.fake.bodies[-1]
    assert sent["prompt"] == "Say hi" and sent["n"] == 2 and sent["logprobs"] == 2 and sent["max_tokens"] == 8
    texts, tokens = ["", ""], [[], []]
    lenient = proxy.client(one.base, strict=False)          # the SDK's strict types have no null finish_reason
    for chunk in lenient.completions.create(model=MODEL, prompt="Say hi", n=2, logprobs=1, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.text
            tokens[c.index] += c.logprobs.tokens if c.logprobs else []
    assert texts == ["Hello, world!"] * 2 and tokens[1] == ["Hello", ",", " world", "!"]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprobs_pass_through(one, stream):
    r = chat(one.client, logprobs=True, top_logprobs=2, stream=stream)
    content = [e for chunk in r for e in (chunk.choices[0].logprobs.content if chunk.choices and
                                          chunk.choices[0].logprobs else [])] if stream else r.choices[0].logprobs.content
    assert [e.token for e in content] == ["Hello", ",", " world", "!"]
    assert [t.logprob for t in content[0].top_logprobs] == [-1.0, -2.0]


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_calls_are_joined_from_fragments(one):
    args = json.dumps({"city": "Paris"})
    one.fake.reply = lambda body: Reply((), "tool_calls", [{"name": "get_weather", "arguments": args}])
    r = chat(one.client, tools=TOOLS, tool_choice="required")
    [call] = r.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments, r.choices[0].finish_reason) == ("get_weather", args,
                                                                                          "tool_calls")
    assert one.fake.bodies[-1]["tools"] == TOOLS and one.fake.bodies[-1]["tool_choice"] == "required"
    streamed = "".join(c.function.arguments for chunk in chat(one.client, tools=TOOLS, stream=True)
                       for choice in chunk.choices for c in choice.delta.tool_calls or ())
    assert streamed == args


def test_sampling_fields_and_json_formats_go_upstream(one):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat(one.client, temperature=0.3, top_p=0.9, stop=["\n"], seed=5, logit_bias={"42": 3}, presence_penalty=0.5,
         response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    sent = one.fake.bodies[-1]
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (0.3, 0.9, ["\n"], 5)
    assert sent["logit_bias"] == {"42": 3.0} and sent["presence_penalty"] == 0.5
    assert sent["response_format"]["type"] == "json_schema" and sent["response_format"]["json_schema"]["schema"] == schema
    chat(one.client, response_format={"type": "json_object"})
    assert one.fake.bodies[-1]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("extra,param", [({"top_k": 5}, "top_k"), ({"regex": "[a-z]+"}, "regex"),
                                         ({"choices": ["a", "b"]}, "choices")])
def test_extensions_are_refused_for_plain_upstreams(one, extra, param):
    calls = one.fake.calls
    with pytest.raises(openai.BadRequestError) as err:
        chat(one.client, extra_body=extra)
    assert err.value.body["param"] == param and one.fake.calls == calls


def test_extensions_pass_to_radixgate_upstreams(proxy):
    fake, url = proxy.upstream()
    base, _ = proxy.gateway([url], extensions=True)
    chat(proxy.client(base), extra_body={"top_k": 5, "regex": "[a-z]+"})
    sent = fake.bodies[-1]
    assert sent["top_k"] == 5 and sent["regex"] == "[a-z]+" and len(sent["cache_salt"]) == 24
    assert "sk-test" not in json.dumps(sent)                         # the tenant's key stays here


@pytest.mark.parametrize("status,code", [(400, "invalid_value"), (404, "model_not_found"), (422, None)])
def test_upstream_client_errors_come_back_as_they_are_without_retry(one, status, code):
    one.fake.script(Reply(status=status, message="bad thing", param="temperature", code=code))
    with pytest.raises(openai.APIStatusError) as err:
        chat(one.client)
    assert err.value.status_code == status and one.fake.calls == 1
    assert err.value.body == {"message": "bad thing", "type": "invalid_request_error", "param": "temperature",
                              "code": code}


def test_an_upstream_refusing_our_key_is_a_502_not_the_clients_401(proxy):
    bad, bad_url = proxy.upstream()
    _, good_url = proxy.upstream()
    bad.reply = lambda body: Reply(status=401, message="Incorrect API key provided")
    base, _ = proxy.gateway([bad_url])
    with pytest.raises(openai.APIStatusError) as err:
        chat(proxy.client(base))
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_auth"
    base, _ = proxy.gateway([bad_url, good_url])
    for _ in range(4):                                       # wherever it lands first, the good one answers
        assert chat(proxy.client(base)).choices[0].message.content == "Hello, world!"


# ----- configuration ----------------------------------------------------------------------------

def test_config_file_yaml_and_json(tmp_path, monkeypatch):
    (tmp_path / "up.yaml").write_text(
        "upstreams:\n  - name: a\n    base_url: http://127.0.0.1:1/v1\n    api_key_env: UP_KEY\n"
        "    models: {small: big-model}\n    supports_json_schema: false\n    weight: 2\n"
        "  - base_url: http://127.0.0.1:2/v1\n    models: [small]\nrouter: {breaker_failures: 2}\n")
    pool = load_pool(tmp_path / "up.yaml")
    assert [u.name for u in pool.upstreams] == ["a", "upstream1"] and pool.router.breaker_failures == 2
    assert pool.upstreams[0].models == {"small": "big-model"} and pool.upstreams[1].models == {"small": "small"}
    assert not pool.upstreams[0].supports_json_schema and pool.upstreams[0].weight == 2 and pool.served == ["small"]
    (tmp_path / "up.json").write_text(json.dumps({"upstreams": [{"base_url": "http://x/v1", "models": ["m"],
                                                                 "api_key": "sk-secret"}]}))
    with pytest.raises(ValueError, match="api_key_env"):
        load_pool(tmp_path / "up.json")
    (tmp_path / "bad.json").write_text(json.dumps({"upstreams": [{"base_url": "http://x/v1", "models": ["m"],
                                                                  "timout": 3}]}))
    with pytest.raises(ValueError, match="timout"):
        load_pool(tmp_path / "bad.json")


def test_serve_flags_build_the_router_and_the_key_comes_from_the_environment(proxy, monkeypatch):
    from gateway.api.app import create_app
    from gateway.cli import parser, upstream_backend
    from loadtest.servers import serve
    fake, url = proxy.upstream(FakeUpstream(models=("fake-model", "other")))
    monkeypatch.setenv("UP_KEY", "sk-upstream")
    args = parser().parse_args(["serve", "--upstream", url, "--upstream-key-env", "UP_KEY", "--upstream-timeout", "3"])
    cfg = ServeConfig.from_env(upstreams=tuple(args.upstream), upstream_api_key_env=args.upstream_key_env,
                               upstream_timeout=args.upstream_timeout)
    router = upstream_backend(cfg)                                   # models discovered at /models
    proxy.routers.append(router)
    assert [c.id for c in router.models()] == ["fake-model", "other"]
    base = proxy.stack.enter_context(serve(create_app(router, cfg)))
    r = proxy.client(base).chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert r.model == "other" and fake.bodies[-1]["model"] == "other" and fake.api_keys[-1] == "Bearer sk-upstream"
    config = proxy.stack.enter_context(__import__("tempfile").TemporaryDirectory()) + "/up.json"
    with open(config, "w") as f:
        json.dump({"upstreams": [{"name": "solo", "base_url": url, "models": {"small": "other"}}]}, f)
    from_file = upstream_backend(ServeConfig(upstreams_config=config))
    proxy.routers.append(from_file)
    assert [c.id for c in from_file.models()] == ["small"] and from_file.members[0].name == "solo"
    monkeypatch.delenv("UP_KEY")
    with pytest.raises(ValueError, match="UP_KEY"):
        upstream_backend(cfg)
    assert pool_from_flags([url], ["a=b"]).upstreams[0].models == {"a": "b"}
    with pytest.raises(ValueError):
        UpstreamConfig("x", url, {})
