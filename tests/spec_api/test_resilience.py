"""Upstream failures as the client lives them, through a live radixgate and the official client:
500s, 429s with Retry-After, timeouts, dead upstreams, mid-stream disconnects and malformed chunks.
Each request ends in either the complete, correct answer or one clean OpenAI error, in bounded time;
afterwards nothing is left in flight (the `proxy` fixture checks)."""
from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import openai
import pytest

from loadtest.fake_upstream import Reply
from tests.api.openapi import check_response, validate, validator
from tests.spec_api.conftest import FAST, MODEL, busy_connections, chat, dead_url, stream_events

HELLO = "Hello, world!"


def test_a_500_is_retried_and_the_client_sees_only_the_answer(one):
    one.fake.script(Reply(status=500))
    assert chat(one.client).choices[0].message.content == HELLO and one.fake.calls == 2
    one.fake.script(Reply(status=503))
    assert chat(one.client, stream=True).response.status_code == 200 and one.fake.calls == 4


def test_exhausted_retries_are_a_502(one):
    one.fake.script(*[Reply(status=500, message="kaput")] * 2)
    with pytest.raises(openai.APIStatusError) as err:
        chat(one.client)
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_error"
    assert "kaput" in err.value.body["message"] and one.fake.calls == 2   # first try + max_retries (1)


def test_a_dead_upstream_falls_back_and_opens_its_circuit(proxy):
    fake, url = proxy.upstream()
    # a cooldown no loaded machine outlasts: the circuit must still be open after the eight requests
    base, router = proxy.gateway([dead_url(), url], replace(FAST, affinity=False, breaker_cooldown=60.0))
    client = proxy.client(base)
    for _ in range(8):                                        # idle: turns alternate between the two
        assert chat(client).choices[0].message.content == HELLO
    dead = router.members[0]
    assert dead.breaker.state == "open" and dead.breaker.failures == 3 and fake.calls == 8
    health = httpx.get(f"{base}/health").json()
    check_response(httpx.get(f"{base}/v1/models"))
    assert health["status"] == "ok" and [b["state"] for b in health["backends"]] == ["open", "closed"]


def test_all_upstreams_dead_is_a_clean_error_and_health_says_so(proxy):
    base, _ = proxy.gateway([dead_url(), dead_url()])
    client = proxy.client(base)
    statuses = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as err:
            chat(client)
        statuses.append((err.value.status_code, err.value.body["code"]))
    assert statuses[0] == (502, "upstream_unreachable") and statuses[-1] == (503, "upstream_unavailable")
    health = httpx.get(f"{base}/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"


def test_429_retry_after_is_honoured_then_passed_back_when_too_long(one):
    one.fake.script(Reply(status=429, retry_after=0.3))
    t = time.perf_counter()
    assert chat(one.client).choices[0].message.content == HELLO
    assert time.perf_counter() - t >= 0.3 and one.fake.calls == 2
    one.fake.script(Reply(status=429, retry_after=20, message="slow down"))
    with pytest.raises(openai.RateLimitError) as err:
        chat(one.client)
    assert err.value.response.headers["retry-after"] == "20" and err.value.body["message"] == "slow down"
    assert one.router.members[0].breaker.state == "closed"


def test_a_slow_upstream_times_out_as_504_or_falls_back(proxy):
    slow, slow_url = proxy.upstream()
    slow.reply = lambda body: Reply(delay=1.0)
    base, _ = proxy.gateway([slow_url], timeout=0.3)
    with pytest.raises(openai.APIStatusError) as err:
        chat(proxy.client(base))
    assert err.value.status_code == 504 and err.value.body["code"] == "upstream_timeout"
    fast, fast_url = proxy.upstream()
    base, _ = proxy.gateway([slow_url, fast_url], timeout=0.5)
    assert chat(proxy.client(base)).choices[0].message.content == HELLO and fast.calls == 1


def test_a_disconnect_mid_stream_is_one_error_event_and_no_retry(one):
    one.fake.script(Reply(disconnect_after=3))              # role chunk, "Hello", ",", then the cut
    events = stream_events(one.base, {"messages": [{"role": "user", "content": "hi"}]})
    assert events[-1]["error"]["code"] == "upstream_disconnected" and "[DONE]" not in events
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-1]) == "Hello,"
    assert one.fake.calls == 1


@pytest.mark.parametrize("fault", [Reply(disconnect_after=1), Reply(malformed_after=1)], ids=["cut", "garbage"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_cut_or_garbage_before_anything_reached_the_client_is_retried(one, fault, stream):
    # streamed: only the role chunk went out, which makes no Delta; whole: nothing goes on before the end
    one.fake.script(fault)
    r = chat(one.client, stream=stream)
    text = "".join(c.choices[0].delta.content or "" for c in r if c.choices) if stream else r.choices[0].message.content
    assert text == HELLO and one.fake.calls == 2


def test_a_whole_answer_cut_on_every_attempt_is_one_disconnected_error(one):
    # the upstream took the request and broke off its answer each time: not "could not be reached"
    one.fake.script(*[Reply(disconnect_after=1)] * 2)
    with pytest.raises(openai.APIStatusError) as err:
        chat(one.client)
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_disconnected"
    assert one.fake.calls == 2                               # first try + max_retries (1), none unaccounted


def test_a_stall_mid_stream_times_out_as_one_error_event(proxy):
    fake, url = proxy.upstream()
    base, _ = proxy.gateway([url], timeout=0.3)
    fake.script(Reply(stall=(2, 1.0)))                       # role chunk, "Hello", then silence past the timeout
    events = stream_events(base, {"messages": [{"role": "user", "content": "hi"}]})
    assert events[-1]["error"]["code"] == "upstream_timeout" and "[DONE]" not in events and fake.calls == 1


def test_a_malformed_chunk_mid_stream_ends_the_stream_cleanly(one):
    one.fake.script(Reply(malformed_after=2))               # role chunk, "Hello", then garbage
    events = stream_events(one.base, {"messages": [{"role": "user", "content": "hi"}]})
    assert events[-1]["error"]["code"] == "upstream_malformed" and "[DONE]" not in events


def test_the_client_going_away_closes_the_upstream_call(one):
    one.fake.reply = lambda body: Reply(pieces=("tick",) * 50, chunk_delay=0.05)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{one.base}/v1/chat/completions", json=body, timeout=10) as r:
        for line in r.iter_lines():
            if "tick" in line:
                break
    hung_up = time.perf_counter()
    while one.router.outstanding or busy_connections(one.router):    # the hang-up cancels the stream...
        assert time.perf_counter() - hung_up < 1.0, "the upstream call outlived its client"
        time.sleep(0.01)
    assert one.fake.open_responses <= 1                      # ...long before the upstream's 2.5 s are over


SCHEMA = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}, "required": ["age"]}
FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}


def test_json_schema_by_instruction_is_validated_and_repaired(proxy):
    fake, url = proxy.upstream()
    base, _ = proxy.gateway([url], supports_json_schema=False)
    answers = iter(['{"age": "old"}', 'Sure! {"age": 3}', '{"age": 41}'])
    fake.reply = lambda body: Reply.text(next(answers), prompt_tokens=10)
    r = chat(proxy.client(base), response_format=FORMAT)
    assert json.loads(r.choices[0].message.content) == {"age": 41} and fake.calls == 3
    assert r.usage.prompt_tokens == 30                       # every call is billed
    first, last = fake.bodies[0], fake.bodies[-1]
    assert "response_format" not in first and json.dumps(SCHEMA) in first["messages"][0]["content"]
    assert last["messages"][-2] == {"role": "assistant", "content": 'Sure! {"age": 3}'}
    assert "not JSON" in last["messages"][-1]["content"]
    assert "'old' is not of type 'integer'" in fake.bodies[1]["messages"][-1]["content"]


def test_json_schema_never_valid_is_a_clean_502(proxy):
    fake, url = proxy.upstream()
    base, _ = proxy.gateway([url], supports_json_schema=False)
    fake.reply = lambda body: Reply.text('{"age": -1}')
    with pytest.raises(openai.APIStatusError) as err:
        chat(proxy.client(base), response_format=FORMAT, stream=True).response.read()
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_invalid_output"
    assert fake.calls == 3                                   # first answer + 2 repairs (schema_retries)


def test_many_clients_under_random_faults_get_answers_or_clean_errors(proxy):
    rng = random.Random(7)
    faults = [Reply(status=500), Reply(status=429, retry_after=0.05), Reply(disconnect_after=2),
              Reply(malformed_after=2), Reply(delay=2.0), Reply(chunk_delay=0.01), Reply(disconnect_after=1)]

    def chaos(body):
        return rng.choice(faults) if rng.random() < 0.4 else Reply()
    fa, url_a = proxy.upstream()
    fb, url_b = proxy.upstream()
    fa.reply = fb.reply = chaos
    # the timeout well under the injected delay and well over a healthy answer on a loaded machine, where
    # healthy answers timing out would open both circuits and turn most requests into 503s
    base, _ = proxy.gateway([url_a, url_b], timeout=1.0)

    def one_request(i: int):
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}], "stream": i % 2 == 0}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=15)
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        if body["stream"] and r.status_code == 200 and events[-1] != "[DONE]":
            assert sum('"error"' in e for e in events) == 1    # one error event ends a broken stream
            validate("ErrorResponse", json.loads(events[-1]))
            return "error", json.loads(events[-1])["error"]["code"]
        check_response(r)
        if r.status_code != 200:
            error = r.json()["error"]
            return "error", error["code"] or error["type"]           # a 429 passed back keeps its own body
        if body["stream"]:
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert text == HELLO
        return "ok", None

    for name in ("CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "ErrorResponse"):
        validator(name)                                      # built once here, not by 8 threads at once
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_request, range(32)))
    assert time.perf_counter() - start < 60                  # bounded: no request hangs
    assert sum(kind == "ok" for kind, _ in results) >= 8, results
    assert {code for kind, code in results if kind == "error"} <= {
        "upstream_disconnected", "upstream_malformed", "upstream_error", "upstream_timeout", "upstream_unavailable",
        "rate_limit_exceeded"}
