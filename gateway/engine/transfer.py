"""Host values to the device without waiting for it.

A copy from pageable host memory synchronises the CUDA stream: it waits for every kernel queued
before it, so one `torch.tensor(values, device="cuda")` while a forward is in flight stalls the host
until the forward ends. From pinned memory the copy is queued in stream order and the host goes on.
"""
from __future__ import annotations

import torch


def to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if device.type != "cuda":
        return torch.tensor(values, dtype=dtype, device=device)
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)
