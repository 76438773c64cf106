"""Staging a decode in one kernel writes what the torch staging writes, padding rows included."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernels.stage_decode import BLOCK, stage_decode, stage_decode_ref


def buffers(bs: int, columns: int, device) -> tuple[torch.Tensor, ...]:
    """The decode graphs' static buffers, filled with junk a previous step could have left."""
    return (torch.full((bs,), 7, dtype=torch.int64, device=device), torch.full((bs,), 9, dtype=torch.int64, device=device),
            torch.full((bs,), 5, dtype=torch.int32, device=device),
            torch.full((bs, columns), -3, dtype=torch.int32, device=device),
            torch.full((bs,), 11, dtype=torch.int64, device=device))


@pytest.mark.parametrize("n,bs,given_ids", [(1, 1, False), (3, 4, False), (5, 8, True)])
def test_matches_the_torch_staging(device, gen, n, bs, given_ids):
    columns = BLOCK + 300          # a length past one program's columns
    req_table = torch.randint(1, 10_000, (12, columns), generator=gen, dtype=torch.int32).to(device)
    rows = torch.randperm(12, generator=gen)[:n]
    seq_lens = torch.randint(1, columns + 1, (n,), generator=gen)
    seq_lens[0] = columns
    positions = seq_lens - 1
    token_ids = torch.randint(0, 50_000, (n,), generator=gen)
    staged = torch.stack([positions, seq_lens, rows]).to(device)
    ids = token_ids.to(device, torch.int32 if given_ids else torch.int64)     # a sampler's draw, or staged
    width = int(seq_lens.max())
    got, want = buffers(bs, columns, device), buffers(bs, columns, device)
    stage_decode(staged, ids, req_table, bs, width, got)
    stage_decode_ref(staged, ids, req_table, bs, width, want)
    for name, a, b in zip(("ids", "positions", "seq_lens", "out_slots"), got[:3] + got[4:], want[:3] + want[4:]):
        assert torch.equal(a, b), name
    assert torch.equal(got[4][:n].cpu(), req_table[rows, seq_lens - 1].long().cpu())
    for i in range(n):              # the table up to each length; later columns are never read
        length = int(seq_lens[i])
        assert torch.equal(got[3][i, :length], want[3][i, :length])
        assert torch.equal(got[3][i, length:], torch.full_like(got[3][i, length:], -3)), "wrote past the length"
    assert torch.equal(got[3][n:], want[3][n:]), "padding rows' tables are left alone"
