"""A decode step's inputs written into the decode graphs' static buffers by one kernel.

The host sends one int64 array (positions, sequence lengths, req_to_token rows, and the token ids
unless they are already on the device: a decode window's draw) in one copy; this fills what every captured decode graph reads (gateway.engine.cuda_graphs), for rows < n:

    ids[i], positions[i], seq_lens[i]      the new token, its position, the length including it
    table[i, :seq_lens[i]]                 the sequence's row of req_to_token (later columns never read)
    out_slots[i]                           the slot its K/V goes to: req_to_token[row, seq_len - 1]

and for the padding rows n..bs-1: seq_lens 0 (no keys read) and out_slots 0 (the pool's padding slot).
As eager torch that is about ten small launches, ~20 µs before a batch-1 step's first product can start.
`stage_decode_ref` (importable without triton: the CPU path runs it) is those torch operations; the
kernel writes the same values.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.stage_decode_ref import stage_decode_ref  # noqa: F401  (its reference, beside it)

BLOCK = 1024        # table columns per program


@triton.jit
def _stage_kernel(Staged, IdsIn, ReqTable, Ids, Positions, SeqLens, Table, OutSlots,
                  n, stride_req, stride_table, BLOCK: tl.constexpr):
    i = tl.program_id(0)
    first = tl.program_id(1) == 0
    if i < n:
        seq_len = tl.load(Staged + n + i)
        row = tl.load(Staged + 2 * n + i)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        ok = cols < seq_len
        slots = tl.load(ReqTable + row * stride_req + cols, mask=ok)
        tl.store(Table + i * stride_table + cols, slots, mask=ok)
        if first:
            tl.store(Ids + i, tl.load(IdsIn + i).to(Ids.dtype.element_ty))
            tl.store(Positions + i, tl.load(Staged + i))
            tl.store(SeqLens + i, seq_len.to(tl.int32))
            tl.store(OutSlots + i, tl.load(ReqTable + row * stride_req + seq_len - 1).to(tl.int64))
    elif first:
        tl.store(SeqLens + i, 0)
        tl.store(OutSlots + i, 0)


def stage_decode(staged: torch.Tensor, ids: torch.Tensor, req_table: torch.Tensor, bs: int, width: int,
                 buffers: tuple[torch.Tensor, ...]) -> None:
    """staged: int64 [3, n] on the device (positions, seq_lens, rows); ids: [n] the new tokens;
    buffers: (ids, positions, seq_lens, table, out_slots), each with >= bs rows; width = max seq_len."""
    out_ids, positions, seq_lens, table, out_slots = buffers
    n = staged.shape[1]
    assert staged.dtype == torch.int64 and staged.is_contiguous() and ids.numel() == n <= bs
    assert req_table.stride(1) == table.stride(1) == 1 and width <= table.shape[1]
    _stage_kernel[(bs, triton.cdiv(max(width, 1), BLOCK))](
        staged, ids, req_table, out_ids, positions, seq_lens, table, out_slots,
        n, req_table.stride(0), table.stride(0), BLOCK=BLOCK)
