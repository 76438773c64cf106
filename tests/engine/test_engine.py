"""The local engine end to end: exact greedy outputs, prefix reuse, memory pressure, aborts, seeds."""
from __future__ import annotations

import asyncio
import random
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM

from gateway.engine.engine import Engine
from gateway.protocol import GenerateRequest, SamplingParams

GREEDY = dict(temperature=0.0, ignore_eos=True)


async def collect(engine: Engine, req: GenerateRequest, delay: float = 0.0) -> dict:
    """Tokens, text, finish reasons and usage of one request, as a client would see them."""
    await asyncio.sleep(delay)
    out = {"tokens": [[] for _ in range(req.n)], "text": [""] * req.n, "finish": [None] * req.n, "usage": None}
    async for d in engine.generate(req):
        out["tokens"][d.index] += d.token_ids
        out["text"][d.index] += d.text
        if d.finish_reason:
            out["finish"][d.index] = d.finish_reason
        if d.usage:
            out["usage"] = d.usage
    return out


def run_all(engine: Engine, reqs: list[GenerateRequest], delays: list[float] | None = None) -> list[dict]:
    async def main():
        return await asyncio.gather(*(collect(engine, r, d) for r, d in zip(reqs, delays or [0.0] * len(reqs))))
    return asyncio.run(main())


def run_arriving_together(engine: Engine, reqs: list[GenerateRequest]) -> list[dict]:
    """run_all with every request in the engine's inbox before it schedules any: the engine thread is
    held by a task of its own until the client loop has sent them all (each send is its own task's
    second step; the gate opens after five turns of the loop), so no step sees a part of them."""
    gate = threading.Event()
    engine._inbox.put(gate.wait)

    async def open_gate():
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()

    async def main():
        return (await asyncio.gather(open_gate(), *(collect(engine, r) for r in reqs)))[1:]
    return asyncio.run(main())


def assert_no_leak(engine: Engine) -> None:
    """Idle engine: every slot is free or cached, nothing is locked, and dropping the cache frees all."""
    def check():
        engine.scheduler.check_integrity()
        assert not engine.scheduler.has_work and engine.cache.protected_size == 0
        pool = engine.runner.pool
        assert pool.available + engine.cache.total_size == pool.num_slots - 1
        engine.cache.reset()
        assert pool.available == pool.num_slots - 1
    engine.call(check)


@pytest.fixture(scope="module")
def qwen3(model_dirs):
    return model_dirs["qwen3"]


def make_engine(path, **kw) -> Engine:
    kw.setdefault("debug_checks", True)
    return Engine(path, device="cpu", dtype="float32", **kw)


def prompts_with_shared_prefixes(vocab: int, count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    system = [rng.randrange(vocab) for _ in range(40)]
    few_shot = system + [rng.randrange(vocab) for _ in range(25)]
    out = []
    for i in range(count):
        head = [system, few_shot, []][i % 3]
        out.append(head + [rng.randrange(vocab) for _ in range(rng.randint(1, 50))])
    return out


def test_greedy_equals_transformers_generate(qwen3):
    engine = make_engine(qwen3, chunk_tokens=16, kv_slots=4096)
    vocab = engine.runner.cfg.vocab_size
    prompts = prompts_with_shared_prefixes(vocab, 16)
    lengths = [random.Random(i).randint(4, 20) for i in range(16)]
    reqs = [GenerateRequest(f"r{i}", SamplingParams(max_tokens=n, **GREEDY), prompt_token_ids=p)
            for i, (p, n) in enumerate(zip(prompts, lengths))]
    results = run_all(engine, reqs, delays=[0.02 * (i % 5) for i in range(16)])
    hf = AutoModelForCausalLM.from_pretrained(qwen3, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None
    for p, n, res in zip(prompts, lengths, results):
        ids = torch.tensor([p])           # an explicit mask: generate() would mask prompt tokens equal to pad
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)[0, len(p):]
        assert res["tokens"][0] == ref.tolist()
        assert res["finish"] == ["length"] and res["usage"].completion_tokens == n
    assert engine.cache.stats.matched_tokens > 0, "the shared prefixes were served from the cache"
    assert_no_leak(engine)
    engine.shutdown()


def test_shared_1000_token_prefix_is_computed_once(qwen3):
    engine = make_engine(qwen3, kv_slots=4096)
    rng = random.Random(1)
    prefix = [rng.randrange(engine.runner.cfg.vocab_size) for _ in range(1000)]
    first = prefix + [5] + [rng.randrange(100, 200) for _ in range(49)]
    second = prefix + [6] + [rng.randrange(100, 200) for _ in range(49)]
    params = SamplingParams(max_tokens=4, **GREEDY)
    [a] = run_all(engine, [GenerateRequest("a", params, prompt_token_ids=first)])
    assert a["usage"].cached_tokens == 0
    before = engine.runner.computed_tokens
    [b] = run_all(engine, [GenerateRequest("b", params, prompt_token_ids=second)])
    assert b["usage"].cached_tokens == 1000 and b["usage"].prompt_tokens == 1050
    assert engine.runner.computed_tokens - before == 50 + 3, "only the new prompt tokens and 3 decodes ran"
    assert_no_leak(engine)
    engine.shutdown()


def test_a_quarter_of_the_memory_gives_the_same_outputs(qwen3):
    rng = random.Random(2)
    vocab = 3000
    prompts = [[rng.randrange(vocab) for _ in range(rng.randint(8, 40))] for _ in range(64)]
    reqs = lambda: [GenerateRequest(f"q{i}", SamplingParams(max_tokens=16, **GREEDY), prompt_token_ids=p)
                    for i, p in enumerate(prompts)]
    need = sum(len(p) + 16 for p in prompts)
    roomy = make_engine(qwen3, kv_slots=need + 64, debug_checks=False)
    expected = run_all(roomy, reqs())
    roomy.shutdown()
    tight = make_engine(qwen3, kv_slots=need // 4, chunk_tokens=64)
    got = run_all(tight, reqs())
    assert [g["tokens"] for g in got] == [e["tokens"] for e in expected]
    assert tight.scheduler.retractions > 0, "the pool was small enough to force retraction"
    assert_no_leak(tight)
    tight.shutdown()


def test_aborts_at_random_points_leave_everything_consistent(qwen3):
    engine = make_engine(qwen3, kv_slots=1500, chunk_tokens=32)
    rng = random.Random(3)
    prompts = prompts_with_shared_prefixes(3000, 32, seed=3)
    reqs = [GenerateRequest(f"x{i}", SamplingParams(max_tokens=24, **GREEDY), prompt_token_ids=p)
            for i, p in enumerate(prompts)]

    async def main():
        tasks = [asyncio.create_task(collect(engine, r)) for r in reqs]
        for i in rng.sample(range(32), 12):
            await asyncio.sleep(rng.random() * 0.05)
            if i % 2:
                tasks[i].cancel()                    # the client went away
            else:
                await engine.abort(reqs[i].request_id)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    for res in results:
        assert isinstance(res, asyncio.CancelledError) or res["finish"][0] in ("length", "abort")
    for _ in range(50):                              # aborts of cancelled clients land within a step or two
        if not engine.call(lambda: engine.scheduler.has_work):
            break
        asyncio.run(asyncio.sleep(0.1))
    assert_no_leak(engine)
    [again] = run_all(engine, reqs[:1])             # and the engine still serves
    assert again["finish"] == ["length"]
    engine.shutdown()


def test_seeded_sampling_ignores_batch_composition(qwen3):
    engine = make_engine(qwen3)
    seeded = lambda rid: GenerateRequest(rid, SamplingParams(max_tokens=12, temperature=1.0, seed=42, ignore_eos=True),
                                         prompt_token_ids=[11, 22, 33, 44])
    [alone] = run_all(engine, [seeded("alone")])
    others = [GenerateRequest(f"o{i}", SamplingParams(max_tokens=20, temperature=0.8, ignore_eos=True,
                                                      seed=i if i % 2 else None), prompt_token_ids=[7 + i] * (3 + i))
              for i in range(7)]
    mixed = run_all(engine, others[:3] + [seeded("mixed")] + others[3:])
    assert mixed[3]["tokens"] == alone["tokens"]
    [other_seed] = run_all(engine, [GenerateRequest("s2", SamplingParams(max_tokens=12, seed=43, ignore_eos=True),
                                                    prompt_token_ids=[11, 22, 33, 44])])
    assert other_seed["tokens"] != alone["tokens"]
    engine.shutdown()
    fresh = make_engine(qwen3)
    assert run_all(fresh, [seeded("again")])[0]["tokens"] == alone["tokens"], "and across engine restarts"
    fresh.shutdown()


def test_n_choices_share_the_prompt_and_stops_cut_cleanly(qwen3):
    engine = make_engine(qwen3)
    prompt = list(range(100, 300))
    before = engine.runner.computed_tokens
    [res] = run_all(engine, [GenerateRequest("n4", SamplingParams(max_tokens=6, temperature=1.0, seed=1,
                                                                  ignore_eos=True), prompt_token_ids=prompt, n=4)])
    assert engine.runner.computed_tokens - before == 200 + 3 + 4 * 5, "prompt once, one token per sibling, decodes"
    assert res["finish"] == ["length"] * 4 and res["usage"].completion_tokens == 24
    assert len({tuple(t) for t in res["tokens"]}) > 1, "choices are sampled independently"

    [free] = run_all(engine, [GenerateRequest("g", SamplingParams(max_tokens=24, **GREEDY), prompt="Hello world")])
    text, tokens = free["text"][0], free["tokens"][0]
    stop = text[len(text) // 2:len(text) // 2 + 3]
    [cut] = run_all(engine, [GenerateRequest("s", SamplingParams(max_tokens=24, stop=[stop], **GREEDY),
                                             prompt="Hello world")])
    assert cut["finish"] == ["stop"] and cut["text"][0] == text[:text.find(stop)]
    [by_id] = run_all(engine, [GenerateRequest("t", SamplingParams(max_tokens=24, stop_token_ids=[tokens[5]], **GREEDY),
                                               prompt="Hello world")])
    first = tokens.index(tokens[5])
    assert by_id["finish"] == ["stop"] and by_id["tokens"][0] == tokens[:first + 1]
    assert by_id["text"][0] == engine.tokenizer.decode(tokens[:first], skip_special_tokens=True)
    assert_no_leak(engine)
    engine.shutdown()


def test_a_failing_step_fails_its_requests_and_the_engine_serves_on(qwen3, monkeypatch):
    engine = make_engine(qwen3)
    forward = engine.runner.forward
    calls = []

    def flaky(batch, *window):
        calls.append(len(batch.reqs))
        if len(calls) == 3:
            raise RuntimeError("injected fault")
        return forward(batch, *window)

    monkeypatch.setattr(engine.runner, "forward", flaky)
    reqs = [GenerateRequest(f"f{i}", SamplingParams(max_tokens=8, **GREEDY), prompt_token_ids=[3 + i] * 9)
            for i in range(4)]

    async def main():
        return await asyncio.gather(*(collect(engine, r) for r in reqs), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "injected fault" in str(r) for r in results)
    assert_no_leak(engine)
    [ok] = run_all(engine, reqs[:1])
    assert ok["finish"] == ["length"] and len(ok["tokens"][0]) == 8
    engine.shutdown()


def test_logprobs_are_the_models_log_softmax(qwen3):
    engine = make_engine(qwen3)
    prompt = [9, 8, 7, 6, 5, 4]
    deltas = []

    async def main():
        req = GenerateRequest("lp", SamplingParams(max_tokens=5, logprobs=True, top_logprobs=3, **GREEDY),
                              prompt_token_ids=prompt)
        async for d in engine.generate(req):
            deltas.append(d)

    asyncio.run(main())
    tokens = [t for d in deltas for t in d.token_ids]
    entries = [lp for d in deltas for lp in d.logprobs]
    hf = AutoModelForCausalLM.from_pretrained(qwen3, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1:-1].log_softmax(-1)
    for i, (tok, entry) in enumerate(zip(tokens, entries)):
        assert entry.token_id == tok and abs(entry.logprob - ref[i, tok].item()) < 1e-4
        assert [t for t, _, _ in entry.top] == ref[i].topk(3).indices.tolist()
        assert entry.token == engine.tokenizer.decode([tok])
    engine.shutdown()


def test_namespaces_do_not_share_cache_and_context_limits_are_enforced(qwen3):
    from gateway.protocol import InvalidRequest
    engine = make_engine(qwen3, max_context=256)
    prompt = list(range(50, 150))
    params = SamplingParams(max_tokens=2, **GREEDY)
    a, b, c = run_all(engine, [GenerateRequest("a", params, prompt_token_ids=prompt, namespace="tenant-a")])[0], \
        run_all(engine, [GenerateRequest("b", params, prompt_token_ids=prompt, namespace="tenant-b")])[0], \
        run_all(engine, [GenerateRequest("c", params, prompt_token_ids=prompt, namespace="tenant-a")])[0]
    assert (a["usage"].cached_tokens, b["usage"].cached_tokens, c["usage"].cached_tokens) == (0, 0, 99)
    for bad in (GenerateRequest("long", params, prompt_token_ids=[1] * 256),
                GenerateRequest("much", SamplingParams(max_tokens=200), prompt_token_ids=[1] * 100)):
        with pytest.raises(InvalidRequest, match="maximum context length is 256"):
            run_all(engine, [bad])
    with pytest.raises(InvalidRequest) as err:
        run_all(engine, [GenerateRequest("bias", SamplingParams(logit_bias={10**9: 1.0}), prompt_token_ids=[1, 2])])
    assert err.value.param == "logit_bias"
    assert run_all(engine, [GenerateRequest("ok", params, prompt_token_ids=prompt)])[0]["finish"] == ["length"]
    assert_no_leak(engine)
    engine.shutdown()


def test_requests_sharing_an_uncached_prefix_compute_it_once(qwen3):
    """Arriving together, requests with a common new prefix compute it once: the later ones wait a
    step for it to be cached instead of prefilling it beside the first (with chunked prefill too)."""
    prefix = list(range(100, 700))
    reqs = lambda tag: [GenerateRequest(f"{tag}{i}", SamplingParams(max_tokens=2, **GREEDY),
                                        prompt_token_ids=prefix + [800 + i] * 5) for i in range(4)]
    expected = 605 + 3 * 5 + 4 * 1               # prefix + tail once, the other tails, one decode each
    for chunk in (2048, 256):
        engine = make_engine(qwen3, chunk_tokens=chunk)
        before = engine.runner.computed_tokens
        shared = run_all(engine, reqs("s"))
        assert engine.runner.computed_tokens - before == expected, chunk
        engine.shutdown()
    alone = make_engine(qwen3, radix=False)
    assert [r["tokens"] for r in run_all(alone, reqs("a"))] == [r["tokens"] for r in shared]
    alone.shutdown()


def test_families_sharing_a_prefix_are_admitted_together(qwen3):
    """Shuffled requests of 4 families (4 each, a 64-token opening per family) through 8 places: each
    full decode batch holds 2 whole families, so each shared prefix is read once per family."""
    rng = random.Random(3)
    openings = [[rng.randrange(50, 1000) for _ in range(64)] for _ in range(4)]
    reqs = [GenerateRequest(f"f{f}-{i}", SamplingParams(max_tokens=6, **GREEDY),
                            prompt_token_ids=openings[f] + [1000 + 10 * f + i] * 3) for f in range(4) for i in range(4)]
    rng.shuffle(reqs)
    engine = make_engine(qwen3, max_running=8)
    forward, batches = engine.runner.forward, []

    def recording(batch, *window):
        if not batch.is_prefill and len(batch.reqs) == 8:
            batches.append({r.prompt_ids[0] for r in batch.reqs})
        return forward(batch, *window)
    engine.runner.forward = recording
    run_arriving_together(engine, reqs)      # arrivals spread over steps could split a family
    assert batches and all(len(families) == 2 for families in batches), batches
    assert_no_leak(engine)
    engine.shutdown()
