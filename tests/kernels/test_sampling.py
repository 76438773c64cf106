"""The one-pass sampling race: greedy rows equal torch.argmax, sampled rows follow softmax(logits / T),
masked tokens are never drawn, and a draw depends only on the seed."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from kernels.sampling import gumbel_argmax, gumbel_argmax_ref


@pytest.mark.parametrize("vocab", [7, 2049, 5000])
def test_greedy_rows_are_the_argmax_lowest_id_first(device, gen, vocab):
    logits = torch.randn(6, vocab, generator=gen)
    logits[1, 3] = logits[1, vocab - 1] = logits[1].max() + 1            # a tie: the lower id wins
    logits[2, : vocab - 1] = -math.inf                                   # only the last token allowed
    logits[3] = logits[3].round()                                        # many ties
    logits, inv_t = logits.to(device), torch.zeros(6, device=device)
    got = gumbel_argmax(logits, inv_t, seed=5)
    assert got.tolist() == logits.argmax(dim=1).tolist()
    assert gumbel_argmax_ref(logits, inv_t, torch.ones_like(logits)).tolist() == got.tolist()


def test_sampled_rows_follow_the_tempered_distribution(device):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -math.inf, 1.5, -0.5])
    temperature = 0.7
    rows, seeds = (400, 10) if device == "cuda" else (50, 6)    # the interpreter runs a program at a time
    batch = logits.expand(rows, -1).contiguous().to(device)
    inv_t = torch.full((rows,), 1 / temperature, device=device)
    draws = torch.cat([gumbel_argmax(batch, inv_t, seed=s) for s in range(seeds)]).cpu()
    n = rows * seeds
    freq = torch.bincount(draws, minlength=8).double() / n
    expected = torch.softmax(logits.double() / temperature, dim=0)
    sigma = (expected * (1 - expected) / n).sqrt()
    assert freq[5] == 0                                                   # the masked token
    assert ((freq - expected).abs() <= 5 * sigma + 1e-9).all(), (freq, expected)
    # The reference race on torch's Exp(1) noise agrees in distribution too.
    ref = gumbel_argmax_ref(batch.cpu(), inv_t.cpu(), torch.empty(rows, 8).exponential_(generator=torch.Generator().manual_seed(0)))
    assert set(ref.tolist()) <= {0, 1, 2, 3, 4, 6, 7}


def test_a_draw_is_a_function_of_the_seed(device, gen):
    logits = torch.randn(16, 300, generator=gen).to(device)
    inv_t = torch.ones(16, device=device)
    inv_t[::4] = 0                                                        # greedy rows mixed in
    a, b, c = (gumbel_argmax(logits, inv_t, seed=s) for s in (11, 11, 12))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert a[::4].tolist() == logits[::4].argmax(dim=1).tolist()
