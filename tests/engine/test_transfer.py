"""Host lists to tensors (engine.transfer): numpy's fast path gives exactly what torch.tensor gives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gateway.engine.transfer import host_tensor, to_device


@pytest.mark.parametrize("values,dtype", [([3, 0, 2 ** 31 - 1, -5], torch.int32), ([2 ** 40, -1], torch.int64),
                                          ([0.5, 1, -2.25], torch.float32), ([True, False, True], torch.bool),
                                          ([[1, 2], [3, 4]], torch.int64), ([], torch.int64)])
def test_host_tensor_equals_torch_tensor(values, dtype):
    got = host_tensor(values, dtype)
    assert got.dtype == dtype and torch.equal(got, torch.tensor(values, dtype=dtype))
    assert torch.equal(to_device(values, dtype, torch.device("cpu")), got)


def test_arrays_and_range_errors():
    assert torch.equal(host_tensor(np.arange(5), torch.int32), torch.arange(5, dtype=torch.int32))
    with pytest.raises(OverflowError):
        host_tensor([2 ** 40], torch.int32)         # never wrapped silently into a wrong slot id
