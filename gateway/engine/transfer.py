"""Host values to the device without waiting for it.

A copy from pageable host memory synchronises the CUDA stream: it waits for every kernel queued
before it, so one `torch.tensor(values, device="cuda")` while a forward is in flight stalls the host
until the forward ends. From pinned memory the copy is queued in stream order and the host goes on.

A flat list of numbers is read by numpy's iterator (~20 ns an element, where `torch.tensor` of a list
takes ~200): a prefill step stages hundreds of thousands of slot ids and token ids.
"""
from __future__ import annotations

import numpy as np
import torch

_NUMPY = {torch.int32: np.int32, torch.int64: np.int64, torch.float32: np.float32, torch.bool: np.bool_}


def host_tensor(values: list | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of `values` (a list, possibly nested, or an array)."""
    kind = _NUMPY.get(dtype)
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values.astype(kind, copy=False)) if kind else torch.from_numpy(values).to(dtype)
    if kind is not None and values and not isinstance(values[0], (list, tuple)):
        return torch.from_numpy(np.fromiter(values, dtype=kind, count=len(values)))
    return torch.tensor(values, dtype=dtype)


def to_device(values: list | np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    host = host_tensor(values, dtype)
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)
