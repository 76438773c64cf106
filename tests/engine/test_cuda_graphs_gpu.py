"""Decode steps replayed from CUDA graphs give the eager forward's logits, also for batch sizes that are
padded up to a captured size over rows a larger step left behind; the engine generates the same tokens
with graphs on and off. Skipped where there is no GPU; run through the device machine."""
from __future__ import annotations

import random

import pytest
import torch

from gateway.engine.engine import Engine
from gateway.engine.runner import ModelRunner
from gateway.protocol import GenerateRequest, SamplingParams
from tests.engine.test_engine import GREEDY, assert_no_leak, prompts_with_shared_prefixes, run_all
from tests.engine.test_triton_backend import start

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
pytest.importorskip("triton")

MAX_RUNNING = 6          # captured sizes 1, 2, 4, 6: batches of 3 and 5 are padded


@pytest.mark.parametrize("name, dtype", [("llama", "float32"), ("mistral", "float32"), ("qwen3", "bfloat16")])
def test_replayed_decode_logits_equal_eager(model_dirs, name, dtype):
    runner = ModelRunner(model_dirs[name], torch.device("cuda"), dtype, kv_slots=1024, max_running=MAX_RUNNING,
                         max_context=256, attention="triton", cuda_graphs=True)
    assert runner.graphs is not None and sorted(runner.graphs.graphs) == [1, 2, 4, 6]
    rng = random.Random(0)
    prompts = [[rng.randrange(1000) for _ in range(n)] for n in (30, 9, 1, 17, 64)]
    prompts.append(prompts[0][:20] + [rng.randrange(1000) for _ in range(7)])     # a cache hit on the first
    steps = [6, 3, 5, 1, 2, 4, 6, 5]
    rows = start(runner, prompts, shared=20, steps=len(steps))
    lens = [len(p) for p in prompts]
    for n in steps:                             # the first n sequences each decode one token
        ids = [rng.randrange(1000) for _ in range(n)]
        args = (ids, lens[:n], [k + 1 for k in lens[:n]], [1] * n, rows[:n])
        eager = runner.run(*args, graphs=False)
        replayed = runner.run(*args)
        assert replayed.shape == eager.shape == (n, runner.cfg.vocab_size)
        if dtype == "float32":
            torch.testing.assert_close(replayed, eager, atol=1e-4, rtol=1e-4)
        else:       # bf16: a padded batch's matmuls may round differently from the unpadded eager ones
            assert (replayed - eager).abs().max() <= 0.02 * eager.abs().max()
        lens = [k + 1 for k in lens[:n]] + lens[n:]


def test_engine_tokens_with_graphs_equal_eager_and_torch(model_dirs):
    path = model_dirs["qwen3"]
    results, replays = {}, []
    for attention, graphs in (("triton", True), ("triton", False), ("torch", False)):
        engine = Engine(path, device="cuda", dtype="float32", attention=attention, cuda_graphs=graphs, decode_steps=1,
                        max_running=MAX_RUNNING, chunk_tokens=32, kv_slots=4096, debug_checks=True)
        assert (engine.runner.graphs is not None) == graphs
        if graphs:
            replay = engine.runner.graphs.run
            engine.runner.graphs.run = lambda *a: replays.append(len(a[0])) or replay(*a)
        prompts = prompts_with_shared_prefixes(engine.runner.cfg.vocab_size, 10)
        reqs = [GenerateRequest(f"g{i}", SamplingParams(max_tokens=4 + i, **GREEDY), prompt_token_ids=p)
                for i, p in enumerate(prompts)]        # each finishing alone: the batch shrinks 6, 5, ... 1
        results[attention, graphs] = [r["tokens"] for r in run_all(engine, reqs)]
        assert_no_leak(engine)
        engine.shutdown()
    assert {3, 5} & set(replays), f"no decode batch was padded (replayed sizes {sorted(set(replays))})"
    assert results["triton", True] == results["triton", False] == results["torch", False]
