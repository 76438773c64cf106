"""Decodes whose sequences share a cached prefix read it once per group (engine.prefix_groups ->
kernels.shared_prefix) and give what the torch reference gives: the same greedy tokens and float32
log-probabilities through the real engine. Interpreted on CPU, so prompts and steps are tiny."""
from __future__ import annotations

import random
from importlib.util import find_spec

import pytest
import torch

from gateway.engine.engine import Engine
from gateway.engine.prefix_groups import prefix_groups
from gateway.protocol import GenerateRequest, SamplingParams
from tests.engine.test_engine import GREEDY, assert_no_leak
from tests.engine.test_triton_backend import CONTEXT, DEVICE, run, run_logprobs

pytestmark = pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")
SYSTEM = 40


def outputs(path, attention: str) -> tuple[list[dict], Engine]:
    """One request, then four at once sharing its first SYSTEM tokens (two with a longer shared part)."""
    engine = Engine(path, device=DEVICE, dtype="float32", attention=attention, kv_slots=1024, max_running=8,
                    max_context=CONTEXT, debug_checks=True)
    engine.scheduler.min_shared_prefix = 16       # the default (256) is for real prompts
    engine.runner.shared_min_saved = 0
    rng = random.Random(1)
    vocab = engine.runner.cfg.vocab_size
    system = [rng.randrange(vocab) for _ in range(SYSTEM)]
    longer = system + [rng.randrange(vocab) for _ in range(20)]
    prompts = [system + [7], system + [1, 2, 3], system + [9] * 5, longer + [4], longer + [8, 8]]
    params = SamplingParams(max_tokens=3, logprobs=True, top_logprobs=2, **GREEDY)
    reqs = [GenerateRequest(f"r{i}", params, prompt_token_ids=p) for i, p in enumerate(prompts)]
    results = run(engine, reqs[:1]) + run(engine, reqs[1:])
    assert_no_leak(engine)
    engine.shutdown()
    return results, engine


def test_grouped_decode_equals_the_torch_backend(model_dirs):
    expected, _ = outputs(model_dirs["qwen3"], "torch")
    got, engine = outputs(model_dirs["qwen3"], "triton")
    assert engine.runner.grouped_decodes >= 2, "the concurrent decodes ran grouped"
    assert [g["tokens"] for g in got] == [e["tokens"] for e in expected]
    for g, e in zip(run_logprobs(got), run_logprobs(expected)):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)


class _Node:
    def __init__(self, key, parent):
        self.key, self.parent = key, parent


class _Req:
    def __init__(self, node, cached_len):
        self.node, self.cached_len = node, cached_len


def test_groups_follow_the_deepest_node_shared_within_the_batch():
    root = _Node([], None)
    system = _Node([0] * 300, root)
    a, b = _Node([1] * 100, system), _Node([2] * 50, system)
    a1, a2, b1 = _Node([3] * 5, a), _Node([4] * 6, a), _Node([5] * 7, b)
    other = _Node([6] * 400, root)
    reqs = [_Req(a1, 405), _Req(a2, 406), _Req(b1, 357), _Req(other, 400), _Req(system, 300)]
    # a1 and a2 meet at a (400 deep); b1 and the request at `system` itself meet at system (300).
    assert sorted(prefix_groups(reqs)) == [([0, 1], 400), ([2, 4], 300)]
    assert prefix_groups(reqs, min_length=350) == [([0, 1], 400)]
    assert prefix_groups(reqs[2:4]) == []
