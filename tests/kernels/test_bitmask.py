"""The grammar bitmask kernel against its torch specification: vocabularies that end inside a word,
words with bit 31 set (negative int32), all-allowed and all-refused rows, logits already at -inf, and
rows of a strided logits view."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from kernels.bitmask import apply_token_bitmask, apply_token_bitmask_ref


def _masks(gen, batch, vocab):
    words = -(-vocab // 32)
    bitmask = torch.randint(-2 ** 31, 2 ** 31, (batch, words), generator=gen, dtype=torch.int64).to(torch.int32)
    bitmask[0] = -1                       # everything allowed
    if batch > 1:
        bitmask[1] = 0                    # nothing allowed
    if batch > 2:
        bitmask[2, :] = 0
        bitmask[2, -1] = 1 << ((vocab - 1) % 32)      # only the last token
    if batch > 3:
        bitmask[3] = torch.iinfo(torch.int32).min     # bit 31 of every word
    return bitmask


@pytest.mark.parametrize("batch,vocab", [(1, 5), (4, 100), (5, 4097), (3, 8192 + 31)])
def test_matches_reference(device, gen, batch, vocab):
    logits = torch.randn(batch, vocab, generator=gen)
    logits[:, ::7] = -math.inf
    bitmask = _masks(gen, batch, vocab)
    expected = logits.clone()
    apply_token_bitmask_ref(expected, bitmask)
    got = logits.to(device)
    apply_token_bitmask(got, bitmask.to(device))
    assert torch.equal(got.cpu(), expected)
    if batch > 3:
        allowed = torch.arange(vocab) % 32 == 31
        assert torch.isinf(got[3].cpu()[~allowed]).all() and torch.equal(got[3].cpu()[allowed], logits[3][allowed])


def test_rows_of_a_wider_buffer(device, gen):
    """Logits as a view of a padded buffer (row stride > vocab): only the view's columns change."""
    vocab = 300
    buffer = torch.randn(3, vocab + 20, generator=gen).to(device)
    logits = buffer[:, :vocab]
    bitmask = _masks(gen, 3, vocab).to(device)
    expected = buffer.clone()
    apply_token_bitmask_ref(expected[:, :vocab], bitmask)
    apply_token_bitmask(logits, bitmask)
    assert torch.equal(buffer, expected)


def test_rejects_a_mask_of_the_wrong_shape(device):
    logits = torch.zeros(2, 64, device=device)
    with pytest.raises(AssertionError, match="bitmask must be int32"):
        apply_token_bitmask(logits, torch.zeros(2, 3, dtype=torch.int32, device=device))
