"""The torch reference of kernels.stage_decode, and the decode graphs' staging where triton is absent."""
from __future__ import annotations

import torch


def stage_decode_ref(staged: torch.Tensor, ids: torch.Tensor, req_table: torch.Tensor, bs: int, width: int,
                     buffers: tuple[torch.Tensor, ...]) -> None:
    out_ids, positions, seq_lens, table, out_slots = buffers
    n = staged.shape[1]
    rows = staged[2]
    out_ids[:n] = ids
    positions[:n] = staged[0]
    seq_lens[:n] = staged[1]
    seq_lens[n:bs] = 0
    table[:n, :width] = req_table[rows, :width]
    out_slots[:n] = req_table[rows, staged[1] - 1]
    out_slots[n:bs] = 0
