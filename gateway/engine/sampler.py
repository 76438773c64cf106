"""The next token of every request in a batch, from its float32 logits [batch, vocab].

Per row, in this order; each step is skipped when no row of the batch needs it:

 1. constraint bitmask: disallowed tokens become -inf before anything can favour them again
 2. logit_bias, added to the logits (OpenAI semantics: -100 all but bans, +100 all but forces)
 3. repetition_penalty over the prompt and output tokens (HF/CTRL: a positive logit is divided by
    the penalty, a negative one multiplied)
 4. presence and frequency penalties over the output tokens only (OpenAI:
    logit -= presence * (count > 0) + frequency * count)
 5. logprobs: log_softmax of the logits as they stand here. They describe what the request's
    model, grammar, bias and penalties say about each token, not the knobs that only shape the
    draw, so they do not move with temperature and a token truncated away below still has its
    true logprob in top_logprobs. A disallowed token's logprob is -inf.
 6. greedy rows (temperature 0 or top_k 1): argmax, the lowest id among ties
 7. temperature
 8. top_k: tokens tied with the k-th largest logit stay
 9. top_p over what top_k left: the smallest set of most likely tokens whose mass reaches top_p
10. min_p: tokens less likely than min_p times the most likely one go
11. the draw: argmax(probs / E), E ~ Exp(1) per token (the exponential race, which picks token t
    with probability probs[t]). A seeded row draws its E from its own generator, every other row
    from the sampler's shared one, so a seeded request's tokens do not depend on the batch it is in.

On a CUDA device, when every row is greedy or plain temperature sampling (no truncation, no seed of
its own), steps 6-11 are one pass over the logits (kernels.sampling): the same race, its noise from
Philox instead of the shared generator.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gateway.engine.models.layers import triton_kernel
from gateway.engine.transfer import to_device
from gateway.protocol import InvalidRequest, SamplingParams
from kernels.bitmask_ref import apply_token_bitmask_ref

_SEED_BITS = (1 << 64) - 1


@dataclass(slots=True)
class SamplingRow:
    """What the sampler needs of one request, built by the engine each step."""
    params: SamplingParams
    prompt_ids: Sequence[int]
    output_ids: Sequence[int]
    generator: torch.Generator | None     # from Sampler.generator_for(params.seed), once per request


@dataclass(slots=True)
class SampleOutput:
    token_ids: list[int]
    logprobs: list[float] | None                          # of each chosen token; None if no row asked
    top_logprobs: list[list[tuple[int, float]]] | None    # (id, logprob), descending; [] where not asked


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set logits[b, t] to -inf, in place, unless bit t % 32 of bitmask[b, t // 32] is set.

    bitmask is int32 [batch, ceil(vocab / 32)]; a word of -1 allows all 32 of its tokens. On CUDA one
    Triton kernel (kernels.bitmask), else its torch specification.
    """
    if logits.is_cuda and (kernel := triton_kernel("bitmask", "apply_token_bitmask")) is not None:
        kernel(logits, bitmask)
    else:
        apply_token_bitmask_ref(logits, bitmask)


class Sampler:
    def __init__(self, vocab_size: int, device: torch.device | str):
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self._shared = torch.Generator(device=self.device)
        self._shared.seed()
        # Rows of plain temperature sampling (no truncation, no seed of their own) on a CUDA device take
        # one pass over their logits (kernels.sampling) instead of steps 7-11's several.
        self._race = triton_kernel("sampling", "gumbel_argmax") if self.device.type == "cuda" else None
        self._race_seeds = random.Random(self._shared.initial_seed())

    def generator_for(self, seed: int | None) -> torch.Generator | None:
        """A request's own generator: made once per request, then passed in every SamplingRow."""
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(seed & _SEED_BITS)

    def validate(self, params: SamplingParams) -> None:
        """Refuse, at admission, what only the vocabulary size can rule out."""
        bad = [t for t in params.logit_bias if not 0 <= t < self.vocab_size]
        if bad:
            raise InvalidRequest(f"logit_bias token ids must be in [0, {self.vocab_size}), got {bad}",
                                 "logit_bias")

    def sample(self, logits: torch.Tensor, rows: list[SamplingRow],
               allowed: torch.Tensor | None = None) -> SampleOutput:
        """The next token of each row. logits is used as scratch space and overwritten."""
        return self.launch(logits, rows, allowed)()

    def launch(self, logits: torch.Tensor, rows: list[SamplingRow],
               allowed: torch.Tensor | None = None) -> Callable[[], SampleOutput]:
        """Queue the sampling on the device without waiting for it; calling the result waits and
        returns what `sample` returns. The rows must not change in between."""
        assert logits.dtype == torch.float32 and tuple(logits.shape) == (len(rows), self.vocab_size), \
            f"logits must be float32 [{len(rows)}, {self.vocab_size}], got {logits.dtype} {list(logits.shape)}"
        if not rows:
            return lambda: SampleOutput([], None, None)
        return self._to_host(*self.draw(logits, rows, allowed), rows)

    def draw(self, logits: torch.Tensor, rows: list[SamplingRow],
             allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Steps 1-11 on the device, nothing waited for: the tokens [batch] and, when a row asks for
        them, the logprobs [batch, vocab]."""
        if allowed is not None:
            apply_token_bitmask(logits, allowed)
        self._add_logit_bias(logits, rows)
        self._apply_repetition_penalty(logits, rows)
        self._apply_presence_frequency(logits, rows)
        wants_logprobs = any(r.params.logprobs or r.params.top_logprobs for r in rows)
        logprobs = logits.log_softmax(dim=1) if wants_logprobs else None
        greedy = [r.params.greedy for r in rows]
        if all(greedy):
            return logits.argmax(dim=1), logprobs
        if self._race is not None and all(g or (r.generator is None and _plain(r.params)) for r, g in zip(rows, greedy)):
            inv_t = to_device([0.0 if g else 1 / r.params.temperature for r, g in zip(rows, greedy)], torch.float32,
                              self.device)
            return self._race(logits, inv_t, self._race_seeds.getrandbits(31)), logprobs
        return self._draw(logits, rows, greedy), logprobs

    def fetch_steps(self, steps: list[torch.Tensor]) -> Callable[[], list[list[int]]]:
        """The tokens of several decode steps drawn back to back ([batch] each), in one device-to-host
        copy started now; the returned function waits for it and gives each row its tokens in order."""
        fetch = _staged(torch.stack(steps, dim=1).flatten())
        k = len(steps)

        def unpack() -> list[list[int]]:
            host = fetch()
            return [host[i:i + k] for i in range(0, len(host), k)]
        return unpack

    def _column(self, values: list[float]) -> torch.Tensor:
        return to_device(values, torch.float32, self.device).unsqueeze(1)

    def _flat_index(self, ids_per_row: list[tuple[int, Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, token) index tensors for every token of every listed row, repeats kept."""
        row_idx: list[int] = []
        token_idx: list[int] = []
        for i, ids in ids_per_row:
            row_idx += [i] * len(ids)
            token_idx += ids
        return to_device(row_idx, torch.long, self.device), to_device(token_idx, torch.long, self.device)

    def _add_logit_bias(self, logits: torch.Tensor, rows: list[SamplingRow]) -> None:
        biased = [(i, r.params.logit_bias) for i, r in enumerate(rows) if r.params.logit_bias]
        if not biased:
            return
        row_idx, token_idx = self._flat_index([(i, list(bias)) for i, bias in biased])
        values = to_device([b for _, bias in biased for b in bias.values()], torch.float32, self.device)
        logits.index_put_((row_idx, token_idx), values, accumulate=True)

    def _apply_repetition_penalty(self, logits: torch.Tensor, rows: list[SamplingRow]) -> None:
        penalised = [(i, [*r.prompt_ids, *r.output_ids]) for i, r in enumerate(rows)
                     if r.params.repetition_penalty != 1.0]
        if not penalised:
            return
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen.index_put_(self._flat_index(penalised), torch.ones((), dtype=torch.bool, device=self.device))
        penalty = self._column([r.params.repetition_penalty for r in rows])
        scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
        logits.copy_(torch.where(seen, scaled, logits))

    def _apply_presence_frequency(self, logits: torch.Tensor, rows: list[SamplingRow]) -> None:
        penalised = [(i, r.output_ids) for i, r in enumerate(rows)
                     if r.output_ids and (r.params.presence_penalty or r.params.frequency_penalty)]
        if not penalised:
            return
        counts = torch.zeros_like(logits)
        row_idx, token_idx = self._flat_index(penalised)
        counts.index_put_((row_idx, token_idx), torch.ones_like(token_idx, dtype=counts.dtype), accumulate=True)
        presence = self._column([r.params.presence_penalty for r in rows])
        frequency = self._column([r.params.frequency_penalty for r in rows])
        logits.sub_(counts * frequency + (counts > 0) * presence)

    def _draw(self, logits: torch.Tensor, rows: list[SamplingRow], greedy: list[bool]) -> torch.Tensor:
        """Steps 6-11 of the module docstring; greedy rows pass through steps 7-11 untouched."""
        greedy_tokens = logits.argmax(dim=1) if any(greedy) else None
        vocab = self.vocab_size
        per_row = [(r.params, g) for r, g in zip(rows, greedy)]
        logits.div_(self._column([1.0 if g else p.temperature for p, g in per_row]))
        top_k = [vocab if g or not 0 < p.top_k < vocab else p.top_k for p, g in per_row]
        top_p = [math.inf if g or p.top_p >= 1 else p.top_p for p, g in per_row]
        if any(k < vocab for k in top_k) or any(p < 1 for p in top_p):
            self._truncate(logits, top_k, top_p)
        min_p = [0.0 if g else p.min_p for p, g in per_row]
        if any(min_p):
            log_min_p = self._column([math.log(m) if m > 0 else -math.inf for m in min_p])
            logits.masked_fill_(logits < logits.max(dim=1, keepdim=True).values + log_min_p, -math.inf)
        # probs / E ranks tokens as the race does; E is clamped because an exact 0 would make a
        # zero-probability token's 0/0 a NaN, which argmax would pick.
        noise = self._exponentials(rows, greedy).clamp_min_(torch.finfo(torch.float32).tiny)
        tokens = logits.softmax(dim=1).div_(noise).argmax(dim=1)
        if greedy_tokens is None:
            return tokens
        return torch.where(to_device(greedy, torch.bool, self.device), greedy_tokens, tokens)

    def _truncate(self, logits: torch.Tensor, top_k: list[int], top_p: list[float]) -> None:
        """top_k, then top_p over what it kept, with one sort: each becomes a per-row logit cutoff."""
        descending = logits.sort(dim=1, descending=True).values
        k_index = to_device(top_k, torch.long, self.device).unsqueeze(1) - 1
        cutoff = descending.gather(1, k_index)
        if any(p < 1 for p in top_p):
            probs = descending.masked_fill(descending < cutoff, -math.inf).softmax(dim=1)
            mass_before = probs.cumsum(dim=1) - probs
            # A token is kept while the mass before it is short of top_p; rows with top_p 1 carry inf,
            # because a float32 cumsum can reach 1.0 before the tail and would cut it.
            kept = (mass_before < self._column(top_p)).sum(dim=1, keepdim=True)
            cutoff = torch.maximum(cutoff, descending.gather(1, kept - 1))
        logits.masked_fill_(logits < cutoff, -math.inf)

    def _exponentials(self, rows: list[SamplingRow], greedy: list[bool]) -> torch.Tensor:
        """Exp(1) noise [batch, vocab]: a seeded row's from its own generator, the rest shared.

        A seeded row draws exactly vocab values per sampled step, so its stream depends on nothing
        but its own history."""
        shape = (len(rows), self.vocab_size)
        shared = [i for i, (r, g) in enumerate(zip(rows, greedy)) if not g and r.generator is None]
        if len(shared) == len(rows):
            return torch.empty(shape, device=self.device).exponential_(generator=self._shared)
        noise = torch.ones(shape, device=self.device)
        for i, (r, g) in enumerate(zip(rows, greedy)):
            if not g and r.generator is not None:
                noise[i].exponential_(generator=r.generator)
        if shared:
            noise[shared] = torch.empty(len(shared), self.vocab_size, device=self.device).exponential_(
                generator=self._shared)
        return noise

    def _to_host(self, tokens: torch.Tensor, logprobs: torch.Tensor | None,
                 rows: list[SamplingRow]) -> Callable[[], SampleOutput]:
        """Everything the engine needs, in one device-to-host copy (float64 holds ids exactly), started
        now; the returned function waits for it and unpacks it."""
        batch = len(rows)
        parts = [tokens.to(torch.float64)]
        k = min(max(r.params.top_logprobs for r in rows), self.vocab_size)
        if logprobs is not None:
            parts.append(logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1).to(torch.float64))
            if k:
                top = logprobs.topk(k, dim=1)
                parts += [top.indices.to(torch.float64).flatten(), top.values.to(torch.float64).flatten()]
        fetch = _staged(torch.cat(parts))
        return lambda: self._unpack(fetch(), batch, k, logprobs is not None, rows)

    @staticmethod
    def _unpack(host: list[float], batch: int, k: int, with_logprobs: bool, rows: list[SamplingRow]) -> SampleOutput:
        token_ids = [int(t) for t in host[:batch]]
        if not with_logprobs:
            return SampleOutput(token_ids, None, None)
        chosen = host[batch:2 * batch]
        top_ids, top_values = host[2 * batch:2 * batch + batch * k], host[2 * batch + batch * k:]
        top_logprobs = [[(int(top_ids[i * k + j]), top_values[i * k + j]) for j in range(min(r.params.top_logprobs, k))]
                        for i, r in enumerate(rows)]
        return SampleOutput(token_ids, chosen, top_logprobs)


def _staged(values: torch.Tensor) -> Callable[[], list]:
    """values' device-to-host copy, started now into pinned memory; the function waits and lists it."""
    if values.device.type != "cuda":
        return values.tolist
    staged = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    staged.copy_(values, non_blocking=True)
    done = torch.cuda.Event()
    done.record()

    def fetch() -> list:
        done.synchronize()
        return staged.tolist()
    return fetch


def _plain(p: SamplingParams) -> bool:
    """Temperature alone shapes the draw: no top_k, top_p or min_p truncation."""
    return p.top_k <= 0 and p.top_p >= 1 and p.min_p <= 0
