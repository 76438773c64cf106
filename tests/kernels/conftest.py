"""Kernel tests run on a CUDA device when there is one, else in Triton's interpreter on small shapes.

The interpreter is chosen when a kernel is decorated, so TRITON_INTERPRET is set here, before any test
module imports `kernels`. Without triton installed every kernel test skips.
"""
from __future__ import annotations

import os

import pytest
import torch

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def device() -> str:
    if not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA device and TRITON_INTERPRET is turned off")
    return "cuda" if ON_GPU else "cpu"


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
