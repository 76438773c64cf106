"""Offline throughput of the local engine, and of `transformers` `generate()` on the same workload.

    PYTHONPATH=$PWD python -m loadtest.throughput_bench                          # on a GPU: both workloads
    python -m loadtest.throughput_bench --preset tiny-llama --requests 16 --groups 2  # a CPU smoke run

Workloads (token ids drawn from a seed, `ignore_eos`, temperature 1; every request is submitted at once):
- random: `--requests` (256) requests with input and output lengths uniform in [100, 1024]. Output
  tokens per second of the engine, and of `transformers` `generate()` (sdpa attention, left-padded
  batches of `--hf-batch`, each batch run to its longest output; only the tokens asked for count)
  over the first `--hf-requests` of the same requests.
- shared-prefix: `--groups` (64) groups x 16 prompts, each a group's 2,048-token system prompt and a
  128-token question, 256-token answers; output tokens per second with the radix cache on and off (and
  with `--ungrouped`, on without decode attention reading each shared prefix once per group).

The model has the preset's shape with Llama 3's real tokenizer (npm, cached) and random bf16 weights
drawn on the device (ModelRunner(random_weights=True)): throughput does not depend on the values when
output lengths are fixed. The KV cache takes `--mem-fraction` of the GPU's memory.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gateway.engine.engine import Engine
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS
from gateway.protocol import GenerateRequest, SamplingParams


@dataclass(slots=True)
class Job:
    prompt: list[int]
    output_len: int


def random_jobs(n: int, low: int, high: int, vocab: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    return [Job([rng.randrange(vocab) for _ in range(rng.randint(low, high))], rng.randint(low, high))
            for _ in range(n)]


def shared_prefix_jobs(groups: int, per_group: int, system: int, question: int, answer: int, vocab: int,
                       seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(groups):
        prefix = [rng.randrange(vocab) for _ in range(system)]
        jobs += [Job(prefix + [rng.randrange(vocab) for _ in range(question)], answer) for _ in range(per_group)]
    rng.shuffle(jobs)
    return jobs


async def drive(engine: Engine, jobs: list[Job], tag: str) -> int:
    async def one(i: int, job: Job) -> int:
        req = GenerateRequest(f"{tag}-{i}", SamplingParams(max_tokens=job.output_len, temperature=1.0,
                                                           ignore_eos=True), prompt_token_ids=job.prompt)
        n = 0
        async for delta in engine.generate(req):
            n += len(delta.token_ids)
        return n
    return sum(await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs))))


@dataclass(slots=True)
class EngineRun:
    seconds: float
    tokens: int
    computed: int                   # tokens run through the model
    prefill_steps: int
    decode: dict[str, float]        # per decode step: batch, schedule / forward / finish µs


def run_engine(path: Path, jobs: list[Job], args, radix: bool = True, group_prefixes: bool = True) -> EngineRun:
    """The jobs through a fresh engine, after a short warm-up; the engine's memory is freed on return."""
    longest = max(len(j.prompt) + j.output_len for j in jobs)
    sizing = {"mem_fraction": args.mem_fraction} if torch.cuda.is_available() else \
        {"kv_slots": sum(len(j.prompt) + j.output_len for j in jobs) + 1024}
    engine = Engine(path, device=args.device, dtype="bfloat16" if torch.cuda.is_available() else "float32",
                    max_running=args.max_running, chunk_tokens=args.chunk_tokens, max_context=longest + 8,
                    radix=radix, random_weights=True, group_prefixes=group_prefixes, decode_steps=args.decode_steps,
                    **sizing)
    try:
        vocab = engine.runner.cfg.vocab_size
        # Warm-up compiles what the run will launch: decode graphs are captured already, the kernels
        # of grouped prefix reads are not.
        asyncio.run(drive(engine, random_jobs(8, 16, 64, vocab, seed=99), "warm"))
        if torch.cuda.is_available():
            system = min(2048, longest - 64)
            asyncio.run(drive(engine, shared_prefix_jobs(2, 12, system, 16, 8, vocab, seed=98), "warm-shared"))
        engine.cache.reset()
        engine.timings.reset()
        computed = engine.runner.computed_tokens
        start = time.perf_counter()
        profile = cProfile.Profile() if args.profile else None
        if profile is not None:          # the engine thread's steps (and on Python 3.12+ other threads too)
            step = engine.step
            engine.step = lambda: profile.runcall(step)
        tokens = asyncio.run(drive(engine, jobs, "job"))
        seconds = time.perf_counter() - start
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        d = engine.timings.decode
        run = EngineRun(seconds, tokens, engine.runner.computed_tokens - computed, engine.timings.prefill.steps,
                        {**d.per_step_us(), "steps": d.steps, "grouped": engine.runner.grouped_decodes})
    finally:
        engine.shutdown()
        del engine
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return run


def run_transformers(path: Path, jobs: list[Job], batch: int, device: str) -> tuple[float, int]:
    """(seconds, output tokens asked for) of `generate()` over the jobs in left-padded batches."""
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(path)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype, attn_implementation="sdpa").eval()
    pad = 0
    tokens, start = 0, time.perf_counter()
    for b in range(0, len(jobs), batch):
        part = jobs[b:b + batch]
        width = max(len(j.prompt) for j in part)
        ids = torch.tensor([[pad] * (width - len(j.prompt)) + j.prompt for j in part], device=device)
        mask = torch.tensor([[0] * (width - len(j.prompt)) + [1] * len(j.prompt) for j in part], device=device)
        longest = max(j.output_len for j in part)
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=longest, min_new_tokens=longest,
                           do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=pad)
        tokens += sum(j.output_len for j in part)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return seconds, tokens


def report(name: str, seconds: float, tokens: int, run: EngineRun | None = None) -> float:
    rate = tokens / seconds
    extra = ""
    if run is not None:
        d = run.decode
        step = (d["schedule"] + d["forward"] + d["finish"]) / 1e3
        grouped = f" ({d['grouped']} grouped)" if d["grouped"] else ""
        extra = (f"; {run.computed:,} tokens computed, {run.prefill_steps} extend + {d['steps']} decode steps"
                 f"{grouped}, decode batch {d['batch']:.0f}, step {step:.1f} ms (schedule {d['schedule'] / 1e3:.1f}, "
                 f"forward {d['forward'] / 1e3:.1f}, output {d['finish'] / 1e3:.1f})")
    print(f"  {name:<28} {tokens:>9,} output tokens in {seconds:7.1f} s = {rate:9,.0f} tok/s{extra}", flush=True)
    return rate


def report_engine(name: str, run: EngineRun) -> float:
    return report(name, run.seconds, run.tokens, run)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="llama-3.2-1b", choices=sorted(PRESETS))
    ap.add_argument("--workloads", nargs="+", default=["random", "shared-prefix"], choices=["random", "shared-prefix"])
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--min-len", type=int, default=100)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--hf-requests", type=int, default=64, help="how many of the random requests transformers runs")
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--groups", type=int, default=64)
    ap.add_argument("--per-group", type=int, default=16)
    ap.add_argument("--system-len", type=int, default=2048)
    ap.add_argument("--question-len", type=int, default=128)
    ap.add_argument("--answer-len", type=int, default=256)
    ap.add_argument("--max-running", type=int, default=256)
    ap.add_argument("--chunk-tokens", type=int, default=8192)
    ap.add_argument("--mem-fraction", type=float, default=0.85)
    ap.add_argument("--decode-steps", type=int, default=8, help="the longest decode window (1: a host round per step)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", type=int, default=0, help="print the engine step's N costliest functions")
    ap.add_argument("--radix", nargs="+", default=["on", "off"], choices=["on", "off"],
                    help="shared-prefix: which radix cache settings to run")
    ap.add_argument("--ungrouped", action="store_true",
                    help="also run shared-prefix with the cache on and Engine(group_prefixes=False)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else "cpu"
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(PRESETS[args.preset], Path(tmp) / args.preset, dtype="bfloat16", tokenizer="auto",
                          weights=False)
        vocab = min(128000, json.loads((path / "config.json").read_text())["vocab_size"])   # no special tokens
        gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        print(f"{args.preset} (random bf16 weights) on {gpu}, torch {torch.__version__}")
        if "random" in args.workloads:
            jobs = random_jobs(args.requests, args.min_len, args.max_len, vocab, args.seed)
            print(f"random: {len(jobs)} requests, input and output lengths uniform in [{args.min_len}, {args.max_len}]")
            ours = report_engine("radixgate", run_engine(path, jobs, args))
            figures["random"] = ours
            if args.hf_requests:
                peer = report(f"transformers (first {min(args.hf_requests, len(jobs))})",
                              *run_transformers(path, jobs[:args.hf_requests], args.hf_batch, device))
                figures["random_vs_transformers"] = ours / peer
                print(f"  radixgate / transformers: {ours / peer:.1f}x (goal >= 20x)")
        if "shared-prefix" in args.workloads:
            jobs = shared_prefix_jobs(args.groups, args.per_group, args.system_len, args.question_len,
                                      args.answer_len, vocab, args.seed)
            print(f"shared-prefix: {args.groups} groups x {args.per_group} prompts, {args.system_len}-token system "
                  f"prompt + {args.question_len}-token question, {args.answer_len}-token answers")
            on = report_engine("radix cache on", run_engine(path, jobs, args, radix=True)) if "on" in args.radix else 0
            if args.ungrouped:
                ungrouped = report_engine("on, ungrouped prefix reads", run_engine(path, jobs, args, group_prefixes=False))
            if "off" in args.radix:
                off = report_engine("radix cache off", run_engine(path, jobs, args, radix=False))
                figures["shared_prefix_ratio"] = on / off
                print(f"  radix on / off: {on / off:.2f}x (goal >= 3x)"
                      + (f"; ungrouped prefix reads / off: {ungrouped / off:.2f}x" if args.ungrouped else ""))
    return figures


if __name__ == "__main__":
    main()
