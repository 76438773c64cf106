"""Decodes whose sequences share a cached prefix read it once per group (engine.prefix_groups ->
kernels.shared_prefix) and give what the torch reference gives: the same greedy tokens and float32
log-probabilities through the real engine. Interpreted on CPU, so prompts and steps are tiny."""
from __future__ import annotations

import random
from importlib.util import find_spec

import pytest
import torch

from gateway.engine.cuda_graphs import DecodeGraphs
from gateway.engine.engine import Engine
from gateway.engine.prefix_groups import prefix_groups
from gateway.engine.runner import ModelRunner
from gateway.protocol import GenerateRequest, SamplingParams
from tests.engine.test_engine import GREEDY, assert_no_leak
from tests.engine.test_triton_backend import CONTEXT, DEVICE, run, run_logprobs, start

pytestmark = pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")
SYSTEM = 40


def outputs(path, attention: str) -> tuple[list[dict], Engine]:
    """One request, then four at once sharing its first SYSTEM tokens (two with a longer shared part)."""
    engine = Engine(path, device=DEVICE, dtype="float32", attention=attention, kv_slots=1024, max_running=8,
                    max_context=CONTEXT, debug_checks=True, group_prefixes=True)
    if engine.runner.groups_prefixes:
        engine.scheduler.min_shared_prefix = 16       # the default (256) is for real prompts
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
    if engine.runner.graphs is not None:
        assert engine.runner.graphs.shared is not None, "the decode graphs read shared prefixes"
    assert [g["tokens"] for g in got] == [e["tokens"] for e in expected]
    for g, e in zip(run_logprobs(got), run_logprobs(expected)):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)


def test_static_buffers_with_groups_give_the_torch_logits(model_dirs):
    """The CUDA-graph path (static buffers, groups rewritten in place, padding rows and tiles), run
    without capture: a grouped step, then the same rows ungrouped, then a padded batch grouped again."""
    path = model_dirs["llama"]
    triton, reference = [ModelRunner(path, torch.device(DEVICE), "float32", kv_slots=256, max_running=4,
                                     max_context=CONTEXT, attention=a, cuda_graphs=False) for a in ("triton", "torch")]
    static = DecodeGraphs(triton.model, triton.backend, triton.req_pool.table, 4, capture=False, shared_prefixes=True)
    rng = random.Random(2)
    prompts = [[rng.randrange(1000) for _ in range(n)] for n in (20, 9, 3)]
    prompts.append(prompts[0][:17] + [rng.randrange(1000) for _ in range(4)])
    rows = [start(r, prompts, shared=17, steps=3) for r in (triton, reference)][0]
    lens = [len(p) for p in prompts]
    for step, (batch, groups) in enumerate([([0, 1, 2, 3], [([0, 3], 17)]), ([0, 1, 2, 3], []),
                                            ([0, 2, 3], [([0, 2], 17)])]):
        ids = [rng.randrange(1000) for _ in batch]
        args = (ids, [lens[i] + step for i in batch], [lens[i] + step + 1 for i in batch], [1] * len(batch),
                [rows[i] for i in batch])
        expected = reference.run(*args)
        got = static.run(*args[:3], args[4], shared=groups)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert static.shared.prefix_splits[3] == 0 and static.shared.lengths[1:].eq(0).all()


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
