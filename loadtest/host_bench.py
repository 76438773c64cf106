"""The engine's host cost per decode step, with the model forward replaced by a no-op.

    python -m loadtest.host_bench [--requests 1024] [--max-tokens 64] [--repeat 3]

Every request decodes together (`ignore_eos`, greedy), consumed through `Engine.generate` by one
asyncio client loop as the API would. The forward returns constant logits at once, so what remains
is everything the host does per step: scheduling, sampling launch, output (detokenize, Deltas) and
the client loop's share of the GIL. The tokenizer is a small trained BPE, so CPU sampling stays cheap. On a GPU this is the floor under a decode step's wall time that
overlap can only hide; it is printed per step and per token beside the device step it must hide
behind (`--device-step-ms`, e.g. the 1B shape's forward at that batch on an H100).
"""
from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import torch

from gateway.engine.engine import Engine
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS
from gateway.protocol import GenerateRequest, SamplingParams
from loadtest.engine_bench import drive


def null_forward(engine: Engine) -> None:
    """Replace the model step by constant logits that favour a different token per request row."""
    vocab = engine.runner.cfg.vocab_size
    table = torch.zeros((engine.scheduler.max_running, vocab))
    table[torch.arange(table.shape[0]), torch.arange(table.shape[0]) % vocab] = 1.0
    engine.runner.forward = lambda batch, *window: table[:len(batch.reqs)]


def count_step_cpu(engine: Engine) -> list[float]:
    """Engine-thread CPU seconds spent in steps, summed into the returned cell (robust to other load)."""
    spent = [0.0]
    step = engine.step

    def timed() -> None:
        t = time.thread_time()
        step()
        spent[0] += time.thread_time() - t
    engine.step = timed
    return spent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1024)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device-step-ms", type=float, default=17.0)
    ap.add_argument("--decode-steps", type=int, default=8, help="the longest decode window (1: a host round per step)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(PRESETS["tiny-qwen3"], Path(tmp) / "m", tokenizer="trained")
        slots = args.requests * (args.prompt_len + args.max_tokens) + 1024
        engine = Engine(path, device="cpu", dtype="float32", kv_slots=slots, max_running=args.requests,
                        chunk_tokens=1 << 20, decode_steps=args.decode_steps)
        null_forward(engine)
        spent = count_step_cpu(engine)
        rng = random.Random(0)
        vocab = min(engine.runner.cfg.vocab_size, 100_000)
        best = None
        for rep in range(args.repeat):
            reqs = [GenerateRequest(f"{rep}-{i}", SamplingParams(max_tokens=args.max_tokens, temperature=0,
                                                                 ignore_eos=True),
                                    prompt_token_ids=[rng.randrange(vocab) for _ in range(args.prompt_len)])
                    for i in range(args.requests)]
            engine.timings.reset()
            spent[0] = 0.0
            start, cpu = time.perf_counter(), time.process_time()
            tokens = asyncio.run(drive(engine, reqs))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            d = engine.timings.decode
            per = d.per_step_us()
            step_ms = wall * 1e3 / max(d.steps, 1)
            print(f"run {rep}: {tokens:,} tokens in {wall:.2f} s, {d.steps} decode steps of {per['batch']:.0f}: "
                  f"{step_ms:.2f} ms per step wall (schedule {per['schedule'] / 1e3:.2f}, forward+sample "
                  f"{per['forward'] / 1e3:.2f}, output {per['finish'] / 1e3:.2f}), {wall * 1e6 / tokens:.1f} µs "
                  f"per token; CPU per token: engine steps {spent[0] * 1e6 / tokens:.1f} µs, all threads "
                  f"{cpu * 1e6 / tokens:.1f} µs", flush=True)
            best = step_ms if best is None else min(best, step_ms)
            cpu_step = spent[0] * 1e3 / max(d.steps, 1)
        engine.shutdown()
    print(f"host per decode step at batch {args.requests}: {best:.2f} ms wall (best of {args.repeat}) = "
          f"{best / args.device_step_ms:.2f}x a {args.device_step_ms:g} ms device step; engine-thread CPU "
          f"{cpu_step:.2f} ms per step (last run)")


if __name__ == "__main__":
    main()
