"""Batch-1 decode products with their fused prologue/epilogue (kernels.gemv) against the unfused chain
of the general path (norm kernel, cuBLAS product, epilogue kernels) and against the copy bandwidth.

    PYTHONPATH=$PWD python -m loadtest.gemv_bench             # Llama-3.2-1B and Llama-3.1-8B shapes
    PYTHONPATH=$PWD python -m loadtest.gemv_bench --sweep     # also every tile configuration

Each call is timed inside a CUDA graph of calls cycling over enough layers of distinct weights that
they never sit in L2 (as in a decode step); GB/s counts the weight bytes read, the ratio is to a
1 GiB device-to-device copy measured in the same run (read + write). GPU-only.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import torch

from loadtest.kernel_bench import copy_bandwidth, graph_time

SHAPES = {"llama-3.2-1b": dict(hidden=2048, inter=8192, heads=32, kv_heads=8, dim=64, vocab=128256),
          "llama-3.1-8b": dict(hidden=4096, inter=14336, heads=32, kv_heads=8, dim=128, vocab=128256)}
L2_BEATEN = 256 << 20


def products(s: dict):
    """name -> (weight shape, fused call(w, tune), general chain call(w)): one layer of the shape, and the logits."""
    from kernels.activation import silu_and_mul
    from kernels.gemv import gemv, gemv_add_residual, norm_gemv_rope_store, norm_gemv_silu_mul
    from kernels.kv_store import kv_store
    from kernels.rmsnorm import add_rmsnorm
    from kernels.rope import rope_qk
    h, d, qh, kvh = s["hidden"], s["dim"], s["heads"], s["kv_heads"]
    bf = dict(dtype=torch.bfloat16, device="cuda")
    res, nw, x_o, x_down = torch.randn(1, h, **bf), torch.ones(h, **bf), torch.randn(1, qh * d, **bf), \
        torch.randn(1, s["inter"], **bf)
    pos, inv = torch.tensor([1000], device="cuda"), torch.rand(d // 2, device="cuda")
    kc, vc = torch.zeros(64, kvh, d, **bf), torch.zeros(64, kvh, d, **bf)
    slots = torch.tensor([5], device="cuda")
    cos, sin = torch.rand(1, d, **bf), torch.rand(1, d, **bf)
    lin = torch.nn.functional.linear

    def qkv_general(w):
        x = add_rmsnorm(res, nw, 1e-5, res)
        q, k, v = lin(x, w).split([qh * d, kvh * d, kvh * d], -1)
        q, k, v = q.view(1, qh, d), k.view(1, kvh, d), v.view(1, kvh, d)
        rope_qk(q, k, cos, sin)
        kv_store(k, v, kc, vc, slots)

    return {
        "qkv+norm+rope+store": ((qh + 2 * kvh) * d, h, lambda w, t: norm_gemv_rope_store(
            res, nw, 1e-5, w, None, pos, inv, kc, vc, slots, qh, kvh, **t), qkv_general),
        "o+residual": (h, qh * d, lambda w, t: gemv_add_residual(x_o, w, res, **t),
                       lambda w: add_rmsnorm(lin(x_o, w), nw, 1e-5, res)),
        "gate_up+norm+silu": (2 * s["inter"], h, lambda w, t: norm_gemv_silu_mul(res, nw, 1e-5, w, **t),
                              lambda w: silu_and_mul(lin(add_rmsnorm(res, nw, 1e-5, res), w))),
        "down+residual": (h, s["inter"], lambda w, t: gemv_add_residual(x_down, w, res, **t),
                          lambda w: add_rmsnorm(lin(x_down, w), nw, 1e-5, res)),
        "lm_head": (s["vocab"], h, lambda w, t: gemv(res, w, **t), lambda w: lin(res, w)),
    }


def bench(shape: str, bandwidth: float, sweep: bool) -> None:
    print(f"\n{shape}: microseconds per call (GB/s of weights, x copy bandwidth)")
    print(f"{'product':<22} {'weights MB':>10} {'fused':>20} {'cuBLAS alone':>20} {'general chain':>20}  best tiles")
    for name, (n, k, fused, general) in products(SHAPES[shape]).items():
        nbytes = n * k * 2
        weights = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") for _ in range(max(2, L2_BEATEN // nbytes))]
        cell = lambda sec: f"{sec * 1e6:7.2f} ({nbytes / sec / 1e9:5.0f}, {nbytes / sec / 1e9 / bandwidth:4.2f})"
        configs = [{}]
        if sweep and name != "lm_head":
            configs += [dict(block=b, bk=bk, num_warps=nw)
                        for b, bk, nw in itertools.product((1, 2, 4), (1024, 2048, 4096), (4, 8))
                        if b * bk <= 4096 and bk <= max(1024, k)]
        timed = []
        for tune in configs:
            try:
                timed.append((graph_time([lambda w=w: fused(w, tune) for w in weights]), tune))
            except Exception as e:        # a tile too large for the registers: skip it
                print(f"  {name} {tune}: {type(e).__name__}")
        best = min(timed, key=lambda t: t[0])
        default = timed[0][0]
        x = torch.randn(1, k, dtype=torch.bfloat16, device="cuda")
        alone = graph_time([lambda w=w: torch.nn.functional.linear(x, w) for w in weights])
        chain = graph_time([lambda w=w: general(w) for w in weights])
        print(f"{name:<22} {nbytes / 1e6:>10.1f} {cell(default):>20} {cell(alone):>20} {cell(chain):>20}  "
              f"{best[1] or 'default'} {best[0] * 1e6:.2f} us")
        if sweep:
            print("    " + ", ".join(f"{t['block']}/{t['bk']}/{t['num_warps']}: {sec * 1e6:.1f}" for sec, t in timed[1:]))
        del weights
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="time every tile configuration too")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gemv_bench times GPU kernels and needs a CUDA device.")
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: copy bandwidth {bandwidth:.0f} GB/s (1 GiB, read + write; "
          "loadtest.kernel_bench.copy_bandwidth)")
    for shape in args.shapes:
        bench(shape, bandwidth, args.sweep)


if __name__ == "__main__":
    main()
