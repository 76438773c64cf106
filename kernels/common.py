"""What the launchers share: interpreter detection and the operand policy of `tl.dot`."""
from __future__ import annotations

import functools
import os

import torch


def interpreting() -> bool:
    """True when Triton runs kernels in its NumPy interpreter (TRITON_INTERPRET=1), as on CPU."""
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "on", "yes")


def dot_in_f32(dtype: torch.dtype) -> bool:
    """Whether kernels should upcast `tl.dot` operands to float32.

    Triton's interpreter (3.9) multiplies bfloat16 dot operands as their raw uint16 bits, so interpreted
    bf16 dots run in float32 instead; on a GPU the operands stay bf16 for the tensor cores.
    """
    return interpreting() and dtype == torch.bfloat16


def dot_precision(dtype: torch.dtype) -> str:
    """float32 operands multiply as three TF32 products ("tf32x3", about float32 accuracy) on the tensor
    cores: plain TF32 would lose float32 results' agreement with the reference, and exact "ieee" falls
    back to FMA code that spills registers at the tile sizes used here (see tests/kernels/sm_compile.py).
    16-bit operands ignore the setting ("tf32" is Triton's default)."""
    return "tf32x3" if dtype == torch.float32 else "tf32"


@functools.lru_cache(maxsize=None)
def capability(device: torch.device) -> int:
    """Compute capability as 10 * major + minor (90 for H100); 0 off CUDA."""
    if device.type != "cuda":
        return 0
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


@functools.lru_cache(maxsize=None)
def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; a nominal 8 elsewhere (the interpreter)."""
    if device.type != "cuda":
        return 8
    return torch.cuda.get_device_properties(device).multi_processor_count


try:
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait   # noqa: F401  (for the kernels)
except ImportError:             # a Triton without grid dependency control
    gdc_launch_dependents = gdc_wait = None

USE_PDL = True      # switch for A/B measurements (loadtest); tests run both ways


def pdl(device: torch.device) -> bool:
    """Whether kernels on `device` launch as programmatic dependents (PDL, sm_90+): such a kernel starts
    while the one before it finishes, does what does not depend on it, then waits (`gdc_wait`) for it.
    Launch with `launch_pdl=True` and pass the result as the kernel's PDL constexpr."""
    return USE_PDL and gdc_wait is not None and not interpreting() and capability(device) >= 90
