"""The Triton kernels against the limits of the GPU they run on and against their torch references.

    PYTHONPATH=$PWD python -m loadtest.kernel_bench            # Llama-3.2-1B and Llama-3.1-8B shapes, bf16
    PYTHONPATH=$PWD python -m loadtest.kernel_bench --quick    # fewer points, for a smoke run

Measured in the same run: a ~1 GiB device-to-device copy (`dst.copy_(src)`, bytes read + written) is
the bandwidth limit, an 8192^3 bf16 matmul the compute limit. Decode attention, the KV store and
RMSNorm are memory-bound: each prints GB/s (decode: the KV it reads plus q and out) and the ratio to
the copy; so does the grammar bitmask (its mask and logits read, the logits written). Extend attention
is compute-bound: TFLOP/s of the causal work (4 * pairs * head_dim * heads) and the ratio to the
matmul. Kernels are timed as CUDA graphs of calls (how decode runs in the engine,
so no launch overhead), after a warm-up, with CUDA events; the calls cycle over enough layers of
the pool that the working set exceeds L2, and slots are shuffled across the pool. The torch
references run as the torch backend would (attention eagerly, sequence by sequence, in float32).
GPU-only.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

DEVICE = "cuda"
L2_BEATEN = 256 << 20           # bytes of distinct data per graph, well past any L2
MAX_LAYERS = 512            # small shapes need many distinct layers to get past L2


@dataclass(frozen=True)
class Shape:
    name: str
    heads: int
    kv_heads: int
    dim: int
    hidden: int


SHAPES = [Shape("llama-3.2-1b", 32, 8, 64, 2048), Shape("llama-3.1-8b", 32, 8, 128, 4096)]


def graph_time(calls: list[Callable[[], object]], repeats: int = 10) -> float:
    """Seconds per call: the calls captured once in a CUDA graph, replayed `repeats` times."""
    for call in calls:
        call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / (repeats * len(calls))


def eager_time(call: Callable[[], object], repeats: int = 2) -> float:
    call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def pool(layer_bytes: int, slots: int, shape: Shape) -> tuple[torch.Tensor, torch.Tensor, int]:
    """K and V pools of as many layers as it takes to beat L2, and that count."""
    layers = max(1, min(MAX_LAYERS, -(-L2_BEATEN // layer_bytes)))
    size = (layers, slots, shape.kv_heads, shape.dim)
    return (torch.empty(size, dtype=torch.bfloat16, device=DEVICE).normal_(),
            torch.empty(size, dtype=torch.bfloat16, device=DEVICE).normal_(), layers)


def slot_table(batch: int, length: int) -> torch.Tensor:
    return (torch.randperm(batch * length, device=DEVICE) + 1).int().view(batch, length)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:>10.1f}"


def copy_bandwidth() -> float:
    """GB/s of a 1 GiB device-to-device copy, bytes read + written: the faster of an eager `copy_` and
    an elementwise copy by the SMs replayed in a CUDA graph. Not `copy_` inside a graph: captured, it
    becomes a memcpy node that runs on a copy engine (2.77 TB/s on an H200, against 4.25 TB/s eagerly
    and 4.29 by the SMs), which would understate every limit measured against it."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    src16, dst16 = src.view(torch.bfloat16), dst.view(torch.bfloat16)
    by_sms = graph_time([lambda: torch.mul(src16, 1, out=dst16)], repeats=20)
    eager = eager_time(lambda: dst.copy_(src), repeats=20)
    del src, dst, src16, dst16
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / min(by_sms, eager) / 1e9


def read_bandwidth() -> float:
    """GB/s of reading 1 GiB once (a float32 sum by the SMs, replayed in a graph). A batch-1 decode step
    only reads its weights, and HBM can read faster than it copies (a copy turns the bus around between
    reads and writes), so weight bytes over this rate is the tighter of the two limits."""
    src = torch.empty(1 << 28, dtype=torch.float32, device=DEVICE).normal_()
    out = torch.empty((), dtype=torch.float32, device=DEVICE)
    seconds = graph_time([lambda: torch.sum(src, dim=0, out=out)], repeats=20)
    del src
    torch.cuda.empty_cache()
    return (1 << 30) / seconds / 1e9


def limits() -> tuple[float, float]:
    copy_gbs = copy_bandwidth()
    a, b = (torch.randn(8192, 8192, dtype=torch.bfloat16, device=DEVICE) for _ in range(2))
    c = torch.empty_like(a)
    mm_tflops = 2 * 8192 ** 3 / graph_time([lambda: torch.mm(a, b, out=c)], repeats=10) / 1e12
    return copy_gbs, mm_tflops


def bench_decode(shape: Shape, batches: list[int], contexts: list[int], copy_gbs: float, ref_limit: int) -> None:
    from kernels.decode_attention import choose_max_splits, decode_attention, decode_attention_ref
    print(f"\ndecode attention, {shape.name} ({shape.heads}/{shape.kv_heads} heads, dim {shape.dim})")
    print(f"{'batch':>6} {'context':>8} {'splits':>6} {'us':>10} {'GB/s':>8} {'x copy':>7} {'ref us':>10} "
          f"{'speedup':>8}")
    scale = shape.dim ** -0.5
    for context in contexts:
        for batch in batches:
            slots = batch * context + 1
            k, v, layers = pool(slots * shape.kv_heads * shape.dim * 4, slots, shape)
            table = slot_table(batch, context)
            seq_lens = torch.full((batch,), context, dtype=torch.int32, device=DEVICE)
            q = torch.randn(batch, shape.heads, shape.dim, dtype=torch.bfloat16, device=DEVICE)
            out = torch.empty_like(q)
            splits = choose_max_splits(batch, shape.kv_heads, context, q.device)
            t = graph_time([lambda i=i: decode_attention(q, k[i], v[i], table, seq_lens, scale, out=out)
                            for i in range(layers)])
            moved = batch * context * shape.kv_heads * shape.dim * 2 * 2 + 2 * q.numel() * 2
            gbs = moved / t / 1e9
            ref, speed = "-".rjust(10), "-".rjust(8)
            if batch * context <= ref_limit:
                rt = eager_time(lambda: decode_attention_ref(q, k[0], v[0], table, seq_lens, scale), repeats=1)
                ref, speed = us(rt), f"{rt / t:>7.1f}x"
            print(f"{batch:>6} {context:>8} {splits:>6} {us(t)} {gbs:>8.0f} {gbs / copy_gbs:>7.2f} {ref} {speed}")
            del k, v, table
            torch.cuda.empty_cache()


def bench_extend(shape: Shape, cases: list[tuple[int, int, int]], mm_tflops: float) -> None:
    from kernels.extend_attention import extend_attention, extend_attention_ref
    print(f"\nextend attention, {shape.name}: batch x new tokens on a cached prefix")
    print(f"{'batch':>6} {'new':>6} {'prefix':>7} {'us':>10} {'TFLOP/s':>8} {'x matmul':>9} {'ref us':>10} "
          f"{'speedup':>8}")
    scale = shape.dim ** -0.5
    for batch, new, prefix in cases:
        length = prefix + new
        slots = batch * length + 1
        k, v, layers = pool(slots * shape.kv_heads * shape.dim * 4, slots, shape)
        table = slot_table(batch, length)
        seq_lens = torch.full((batch,), length, dtype=torch.int32, device=DEVICE)
        ext = torch.full((batch,), new, dtype=torch.int32, device=DEVICE)
        q = torch.randn(batch * new, shape.heads, shape.dim, dtype=torch.bfloat16, device=DEVICE)
        out = torch.empty_like(q)
        t = graph_time([lambda i=i: extend_attention(q, k[i], v[i], table, seq_lens, ext, scale, max_extend=new,
                                                     out=out) for i in range(layers)], repeats=5)
        pairs = batch * (new * prefix + new * (new + 1) // 2)
        tflops = 4 * pairs * shape.dim * shape.heads / t / 1e12
        ref, speed = "-".rjust(10), "-".rjust(8)
        if shape.heads * new * length * 4 <= 2 << 30:          # the reference's float32 score matrix
            rt = eager_time(lambda: extend_attention_ref(q, k[0], v[0], table, seq_lens, ext, scale), repeats=1)
            ref, speed = us(rt), f"{rt / t:>7.1f}x"
        print(f"{batch:>6} {new:>6} {prefix:>7} {us(t)} {tflops:>8.1f} {tflops / mm_tflops:>9.2f} {ref} {speed}")
        del k, v, table
        torch.cuda.empty_cache()


def bench_memory_bound(shape: Shape, rows_list: list[int], copy_gbs: float) -> None:
    from kernels.kv_store import kv_store, kv_store_ref
    from kernels.rmsnorm import add_rmsnorm, add_rmsnorm_ref
    print(f"\nKV store and add+RMSNorm, {shape.name}")
    print(f"{'kernel':<12} {'tokens':>7} {'us':>10} {'GB/s':>8} {'x copy':>7} {'ref us':>10} {'speedup':>8}")
    for tokens in rows_list:
        slots = 4 * tokens + 1
        row_bytes = shape.kv_heads * shape.dim * 2
        k_cache, v_cache, layers = pool(slots * row_bytes * 2, slots, shape)
        new_k, new_v = (torch.randn(layers, tokens, shape.kv_heads, shape.dim, dtype=torch.bfloat16,
                                    device=DEVICE) for _ in range(2))
        where = (torch.randperm(slots - 1, device=DEVICE)[:tokens] + 1)
        t = graph_time([lambda i=i: kv_store(new_k[i], new_v[i], k_cache[i], v_cache[i], where)
                        for i in range(layers)])
        rt = graph_time([lambda i=i: kv_store_ref(new_k[i], new_v[i], k_cache[i], v_cache[i], where)
                         for i in range(layers)])
        gbs = 2 * 2 * tokens * row_bytes / t / 1e9
        print(f"{'kv_store':<12} {tokens:>7} {us(t)} {gbs:>8.0f} {gbs / copy_gbs:>7.2f} {us(rt)} {rt / t:>7.1f}x")
        del k_cache, v_cache, new_k, new_v

        n = max(1, min(MAX_LAYERS, -(-L2_BEATEN // (tokens * shape.hidden * 2 * 3))))
        x, res = (torch.randn(n, tokens, shape.hidden, dtype=torch.bfloat16, device=DEVICE) for _ in range(2))
        weight = torch.randn(shape.hidden, dtype=torch.bfloat16, device=DEVICE)
        t = graph_time([lambda i=i: add_rmsnorm(x[i], weight, 1e-5, res[i]) for i in range(n)])
        rt = graph_time([lambda i=i: add_rmsnorm_ref(x[i], weight, 1e-5, res[i]) for i in range(n)])
        gbs = 4 * tokens * shape.hidden * 2 / t / 1e9                 # x, residual in and out, result
        print(f"{'add_rmsnorm':<12} {tokens:>7} {us(t)} {gbs:>8.0f} {gbs / copy_gbs:>7.2f} {us(rt)} {rt / t:>7.1f}x")
        del x, res
        torch.cuda.empty_cache()


def bench_bitmask(batches: list[int], vocab: int, copy_gbs: float) -> None:
    """The grammar bitmask (kernels.bitmask) on a Llama 3 vocabulary, a random half of each row refused:
    GB/s of the mask and logits read plus the logits written, against the copy, and the torch path."""
    from kernels.bitmask import apply_token_bitmask, apply_token_bitmask_ref
    print(f"\ngrammar bitmask, vocab {vocab}, a random half of the tokens refused")
    print(f"{'batch':>6} {'us':>8} {'GB/s':>8} {'x copy':>7} {'torch us':>10} {'speedup':>8}")
    for batch in batches:
        logits = torch.randn(batch, vocab, device=DEVICE)
        words = -(-vocab // 32)
        mask = torch.randint(-2 ** 31, 2 ** 31, (batch, words), device=DEVICE, dtype=torch.int64).to(torch.int32)
        seconds = graph_time([lambda: apply_token_bitmask(logits, mask)], repeats=50)
        ref = graph_time([lambda: apply_token_bitmask_ref(logits, mask)], repeats=10)
        moved = mask.numel() * 4 + 2 * logits.numel() * 4
        print(f"{batch:>6} {us(seconds):>8} {moved / seconds / 1e9:>8.0f} {moved / seconds / 1e9 / copy_gbs:>7.2f} "
              f"{us(ref):>10} {ref / seconds:>7.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few points per kernel")
    ap.add_argument("--ref-limit", type=int, default=64 * 8192,
                    help="time the decode reference only up to this many batch x context tokens")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernel_bench measures GPU kernels and needs a CUDA device; none is visible here.")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("kernel_bench: unset TRITON_INTERPRET (the interpreter is for tests, not timings).")
    try:
        import triton
    except ImportError:
        sys.exit("kernel_bench needs triton: pip install 'radixgate[gpu]'")
    torch.manual_seed(0)
    batches = [1, 64] if args.quick else [1, 16, 64, 256]
    contexts = [2048] if args.quick else [512, 2048, 8192]
    extend_cases = [(4, 2048, 0)] if args.quick else [(4, 2048, 0), (1, 8192, 0), (16, 128, 4096), (64, 16, 2048)]
    rows = [256] if args.quick else [256, 16384]
    copy_gbs, mm_tflops = limits()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    print(f"limits measured now: copy {copy_gbs:.0f} GB/s (1 GiB dst.copy_(src), read + write), "
          f"bf16 matmul {mm_tflops:.0f} TFLOP/s (8192^3)")
    bench_bitmask([1, 256] if args.quick else [1, 16, 256], 128256, copy_gbs)
    for shape in SHAPES:
        bench_decode(shape, batches, contexts, copy_gbs, args.ref_limit)
        bench_extend(shape, extend_cases, mm_tflops)
        bench_memory_bound(shape, rows, copy_gbs)


if __name__ == "__main__":
    main()
