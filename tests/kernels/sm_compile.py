"""Compile every kernel launch of the kernels package for NVIDIA targets on a machine without a GPU.

    python -m tests.kernels.sm_compile [sm_80] [sm_90]   # one line per compiled launch; exits 1 on failure

Triton's interpreter checks none of what only the GPU compiler enforces (tl.dot shapes, layouts,
shared memory, register pressure), so this runs each launcher on CPU tensors with the launch
intercepted, compiles the kernel with the same arguments for sm_80 and sm_90 down to a cubin, and
reports shared memory, registers and spills (stack bytes, from the bundled cuobjdump).
TRITON_INTERPRET must be unset.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

import kernels.common
import kernels.decode_attention
import kernels.extend_attention
from tests.kernels.slots import launch_all

TARGETS = {"sm_80": (GPUTarget("cuda", 80, 32), 166912), "sm_90": (GPUTarget("cuda", 90, 32), 232448)}
_TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int32: "i32",
          torch.int64: "i64"}


def _resource_usage(cubin: bytes) -> tuple[int, int]:
    """(registers per thread, stack bytes per thread: spills) from the bundled cuobjdump."""
    tool = os.path.join(os.path.dirname(triton.backends.nvidia.__file__), "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    return int(re.search(r"REG:(\d+)", usage)[1]), int(re.search(r"STACK:(\d+)", usage)[1])


def compile_launch(fn: JITFunction, args: tuple, kwargs: dict, target: GPUTarget) -> dict:
    params = fn.params
    values = dict(zip([p.name for p in params], args)) | {k: v for k, v in kwargs.items()
                                                         if k in fn.arg_names}
    signature, constexprs, attrs = {}, {}, {}
    for i, p in enumerate(params):
        v = values[p.name]
        if p.is_constexpr or v is None or (isinstance(v, int) and not isinstance(v, bool) and v == 1):
            signature[p.name] = "constexpr"     # as a real launch does, ints equal to 1 are specialised
            constexprs[p.name] = v
        elif isinstance(v, torch.Tensor):
            signature[p.name] = "*" + _TYPES[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, bool):
            signature[p.name] = "i1"
        elif isinstance(v, int):
            signature[p.name] = "i32" if -2**31 <= v < 2**31 else "i64"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, float):
            signature[p.name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: cannot type argument {p.name}={v!r}")
    options = {k: v for k, v in kwargs.items() if k in ("num_warps", "num_stages")}
    kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options)
    regs, spills = _resource_usage(kernel.asm["cubin"])
    return {"kernel": fn.__name__, "target": f"sm_{target.arch}", "shared": kernel.metadata.shared, "regs": regs,
            "spills": spills, "mma": "mma" in kernel.asm["ttgir"] or "warp_group_dot" in kernel.asm["ttgir"]}


def main(archs: list[str]) -> int:
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "unset TRITON_INTERPRET to compile for GPUs"
    failures = 0
    for arch in archs:
        target, smem = TARGETS[arch]
        launches: list[tuple[str, JITFunction, tuple, dict]] = []
        JITFunction.run = lambda self, *args, grid, warmup, **kw: launches.append((label, self, args, kw))
        for module in (kernels.decode_attention, kernels.extend_attention, kernels.common):
            module.capability = lambda device, arch=target.arch: arch      # sm_90: the PDL variants too
        for label, call in launch_all():
            call()
        seen = set()
        for label, fn, args, kw in launches:
            key = (fn.__name__, repr([(type(a), getattr(a, "dtype", a)) for a in args]), repr(sorted(kw.items())))
            if key in seen:
                continue
            seen.add(key)
            try:
                r = compile_launch(fn, args, kw, target)
            except Exception as err:   # report every launch, then fail
                failures += 1
                print(f"FAIL {arch} {label} {fn.__name__}: {type(err).__name__}: {err}".splitlines()[0])
                continue
            # float32 is the exactness path, not the fast one: a few spilled bytes there are tolerated.
            # libdevice's sinf/cosf keep a 28-byte table on the stack for huge arguments (RoPE at long
            # positions): stack, not spilled registers.
            allowed = 32 if "rope" in label else 0
            bad = r["shared"] > smem or (r["spills"] > allowed and "float32" not in label)
            failures += bad
            print(f"{'FAIL' if bad else 'ok  '} {arch} {label:<34} {r['kernel']:<22} shared={r['shared']:>6} "
                  f"regs={r['regs']:>3} spills={r['spills']} mma={r['mma']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(TARGETS)))
