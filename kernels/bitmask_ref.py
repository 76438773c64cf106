"""The specification of kernels.bitmask in plain torch (importable without triton: the engine's fallback)."""
from __future__ import annotations

import math

import torch

WORD_BITS = 32


def check_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    batch, vocab = logits.shape
    words = -(-vocab // WORD_BITS)
    assert bitmask.dtype == torch.int32 and tuple(bitmask.shape) == (batch, words), \
        f"bitmask must be int32 [{batch}, {words}], got {bitmask.dtype} {list(bitmask.shape)}"


def apply_token_bitmask_ref(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set logits[b, t] to -inf, in place, unless bit t % 32 of bitmask[b, t // 32] is set; bitmask is
    int32 [batch, ceil(vocab / 32)], a word of -1 allowing all 32 of its tokens."""
    check_bitmask(logits, bitmask)
    batch, vocab = logits.shape
    shifts = torch.arange(WORD_BITS, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    allowed = bits.view(batch, -1)[:, :vocab].bool()
    logits.masked_fill_(~allowed, -math.inf)
