"""Batch-1 decode step time against the memory-bandwidth limit, for the Llama-3.2-1B and Llama-3.1-8B
shapes in bf16 with random weights.

    PYTHONPATH=$PWD python -m loadtest.decode_bench            # both shapes, contexts 128, 2048, 8192
    PYTHONPATH=$PWD python -m loadtest.decode_bench --quick    # the 1B shape at one context

A batch-1 decode step reads every weight once, so weight bytes / copy bandwidth bounds its time from
below (the issue's limit; the goal is judged against it). The bandwidth is measured in the same run: a
1 GiB device-to-device copy, bytes read + written per second (loadtest.kernel_bench.copy_bandwidth:
eager, or by the SMs in a graph; a `copy_` captured in a graph runs on a copy engine at ~65% of that,
the limit figures before 2026-11-22 used). A step only reads, and HBM reads faster than it copies, so
a step can beat that limit; 'x read' is the ratio to weight bytes over the read rate measured in the
same run (loadtest.kernel_bench.read_bandwidth), the tighter bound. A third limit adds the KV the step
reads at that context (weights + KV bytes / copy bandwidth).

The models are built directly on the GPU: ModelRunner(random_weights=True) reads only a config.json
(written by gateway.modelgen for the preset, with Llama 3's 128256-token vocabulary) and draws the
weights on the device, so no 16 GB checkpoint is written or read. The K/V a step attends to is whatever
the pool holds (zeros): attention's cost does not depend on the values, so no prefill is run.

Step: one ModelRunner.run of one new token (input staging, graph replay of forward + logits, logits copy;
no sampling), 128 steps back to back with the context growing by one each, timed with CUDA events.
"+sync" synchronises the host after every step, as the engine loop does today. Also timed: the Triton
backend without graphs and the torch reference backend (eager), each over fewer steps, and "unfused":
graphs of the general layer path instead of the fused weight reads (models.fused_decode). GPU-only.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from gateway.modelgen.builder import model_config
from gateway.modelgen.shapes import PRESETS
from loadtest.kernel_bench import copy_bandwidth, read_bandwidth

LLAMA3_VOCAB = 128256
SHAPES = ("llama-3.2-1b", "llama-3.1-8b")


def write_config(preset: str, root: Path) -> Path:
    path = root / preset
    path.mkdir()
    cfg = model_config(PRESETS[preset], LLAMA3_VOCAB, "bfloat16", {"bos_token_id": 128000, "eos_token_id": 128001})
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def make_runner(path: Path, attention: str, graphs: bool, max_context: int, fused: bool = True):
    """`fused`: one-token decodes take the fused weight reads (models.fused_decode) where the model allows."""
    from gateway.engine.cuda_graphs import DecodeGraphs
    from gateway.engine.runner import ModelRunner
    runner = ModelRunner(path, torch.device("cuda"), "bfloat16", kv_slots=max_context + 1, max_running=1,
                         max_context=max_context, attention=attention, cuda_graphs=False, random_weights=True)
    runner.model.model.fused_decode &= fused
    if graphs:
        runner.graphs = DecodeGraphs(runner.model, runner.backend, runner.req_pool.table, 1)
    row = runner.req_pool.alloc()
    slots = runner.pool.alloc(max_context)
    runner.req_pool.table[row, :max_context] = torch.tensor(slots, dtype=torch.int32, device="cuda")
    return runner, row


def step_time(runner, row: int, context: int, steps: int, graphs: bool = True, sync: bool = False) -> float:
    """Seconds per decode step of one sequence growing from `context` tokens, after a short warm-up."""
    tokens = torch.randint(LLAMA3_VOCAB, (steps + 4,)).tolist()

    def step(i: int) -> None:
        runner.run([tokens[i]], [context + i], [context + i + 1], [1], [row], graphs=graphs)
        if sync:
            torch.cuda.synchronize()

    for i in range(4):
        step(i)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(steps):
        step(i)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / steps


def measure(path: Path, attention: str, graphs: bool, contexts: list[int], steps: int,
            fused: bool = True) -> tuple[dict, object]:
    """{context: [seconds per step, ...]} for one runner, built here and freed on return; and the config."""
    max_context = max(contexts) + steps + 8
    runner, row = make_runner(path, attention, graphs, max_context, fused)
    times = {}
    for context in contexts:
        if graphs:
            times[context] = [step_time(runner, row, context, steps),
                              step_time(runner, row, context, steps, sync=True)]
        times.setdefault(context, []).append(step_time(runner, row, context, max(steps // 8, 8), graphs=False))
    weights = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    sizes = runner.graphs.sizes if runner.graphs else None
    cfg = runner.cfg
    del runner
    gc.collect()
    torch.cuda.empty_cache()
    return times, (cfg, weights, sizes)


def bench_shape(preset: str, root: Path, contexts: list[int], steps: int, bandwidth: float,
                read_rate: float) -> list[float]:
    """Prints one table for the shape; returns the graph step's ratio to the weights-only limit per context."""
    path = write_config(preset, root)
    triton_times, (cfg, weights, sizes) = measure(path, "triton", True, contexts, steps)
    general_times, _ = measure(path, "triton", True, contexts, steps, fused=False)
    torch_times, _ = measure(path, "torch", False, contexts, steps)
    kv_per_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 2
    limit = weights / bandwidth
    read_limit = weights / read_rate
    print(f"\n{preset}: {weights / 1e9:.2f} GB of bf16 weights (vocab {cfg.vocab_size}, random, built on the GPU); "
          f"limit {limit * 1e3:.3f} ms per batch-1 step at the copy rate, {read_limit * 1e3:.3f} ms at the read rate; "
          f"decode graphs {sizes}")
    print(f"{'context':>8} {'graph ms':>9} {'x limit':>8} {'x read':>7} {'+KV limit':>10} {'x +KV':>6} {'+sync ms':>9} "
          f"{'eager ms':>9} {'unfused ms':>10} {'torch ms':>9} {'torch/graph':>12}")
    ratios = []
    for context in contexts:
        (graph, synced, eager), (torch_eager,) = triton_times[context], torch_times[context]
        unfused = general_times[context][0]
        kv_limit = (weights + context * kv_per_token) / bandwidth
        ratios.append(graph / limit)
        print(f"{context:>8} {graph * 1e3:>9.3f} {graph / limit:>8.2f} {graph / read_limit:>7.2f} {kv_limit * 1e3:>10.3f} "
              f"{graph / kv_limit:>6.2f} {synced * 1e3:>9.3f} {eager * 1e3:>9.3f} {unfused * 1e3:>10.3f} {torch_eager * 1e3:>9.3f} {torch_eager / graph:>11.1f}x")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 1B shape at context 2048 only")
    ap.add_argument("--contexts", type=int, nargs="+", default=[128, 2048, 8192])
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("decode_bench measures decode steps on a GPU and needs a CUDA device; none is visible here.")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("decode_bench: unset TRITON_INTERPRET (the interpreter is for tests, not timings).")
    try:
        import triton
    except ImportError:
        sys.exit("decode_bench needs triton: pip install 'radixgate[gpu]'")
    shapes, contexts = (SHAPES[:1], [2048]) if args.quick else (args.shapes, args.contexts)
    torch.manual_seed(0)
    bandwidth, read_rate = copy_bandwidth() * 1e9, read_bandwidth() * 1e9
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    print(f"copy bandwidth measured now: {bandwidth / 1e9:.0f} GB/s (1 GiB device-to-device, read + write; "
          "loadtest.kernel_bench.copy_bandwidth); read bandwidth "
          f"{read_rate / 1e9:.0f} GB/s (1 GiB summed; loadtest.kernel_bench.read_bandwidth), 'x read'")
    print("graph: Triton attention, CUDA graph replay; +sync: host sync after each step; eager: Triton without "
          "graphs; torch: the torch reference backend, eager")
    with tempfile.TemporaryDirectory() as tmp:
        ratios = {s: bench_shape(s, Path(tmp), contexts, args.steps, bandwidth, read_rate) for s in shapes}
    print()
    for shape, per_context in ratios.items():
        listed = ", ".join(f"{r:.2f}x at {c}" for c, r in zip(contexts, per_context))
        print(f"{shape}: graph step / weights-only limit {listed}; goal <= 1.15x: "
              f"{'met' if max(per_context) <= 1.15 else 'missed'}")


if __name__ == "__main__":
    main()
