"""Decode windows (several decode steps per host round) change nothing a client sees but the pace."""
from __future__ import annotations

import random

import pytest
import torch

from gateway.protocol import GenerateRequest, SamplingParams
from tests.engine.test_engine import GREEDY, assert_no_leak, make_engine, run_all


@pytest.fixture(scope="module")
def qwen3(model_dirs):
    return model_dirs["qwen3"]


def mixed_requests(vocab: int, stop_token: int) -> list[GenerateRequest]:
    """Greedy of many lengths, seeded draws with n=2, a stop token, and requests that cannot run
    ahead (stop strings, logprobs, a penalty) joining part of the way through."""
    rng = random.Random(1)

    def prompt() -> list[int]:
        return [rng.randrange(vocab) for _ in range(rng.randint(3, 30))]
    reqs = [GenerateRequest(f"g{i}", SamplingParams(max_tokens=rng.randint(1, 40), **GREEDY),
                            prompt_token_ids=prompt()) for i in range(10)]
    reqs += [GenerateRequest(f"s{i}", SamplingParams(max_tokens=25, temperature=1.0, seed=7 + i, ignore_eos=True),
                             prompt_token_ids=prompt(), n=2) for i in range(2)]
    reqs.append(GenerateRequest("stop", SamplingParams(max_tokens=40, temperature=0.0, stop_token_ids=[stop_token]),
                                prompt_token_ids=[5, 6, 7]))
    reqs += [GenerateRequest("text-stop", SamplingParams(max_tokens=30, stop=["zz"], **GREEDY), prompt_token_ids=prompt()),
             GenerateRequest("logprobs", SamplingParams(max_tokens=12, logprobs=True, top_logprobs=2, **GREEDY),
                             prompt_token_ids=prompt()),
             GenerateRequest("penalty", SamplingParams(max_tokens=12, repetition_penalty=1.3, **GREEDY),
                             prompt_token_ids=prompt())]
    return reqs


def run(engine, reqs, delays):
    windows = []
    forward = engine.runner.forward

    def counting(batch, *window):
        windows.append(batch.steps)
        return forward(batch, *window)
    engine.runner.forward = counting
    out = run_all(engine, reqs, delays)
    assert_no_leak(engine)
    engine.shutdown()
    return out, windows


def test_windows_draw_what_single_steps_draw(qwen3):
    single = make_engine(qwen3, kv_slots=4096, decode_steps=1)
    vocab = single.runner.cfg.vocab_size
    [probe] = run_all(single, [GenerateRequest("p", SamplingParams(max_tokens=12, **GREEDY), prompt_token_ids=[5, 6, 7])])
    single.call(single.cache.reset)
    stop_token = probe["tokens"][0][6]             # drawn mid-window (or earlier): the window must cut there
    reqs = mixed_requests(vocab, stop_token)
    delays = [0.0] * 13 + [0.05, 0.1, 0.15]        # the late ones keep some batches single-step
    expected, single_windows = run(single, reqs, delays)
    got, windows = run(make_engine(qwen3, kv_slots=4096, decode_steps=8), reqs, delays)
    assert set(single_windows) == {1} and max(windows) == 8
    assert got == expected
    by_id = {r.request_id: res for r, res in zip(reqs, got)}
    stop = by_id["stop"]
    assert stop["finish"] == ["stop"] and stop["tokens"][0][-1] == stop_token
    assert len(stop["tokens"][0]) == probe["tokens"][0].index(stop_token) + 1
    assert all(len(res["tokens"][0]) == r.params.max_tokens for r, res in zip(reqs[:10], got))


def test_a_window_needs_slots_for_every_step(qwen3):
    """With room for only a few tokens per request, windows shrink to single steps instead of failing."""
    prompts = [[3 + i] * 20 for i in range(6)]
    reqs = [GenerateRequest(f"m{i}", SamplingParams(max_tokens=30, **GREEDY), prompt_token_ids=p)
            for i, p in enumerate(prompts)]
    expected, _ = run(make_engine(qwen3, kv_slots=4096, decode_steps=1), reqs, None)
    got, windows = run(make_engine(qwen3, kv_slots=6 * 52, decode_steps=8), reqs, None)
    assert got == expected and 1 in windows and 8 in windows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_windows_replay_decode_graphs_exactly(qwen3):
    """Windows against single steps through the decode graphs, in float32. A step's padded batch size
    picks its graph and its attention splits, so a request decoded beside other requests may sum in
    another order than alone: tokens agree until a greedy draw between two logits that the reference
    model finds a float32 rounding apart, after which the continuations may part."""
    kw = dict(device="cuda", dtype="float32", kv_slots=8192, debug_checks=True)
    reqs = mixed_requests(1000, stop_token=1)
    from gateway.engine.engine import Engine
    delays = [0.0] * 13 + [0.05, 0.1, 0.15]
    expected, _ = run(Engine(qwen3, decode_steps=1, **kw), reqs, delays)
    got, windows = run(Engine(qwen3, decode_steps=8, **kw), reqs, delays)
    assert max(windows) > 1
    parted = [(r, a, b) for r, res, ref in zip(reqs, got, expected) for a, b in zip(res["tokens"], ref["tokens"]) if a != b]
    assert len(parted) <= 2, [r.request_id for r, _, _ in parted]
    for r, a, b in parted:
        i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
        assert i is not None and r.params.temperature == 0, (r.request_id, a, b)
        gap, scale = _logit_gap(qwen3, r, b[:i], a[i], b[i])
        assert gap <= 1e-4 * scale, f"{r.request_id} parts at token {i}: {a[i]} vs {b[i]}, logits {gap:.3g} apart"


def _logit_gap(path, req, prefix: list[int], x: int, y: int) -> tuple[float, float]:
    """|logit x - logit y| after the prompt and `prefix` by the transformers model (the request's repetition
    penalty applied as the sampler applies it), and the largest |logit| for scale."""
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().cuda()
    seen = req.prompt_token_ids + prefix
    with torch.no_grad():
        logits = hf(torch.tensor([seen], device="cuda")).logits[0, -1]
    if req.params.repetition_penalty != 1.0:
        ids = torch.tensor(sorted(set(seen)), device="cuda")
        held = logits[ids]
        logits[ids] = torch.where(held > 0, held / req.params.repetition_penalty, held * req.params.repetition_penalty)
    return (logits[x] - logits[y]).abs().item(), max(1.0, logits.abs().max().item())
