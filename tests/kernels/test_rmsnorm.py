"""Fused residual add + RMSNorm against the reference: the residual sum is bit-exact, the output within
one rounding of the activation dtype (the float32 sum of squares may differ in its order of addition).
Under the interpreter, whose bf16 casts truncate, bf16 results are held to a few bf16 steps."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.rmsnorm import add_rmsnorm, add_rmsnorm_ref
from tests.kernels.slots import BF16_CASTS_EXACT

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.bfloat16, id="bf16")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 80, 2048, 3000])
@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("with_residual", [False, True])
def test_matches_reference(device, gen, dtype, hidden, rows, with_residual):
    x = (3 * torch.randn(rows, hidden, generator=gen)).to(device=device, dtype=dtype)
    weight = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(device=device, dtype=dtype)
    residual = torch.randn(rows, hidden, generator=gen).to(device=device, dtype=dtype) if with_residual else None
    ref_residual = residual.clone() if with_residual else None
    out = add_rmsnorm(x, weight, 1e-6, residual)
    ref = add_rmsnorm_ref(x, weight, 1e-6, ref_residual)
    assert out.dtype == dtype
    exact = BF16_CASTS_EXACT or dtype != torch.bfloat16
    if with_residual:
        if exact:
            assert torch.equal(residual, ref_residual)
        else:
            torch.testing.assert_close(residual, ref_residual, rtol=2**-7, atol=0)
    steps = 2.0 ** -7 if exact else 2.0 ** -5
    torch.testing.assert_close(out, ref, rtol=steps if dtype == torch.bfloat16 else 2.0 ** -20, atol=1e-6)


def test_strided_rows(device, gen):
    """Rows of a wider buffer (as a slice of a fused output) normalise like contiguous ones."""
    wide = torch.randn(4, 256, generator=gen).to(device)
    x = wide[:, :128]
    weight = torch.ones(128, device=device)
    torch.testing.assert_close(add_rmsnorm(x, weight, 1e-5), add_rmsnorm_ref(x, weight, 1e-5))
