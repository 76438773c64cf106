"""The Triton attention backend gives what the torch reference gives: through the real engine the same
greedy tokens and log-probabilities within float32 tolerance, with prefix-cache hits, chunked prefill
and a sliding window; through the runner the same logits, also for a decode padded into the CUDA-graph
static buffers. Without CUDA the kernels run in Triton's interpreter (tests/conftest.py sets it), which
costs about a second per step, so prompts, windows and step counts are tiny."""
from __future__ import annotations

import asyncio
import random
from importlib.util import find_spec

import pytest
import torch

from gateway.engine.cuda_graphs import DecodeGraphs, graph_batch_sizes
from gateway.engine.engine import Engine
from gateway.engine.runner import ModelRunner
from gateway.protocol import GenerateRequest, SamplingParams
from tests.engine.test_engine import GREEDY, assert_no_leak

pytestmark = pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CONTEXT = 128           # the table width: one or two decode splits, which the interpreter runs one by one


def greedy_with_logprobs(path, attention: str) -> tuple[list[dict], Engine]:
    """One request, then three sharing its first 20 tokens (cache hits); prompts longer than a 16-token
    chunk are prefilled in pieces."""
    engine = Engine(path, device=DEVICE, dtype="float32", attention=attention, kv_slots=512, max_running=4,
                    chunk_tokens=16, max_context=CONTEXT, debug_checks=True)
    rng = random.Random(0)
    vocab = engine.runner.cfg.vocab_size
    system = [rng.randrange(vocab) for _ in range(20)]
    prompts = [system + [rng.randrange(vocab) for _ in range(n)] for n in (10, 3, 14)] + [[5, 6, 7]]
    params = SamplingParams(max_tokens=4, logprobs=True, top_logprobs=3, **GREEDY)
    reqs = [GenerateRequest(f"r{i}", params, prompt_token_ids=p) for i, p in enumerate(prompts)]
    results = run(engine, reqs[:1]) + run(engine, reqs[1:])
    assert_no_leak(engine)
    engine.shutdown()
    return results, engine


@pytest.mark.parametrize("name", ["qwen3", "mistral"])
def test_engine_outputs_equal_the_torch_backend(model_dirs, name):
    expected, _ = greedy_with_logprobs(model_dirs[name], "torch")
    got, engine = greedy_with_logprobs(model_dirs[name], "triton")
    assert type(engine.runner.backend).__name__ == "TritonAttention"
    assert engine.cache.stats.matched_tokens >= 3 * 20, "the later prompts found the shared prefix cached"
    assert [g["tokens"] for g in got] == [e["tokens"] for e in expected]
    for g, e in zip(got, expected):
        assert g["usage"].cached_tokens == e["usage"].cached_tokens
    # Log-probabilities of the chosen and top tokens: the logits agree to float32 tolerance.
    for g, e in zip(run_logprobs(got), run_logprobs(expected)):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0)


def run(engine: Engine, reqs: list[GenerateRequest]) -> list[dict]:
    async def one(req):
        out = {"tokens": [], "logprobs": [], "usage": None}
        async for d in engine.generate(req):
            out["tokens"] += d.token_ids
            out["logprobs"] += d.logprobs or []
            out["usage"] = d.usage or out["usage"]
        return out

    async def main():
        return await asyncio.gather(*(one(r) for r in reqs))
    return asyncio.run(main())


def run_logprobs(results: list[dict]) -> list[torch.Tensor]:
    return [torch.tensor([[lp.logprob] + [v for _, _, v in lp.top] for lp in r["logprobs"]]) for r in results]


# ----- the runner: eager Triton, static buffers with padding, torch -------------------------------

def start(runner: ModelRunner, prompts: list[list[int]], shared: int, steps: int) -> list[int]:
    """Rows for the prompts, each with slots for its prompt and `steps` decodes; the last prompt starts
    with the first one's first `shared` tokens and reuses their slots, as a radix-cache hit does. Runs the
    prefill (the last prompt extending over its cached part) and returns the rows."""
    assert len(prompts[0]) >= shared and prompts[-1][:shared] == prompts[0][:shared]
    table, rows = runner.req_pool.table, []
    for i, p in enumerate(prompts):
        row = runner.req_pool.alloc()
        reused = table[rows[0], :shared].tolist() if i == len(prompts) - 1 else []
        table[row, :len(p) + steps] = torch.tensor(reused + runner.pool.alloc(len(p) + steps - len(reused)),
                                                   dtype=torch.int32)
        rows.append(row)
    first = prompts[:-1]
    runner.run(sum(first, []), [i for p in first for i in range(len(p))], [len(p) for p in first],
               [len(p) for p in first], rows[:-1])
    last = prompts[-1]
    runner.run(last[shared:], list(range(shared, len(last))), [len(last)], [len(last) - shared], rows[-1:])
    return rows


def test_padded_static_decode_gives_the_eager_and_torch_logits(model_dirs):
    path = model_dirs["llama"]
    runners = [ModelRunner(path, torch.device(DEVICE), "float32", kv_slots=256, max_running=4, max_context=CONTEXT,
                           attention=attention, cuda_graphs=False) for attention in ("triton", "torch")]
    triton, reference = runners
    static = DecodeGraphs(triton.model, triton.backend, triton.req_pool.table, 4, capture=False)
    assert static.sizes == [1, 2, 4]
    rng = random.Random(1)
    prompts = [[rng.randrange(1000) for _ in range(n)] for n in (9, 14, 3)]
    prompts.append(prompts[0][:6] + [rng.randrange(1000) for _ in range(5)])
    rows = [start(r, prompts, shared=6, steps=2) for r in runners][0]
    lens = [len(p) for p in prompts]
    # Step 1 decodes all four rows (no padding); step 2 three of them, padded to four over row 3's
    # leftovers from step 1, which must neither be attended nor written anywhere but slot 0.
    for step, batch in enumerate([[0, 1, 2, 3], [0, 2, 3]]):
        ids = [rng.randrange(1000) for _ in batch]
        args = (ids, [lens[i] + step for i in batch], [lens[i] + step + 1 for i in batch], [1] * len(batch),
                [rows[i] for i in batch])
        eager = triton.run(*args)
        expected = reference.run(*args)
        before_k, before_v = triton.pool.k.clone(), triton.pool.v.clone()
        padded = static.run(*args[:3], args[4])
        changed = ((triton.pool.k != before_k) | (triton.pool.v != before_v)).flatten(2).any(-1).any(0)
        new_slots = {int(triton.req_pool.table[rows[i], lens[i] + step]) for i in batch}
        assert set(changed.nonzero().flatten().tolist()) <= new_slots | {0}, "padding wrote K/V outside slot 0"
        pad = slice(len(batch), 4)
        assert not static.seq_lens[pad].any() and not static.out_slots[pad].any(), "padding rows: length 0, slot 0"
        torch.testing.assert_close(eager, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(padded, eager, atol=1e-5, rtol=1e-5)


def test_graph_batch_sizes():
    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(8) == [1, 2, 4, 8]
    assert graph_batch_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert graph_batch_sizes(300) == [1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 300]
