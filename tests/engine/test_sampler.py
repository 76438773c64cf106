"""The sampler against references written independently here, in float64 with plain loops:
distributions over many draws, processed logits and logprobs, seeds across batch compositions,
and constraint bitmasks. Runs on the CPU, and on CUDA too where there is one."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.engine.sampler import Sampler, SamplingRow, apply_token_bitmask
from gateway.protocol import InvalidRequest, SamplingParams

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LOGITS8 = [0.3, 2.1, -1.0, 1.2, 0.0, 1.7, -2.5, 0.8]     # distinct, and not ordered by id


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------

def reference_processed(logits: list[float], params: SamplingParams, prompt: list[int],
                        output: list[int]) -> np.ndarray:
    out = np.array(logits, dtype=np.float64)
    for token, bias in params.logit_bias.items():
        out[token] += bias
    if params.repetition_penalty != 1:
        for token in set(prompt) | set(output):
            penalty = params.repetition_penalty
            out[token] = out[token] / penalty if out[token] > 0 else out[token] * penalty
    for token, count in Counter(output).items():
        out[token] -= params.presence_penalty + params.frequency_penalty * count
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max()
    return x - top - math.log(sum(math.exp(v - top) for v in x))


def reference_distribution(logits: list[float], params: SamplingParams) -> np.ndarray:
    """top_k, then top_p over the renormalised survivors, then min_p against the most likely."""
    scaled = [v / params.temperature for v in logits]
    top = max(scaled)
    weights = [math.exp(v - top) for v in scaled]
    probs = [w / sum(weights) for w in weights]
    ranked = sorted(range(len(probs)), key=lambda t: -probs[t])
    kept = ranked[:params.top_k] if params.top_k else ranked
    kept_mass = sum(probs[t] for t in kept)
    nucleus, mass = [], 0.0
    for token in kept:
        nucleus.append(token)
        mass += probs[token] / kept_mass
        if mass >= params.top_p:
            break
    survivors = [t for t in nucleus if probs[t] >= params.min_p * probs[ranked[0]]]
    ref = np.zeros(len(probs))
    for token in survivors:
        ref[token] = probs[token]
    return ref / ref.sum()


def pack_bitmask(allowed: np.ndarray) -> torch.Tensor:
    """bool [batch, vocab] -> int32 [batch, ceil(vocab / 32)], bit t % 32 of word t // 32."""
    batch, vocab = allowed.shape
    words = np.zeros((batch, -(-vocab // 32)), dtype=np.uint64)
    for b, t in zip(*np.nonzero(allowed)):
        words[b, t // 32] |= np.uint64(1 << (t % 32))
    return torch.from_numpy(words.astype(np.uint32).view(np.int32))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def rows_of(params: list[SamplingParams], sampler: Sampler | None = None) -> list[SamplingRow]:
    return [SamplingRow(p, [], [], sampler.generator_for(p.seed) if sampler else None) for p in params]


def draw_counts(params: SamplingParams, n: int, device: str, seeded: bool = False) -> np.ndarray:
    """Token counts over n identical rows; seeded rows each get their own seed 0..n-1."""
    sampler = Sampler(len(LOGITS8), device)
    rows = [SamplingRow(params, [], [], sampler.generator_for(i) if seeded else None) for i in range(n)]
    logits = torch.tensor(LOGITS8, device=device).repeat(n, 1)
    return np.bincount(sampler.sample(logits, rows).token_ids, minlength=len(LOGITS8))


def assert_matches_distribution(counts: np.ndarray, ref: np.ndarray) -> None:
    """Each frequency within 5 binomial standard deviations (a false alarm about once in 10^6 tokens)."""
    n = counts.sum()
    assert np.all(counts[ref == 0] == 0), f"truncated tokens drawn: {counts} vs {ref}"
    tolerance = 5 * np.sqrt(ref * (1 - ref) / n)
    assert np.all(np.abs(counts / n - ref) <= tolerance), f"{counts / n} vs {ref}"


# ---------------------------------------------------------------------------------------------
# Greedy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_greedy_rows_take_the_argmax(device: str) -> None:
    logits = np.random.default_rng(0).normal(size=(32, 1000)).astype(np.float32)
    params = [SamplingParams(temperature=0) if i % 2 else SamplingParams(top_k=1) for i in range(32)]
    out = Sampler(1000, device).sample(torch.tensor(logits, device=device), rows_of(params))
    assert out.token_ids == np.argmax(logits, axis=1).tolist()
    assert all(type(t) is int for t in out.token_ids)
    assert out.logprobs is None and out.top_logprobs is None


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_ties_go_to_the_lowest_id(device: str) -> None:
    logits = torch.zeros(2, 1000)
    logits[:, [900, 3, 517]] = 5.0
    out = Sampler(1000, device).sample(logits.to(device), rows_of([SamplingParams(temperature=0),
                                                                   SamplingParams(top_k=1)]))
    assert out.token_ids == [3, 3]


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_rows_stay_exact_beside_sampled_rows(device: str) -> None:
    logits = np.random.default_rng(1).normal(size=(16, 50)).astype(np.float32)
    params = [SamplingParams(temperature=0) if i % 3 == 0 else SamplingParams(temperature=1.5, top_p=0.9)
              for i in range(16)]
    out = Sampler(50, device).sample(torch.tensor(logits, device=device), rows_of(params))
    for i in range(0, 16, 3):
        assert out.token_ids[i] == int(np.argmax(logits[i]))


# ---------------------------------------------------------------------------------------------
# Temperature and truncation: empirical distributions against the exact reference
# ---------------------------------------------------------------------------------------------

TRUNCATIONS = {
    "plain": SamplingParams(),
    "cold": SamplingParams(temperature=0.5),
    "hot": SamplingParams(temperature=2.0),
    "top_k": SamplingParams(top_k=3),
    "top_p": SamplingParams(top_p=0.7),
    "min_p": SamplingParams(min_p=0.2),
    # Each of the next three would keep one more token if its step ran in another order: top_p
    # over all tokens rather than top_k's survivors, min_p before temperature.
    "top_k_then_top_p": SamplingParams(top_k=4, top_p=0.8),
    "min_p_after_temperature": SamplingParams(temperature=0.7, min_p=0.2),
    "all": SamplingParams(temperature=0.7, top_k=5, top_p=0.95, min_p=0.05),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TRUNCATIONS)
def test_draws_follow_the_reference_distribution(name: str, device: str) -> None:
    params = TRUNCATIONS[name]
    assert_matches_distribution(draw_counts(params, 20_000, device), reference_distribution(LOGITS8, params))


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_draws_follow_the_reference_distribution(device: str) -> None:
    params = TRUNCATIONS["all"]
    counts = draw_counts(params, 5_000, device, seeded=True)
    assert_matches_distribution(counts, reference_distribution(LOGITS8, params))


@pytest.mark.parametrize("device", DEVICES)
def test_interleaved_rows_each_follow_their_own_params(device: str) -> None:
    configs = [TRUNCATIONS["top_k"], SamplingParams(temperature=0), TRUNCATIONS["hot"], TRUNCATIONS["top_p"]]
    n = 8_000
    params = [configs[i % len(configs)] for i in range(n * len(configs))]
    logits = torch.tensor(LOGITS8, device=device).repeat(len(params), 1)
    tokens = np.array(Sampler(len(LOGITS8), device).sample(logits, rows_of(params)).token_ids)
    for c, config in enumerate(configs):
        counts = np.bincount(tokens[c::len(configs)], minlength=len(LOGITS8))
        greedy_ref = np.eye(len(LOGITS8))[int(np.argmax(LOGITS8))]
        ref = greedy_ref if config.greedy else reference_distribution(LOGITS8, config)
        assert_matches_distribution(counts, ref)


# ---------------------------------------------------------------------------------------------
# Penalties, logit_bias and logprobs against the float64 reference
# ---------------------------------------------------------------------------------------------

def full_logprobs(out_top: list[tuple[int, float]], vocab: int) -> np.ndarray:
    assert [lp for _, lp in out_top] == sorted((lp for _, lp in out_top), reverse=True)
    vector = np.full(vocab, np.nan)
    for token, lp in out_top:
        vector[token] = lp
    return vector


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits() -> None:
    params = SamplingParams(repetition_penalty=2.0, top_logprobs=5)
    out = Sampler(5, "cpu").sample(torch.tensor([[2.0, -1.0, 2.0, -1.0, 0.5]]),
                                   [SamplingRow(params, [0, 1], [4], None)])
    expected = log_softmax(np.array([1.0, -2.0, 2.0, -1.0, 0.25]))
    np.testing.assert_allclose(full_logprobs(out.top_logprobs[0], 5), expected, atol=1e-6)


def test_presence_and_frequency_penalise_output_tokens_by_count_and_ignore_the_prompt() -> None:
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25, top_logprobs=4)
    out = Sampler(4, "cpu").sample(torch.zeros(1, 4), [SamplingRow(params, [3, 3, 3], [2, 2, 2, 1], None)])
    expected = log_softmax(np.array([0.0, -(0.5 + 0.25), -(0.5 + 3 * 0.25), 0.0]))
    np.testing.assert_allclose(full_logprobs(out.top_logprobs[0], 4), expected, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_logit_bias_minus_100_bans_and_plus_100_forces(device: str) -> None:
    sampler = Sampler(len(LOGITS8), device)
    best = int(np.argmax(LOGITS8))
    banned = sampler.sample(torch.tensor([LOGITS8], device=device),
                            rows_of([SamplingParams(temperature=0, logit_bias={best: -100})]))
    assert banned.token_ids == [sorted(range(8), key=lambda t: -LOGITS8[t])[1]]
    worst = int(np.argmin(LOGITS8))
    forced = sampler.sample(torch.tensor(LOGITS8, device=device).repeat(2_000, 1),
                            rows_of([SamplingParams(temperature=1.0, logit_bias={worst: 100})] * 2_000))
    assert set(forced.token_ids) == {worst}


optional_penalty = st.one_of(st.just(0.0), st.floats(-2, 2))


@st.composite
def penalised_rows(draw: st.DrawFn, vocab: int) -> tuple[list[float], SamplingParams, list[int], list[int]]:
    logits = draw(st.lists(st.floats(-5, 5, width=32), min_size=vocab, max_size=vocab))
    tokens = st.lists(st.integers(0, vocab - 1), max_size=10)
    params = SamplingParams(
        temperature=draw(st.sampled_from([0.0, 0.5, 1.5])), top_k=draw(st.sampled_from([0, 2])),
        presence_penalty=draw(optional_penalty), frequency_penalty=draw(optional_penalty),
        repetition_penalty=draw(st.one_of(st.just(1.0), st.floats(0.5, 2.0))),
        logit_bias=draw(st.dictionaries(st.integers(0, vocab - 1), st.floats(-100, 100), max_size=3)),
        logprobs=True, top_logprobs=vocab)
    return logits, params, draw(tokens), draw(tokens)


@settings(max_examples=60, deadline=None)
@given(st.lists(penalised_rows(12), min_size=1, max_size=4))
def test_logprobs_are_log_softmax_of_the_processed_logits(batch: list) -> None:
    """Whatever temperature and top_k say, logprobs come from the logits after bias and penalties."""
    rows = [SamplingRow(params, prompt, output, None) for _, params, prompt, output in batch]
    out = Sampler(12, "cpu").sample(torch.tensor([logits for logits, *_ in batch]), rows)
    for i, (logits, params, prompt, output) in enumerate(batch):
        expected = log_softmax(reference_processed(logits, params, prompt, output))
        np.testing.assert_allclose(full_logprobs(out.top_logprobs[i], 12), expected, rtol=1e-5, atol=1e-4)
        assert out.logprobs[i] == pytest.approx(expected[out.token_ids[i]], rel=1e-5, abs=1e-4)
        if params.greedy:
            assert expected[out.token_ids[i]] >= expected.max() - 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_top_logprobs_are_the_best_tokens_sorted_and_only_where_asked(device: str) -> None:
    logits = np.random.default_rng(2).normal(size=(4, 100)).astype(np.float32)
    params = [SamplingParams(temperature=0.5, top_k=3, logprobs=True, top_logprobs=5), SamplingParams(),
              SamplingParams(temperature=0, logprobs=True), SamplingParams(top_p=0.5, top_logprobs=20)]
    out = Sampler(100, device).sample(torch.tensor(logits, device=device), rows_of(params))
    assert [len(top) for top in out.top_logprobs] == [5, 0, 0, 20]
    for i in (0, 2, 3):
        expected = log_softmax(logits[i].astype(np.float64))
        assert out.logprobs[i] == pytest.approx(expected[out.token_ids[i]], abs=1e-5)
        top = out.top_logprobs[i]
        assert [t for t, _ in top] == np.argsort(-expected)[:len(top)].tolist()
        np.testing.assert_allclose([lp for _, lp in top], np.sort(expected)[::-1][:len(top)], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Per-request seeds
# ---------------------------------------------------------------------------------------------

VOCAB = 64
STEPS = 12
TARGET = SamplingParams(temperature=0.9, top_k=40, top_p=0.95, min_p=0.01, frequency_penalty=0.3, seed=1234)


def generate(target: SamplingParams, position: int, others: list[SamplingParams], device: str,
             masked_others: bool = False) -> list[int]:
    """Run the target request for STEPS steps at `position` among `others`, each with its own logits."""
    sampler = Sampler(VOCAB, device)
    params = [*others[:position], target, *others[position:]]
    tables = [np.random.default_rng(1000 + i).normal(size=(STEPS, VOCAB)) * 2 for i in range(len(params))]
    tables[position] = np.random.default_rng(0).normal(size=(STEPS, VOCAB)) * 2
    generators = [sampler.generator_for(p.seed) for p in params]
    outputs: list[list[int]] = [[] for _ in params]
    allowed = np.ones((len(params), VOCAB), dtype=bool)
    if masked_others:
        allowed[[i for i in range(len(params)) if i != position], ::3] = False
    for step in range(STEPS):
        logits = torch.tensor(np.stack([t[step] for t in tables]), dtype=torch.float32, device=device)
        rows = [SamplingRow(p, [1, 2, 3], out, g) for p, out, g in zip(params, outputs, generators)]
        out = sampler.sample(logits, rows, pack_bitmask(allowed).to(device))
        for tokens, token in zip(outputs, out.token_ids):
            tokens.append(token)
    return outputs[position]


@pytest.mark.parametrize("device", DEVICES)
def test_a_seeded_request_is_the_same_in_any_batch(device: str) -> None:
    alone = generate(TARGET, 0, [], device)
    assert len(set(alone)) > 1, "the target should be sampling, not stuck on one token"
    assert generate(TARGET, 0, [], device) == alone
    crowd = [SamplingParams(seed=7), SamplingParams(), SamplingParams(temperature=0),
             SamplingParams(temperature=0.5, top_k=5, presence_penalty=1.0), SamplingParams(seed=1234, top_p=0.5)]
    assert generate(TARGET, 2, crowd, device) == alone
    assert generate(TARGET, 5, crowd, device, masked_others=True) == alone
    assert generate(TARGET, 0, crowd[:2], device) == alone
    assert generate(TARGET, 1, [SamplingParams()] * 7, device) == alone


@pytest.mark.parametrize("device", DEVICES)
def test_different_seeds_give_different_tokens(device: str) -> None:
    runs = {tuple(generate(SamplingParams(temperature=1.0, seed=seed), 0, [], device)) for seed in (1, 2, 3, -1)}
    assert len(runs) == 4


# ---------------------------------------------------------------------------------------------
# Constraint bitmask
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_apply_token_bitmask_masks_exactly_the_cleared_bits(device: str) -> None:
    vocab = 70                                           # three words, the last one partly used
    allowed = np.random.default_rng(3).random((5, vocab)) < 0.5
    allowed[0, [31, 63]], allowed[1, [31, 63]] = True, False   # the sign bit of a word
    logits = torch.randn(5, vocab)
    masked = logits.clone().to(device)
    apply_token_bitmask(masked, pack_bitmask(allowed).to(device))
    expected = torch.where(torch.from_numpy(allowed), logits, torch.tensor(-math.inf))
    assert torch.equal(masked.cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_a_row_of_all_minus_one_allows_everything(device: str) -> None:
    logits = torch.randn(3, 70, device=device)
    masked = logits.clone()
    apply_token_bitmask(masked, torch.full((3, 3), -1, dtype=torch.int32, device=device))
    assert torch.equal(masked, logits)


@pytest.mark.parametrize("device", DEVICES)
def test_disallowed_tokens_are_never_chosen_even_when_most_likely(device: str) -> None:
    vocab, n = 70, 4_000
    logits = torch.tensor(np.random.default_rng(4).normal(size=vocab), dtype=torch.float32)
    ranked = torch.argsort(logits, descending=True).tolist()
    allowed = np.ones(vocab, dtype=bool)
    allowed[ranked[:3] + [69]] = False
    sampler = Sampler(vocab, device)
    greedy = sampler.sample(logits.view(1, -1).to(device), rows_of([SamplingParams(temperature=0)]),
                            pack_bitmask(allowed[None]).to(device))
    assert greedy.token_ids == [ranked[3]]
    drawn = sampler.sample(logits.repeat(n, 1).to(device), rows_of([SamplingParams(temperature=2.0)] * n),
                           pack_bitmask(np.tile(allowed, (n, 1))).to(device))
    assert set(drawn.token_ids) <= set(np.flatnonzero(allowed).tolist())
    assert len(set(drawn.token_ids)) > 10


def test_validate_refuses_logit_bias_outside_the_vocabulary() -> None:
    sampler = Sampler(100, "cpu")
    sampler.validate(SamplingParams(logit_bias={0: 1.0, 99: -1.0}))
    with pytest.raises(InvalidRequest) as err:
        sampler.validate(SamplingParams(logit_bias={100: 1.0}))
    assert err.value.param == "logit_bias"
