"""Scheduler CPU time per step beside the model step time, with many requests decoding at once.

    python -m loadtest.engine_bench                          # tiny random-weight Qwen3 on the CPU
    python -m loadtest.engine_bench --preset llama-3.2-1b    # the Llama-3.2-1B shape (on a GPU)

Prints, per decode step at full batch: scheduling (CPU), the model forward, sampling + output
processing, and the scheduler's share of the step. The model step is the peer the scheduler is
measured against: a scheduler that costs a large fraction of it leaves the device idle.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from gateway.engine.engine import Engine
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS
from gateway.protocol import GenerateRequest, SamplingParams


async def drive(engine: Engine, reqs: list[GenerateRequest]) -> int:
    async def one(r):
        n = 0
        async for d in engine.generate(r):
            n += len(d.token_ids)
        return n
    return sum(await asyncio.gather(*(one(r) for r in reqs)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, help="checkpoint directory (default: build --preset)")
    ap.add_argument("--preset", default="tiny-qwen3", choices=sorted(PRESETS))
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or make_model(PRESETS[args.preset], Path(tmp) / args.preset, dtype="bfloat16"
                                        if args.preset.startswith(("llama-", "qwen")) else "float32",
                                        tokenizer="trained")
        slots = args.requests * (args.prompt_len + args.max_tokens) + 1024
        engine = Engine(path, device=args.device, dtype=args.dtype, kv_slots=slots, max_running=args.requests,
                        chunk_tokens=8192)
        rng = random.Random(0)
        vocab = engine.runner.cfg.vocab_size
        make = lambda tag: [GenerateRequest(f"{tag}{i}", SamplingParams(max_tokens=args.max_tokens, temperature=0,
                                                                         ignore_eos=True),
                                            prompt_token_ids=[rng.randrange(vocab) for _ in range(args.prompt_len)])
                            for i in range(args.requests)]
        asyncio.run(drive(engine, make("warm")[:8]))
        engine.timings.reset()
        start = time.perf_counter()
        tokens = asyncio.run(drive(engine, make("r")))
        wall = time.perf_counter() - start
        d, p = engine.timings.decode.per_step_us(), engine.timings.prefill.per_step_us()
        engine.shutdown()
    print(f"model {args.preset if not args.model else args.model} on {engine.runner.device}, "
          f"{args.requests} requests x {args.prompt_len} prompt + {args.max_tokens} output tokens")
    print(f"{'phase':<8} {'steps':>6} {'batch':>7} {'schedule us':>12} {'forward us':>11} {'sample+out us':>14}")
    for name, t, per in (("prefill", engine.timings.prefill, p), ("decode", engine.timings.decode, d)):
        print(f"{name:<8} {t.steps:>6} {per['batch']:>7.1f} {per['schedule']:>12.0f} {per['forward']:>11.0f} "
              f"{per['finish']:>14.0f}")
    print(f"decode: scheduler CPU {d['schedule']:.0f} us per step = {d['schedule'] / d['forward']:.3f} x the model "
          f"step ({d['forward']:.0f} us); sampling+output {d['finish'] / d['forward']:.3f} x")
    print(f"throughput {tokens / wall:.0f} output tokens/s over {wall:.1f} s")


if __name__ == "__main__":
    main()
