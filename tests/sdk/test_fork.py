"""A fork of 8 branches over a 1,000-token shared prefix on the local engine: the prefix is
computed once (the engine's computed-token counter, the branches' cached tokens and the radix hit
rate on /metrics show it) and
the branches run concurrently (8 requests in flight at once, decoded in shared batches)."""
from __future__ import annotations

import re
import threading

import httpx
import pytest

from gateway.engine.engine import Engine
from sdk import RadixGate, assistant, function, gen, system, user

BRANCHES = 8
WORDS = ("radix", "trees", "share", "prefixes", "so", "that", "many", "requests", "reuse", "the", "same", "cached",
         "keys", "and", "values", "while", "the", "scheduler", "batches", "their", "decoding", "steps")


class InFlight:
    """A backend wrapper counting the turns in flight at once."""

    def __init__(self, inner):
        self.inner, self.now, self.most = inner, 0, 0
        self.lock = threading.Lock()

    def run_turn(self, *args, **kw):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.inner.run_turn(*args, **kw)
        finally:
            with self.lock:
                self.now -= 1

    def prefill(self, *args):
        return self.inner.prefill(*args)


@pytest.fixture
def engine(tiny_qwen3_dir):
    e = Engine(tiny_qwen3_dir, name="tiny-qwen3", device="cpu", dtype="float32", kv_slots=16384, max_running=64,
               max_context=2048, debug_checks=True)
    yield e
    e.shutdown()


def essay_of(tokenizer, tokens: int) -> str:
    """Words until the system + user prompt is `tokens` long."""
    words: list[str] = []
    while len(tokenizer.encode_chat([{"role": "user", "content": " ".join(words)}], None, False)) < tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    return " ".join(words)


@function
def eight_judges(s, essay):
    s += system("You judge essays.")
    s += user(essay)
    branches = s.fork(BRANCHES)
    for i, b in enumerate(branches):
        b += user(f"Judge aspect {i}.")
        b += assistant(gen("note", max_tokens=8))
    s.join(branches)


def test_a_fork_computes_the_shared_prefix_once_and_runs_its_branches_together(engine, live_server):
    base = live_server(engine)
    tok = engine.tokenizer
    essay = essay_of(tok, 1000)
    shared = tok.encode_chat([{"role": "system", "content": "You judge essays."}, {"role": "user", "content": essay}],
                             None, False)
    assert len(shared) >= 1000
    backend = InFlight(RadixGate(base, temperature=0))
    before = engine.runner.computed_tokens
    engine.timings.reset()
    state = eight_judges.run(essay, backend=backend).check()
    computed = engine.runner.computed_tokens - before
    assert len(state["note"]) == BRANCHES and all(isinstance(n, str) for n in state["note"])
    # Each branch prompt is the shared prefix plus its own question; only the question and the
    # branch's tokens are computed per branch.
    branch_prompts = [tok.encode_chat([{"role": "system", "content": "You judge essays."},
                                       {"role": "user", "content": essay},
                                       {"role": "user", "content": f"Judge aspect {i}."}]) for i in range(BRANCHES)]
    own = sum(len(p) - len(shared) + 8 for p in branch_prompts)
    assert computed <= len(shared) + 8 + own, (computed, len(shared), own)       # one prefill (+ its token)
    assert computed < 1.5 * len(shared)
    # Usage says the same: the prefill request computed the prefix; every branch found it cached.
    assert state.usage.requests == 1 + BRANCHES
    assert state.usage.cached_tokens >= BRANCHES * (len(shared) - 2)
    metrics = httpx.get(f"{base}/metrics").text
    hit_rate = float(re.search(r"^radixgate_radix_hit_rate ([0-9.e+-]+)$", metrics, re.MULTILINE).group(1))
    assert hit_rate >= BRANCHES * (len(shared) - 2) / ((BRANCHES + 1) * max(map(len, branch_prompts)))
    # The branches were in flight together and decoded in shared batches.
    assert backend.most == BRANCHES
    decode = engine.timings.decode
    assert decode.reqs / max(decode.steps, 1) >= 3, engine.timings.decode
