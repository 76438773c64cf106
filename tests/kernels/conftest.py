"""Kernel tests run on a CUDA device when there is one, else in Triton's interpreter on small shapes
(tests/conftest.py sets TRITON_INTERPRET=1 on machines without CUDA). Without triton installed every
kernel test skips.
"""
from __future__ import annotations

import os

import pytest
import torch

ON_GPU = torch.cuda.is_available()


@pytest.fixture
def device() -> str:
    if not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA device and TRITON_INTERPRET is turned off")
    return "cuda" if ON_GPU else "cpu"


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
