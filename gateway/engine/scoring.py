"""Scoring given continuations: the log-probability the model gives each token of each choice,
conditioned on one exact prefix of token ids (a program's `select`, gateway/engine/program.py).

Token boundaries: a choice is scored as its own ids (`tokenizer.encode(choice)`) appended to the
prefix ids exactly as the engine holds them; the prefix is never re-tokenized with the choice's
text. So a prefix ending in "Mood: " scores "happy" as the tokens after the space token, and what
is scored is exactly what the turn continues with once the choice is taken.

Runs on the engine thread between two steps (`Engine.call`), as its own forwards:

    1. the prefix, less what the radix tree already holds (the match is capped at prefix[:-1],
       because the logits at the prefix's last token score every choice's first token), is
       computed in one row, in chunks of the scheduler's `chunk_tokens`, and inserted into the tree;
    2. every choice of two or more tokens extends that prefix in a row of its own by its tokens
       but the last (the logits at each give the next), as many choices per forward as free rows
       and `chunk_tokens` allow.

Choice K/V is freed afterwards; only the prefix stays cached, for the turn that continues.
Log-probabilities are the model's own: no temperature, penalty or logit bias applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gateway.protocol import InvalidRequest, Overloaded

if TYPE_CHECKING:
    from gateway.engine.engine import Engine



@dataclass(slots=True)
class Scored:
    logprobs: list[list[float]]          # per choice, per token
    prompt_tokens: int                   # tokens the scoring read: the prefix, every choice but its last token
    cached_tokens: int                   # of the prefix, found in the radix tree


def normalized(logprobs: list[float], how: str) -> float:
    """One choice's score: the mean (default), the sum, or the first token's log-probability."""
    if how == "sum":
        return sum(logprobs)
    if how == "first_token":
        return logprobs[0]
    return sum(logprobs) / len(logprobs)


def score_choices(engine: Engine, namespace: str, prefix: list[int], choices: list[list[int]]) -> Scored:
    """Per-token log-probabilities of each choice after `prefix`. Engine thread only."""
    runner, cache, rows = engine.runner, engine.cache, engine.runner.req_pool
    limit = min(runner.max_context, runner.pool.num_slots - 1)
    if not prefix or not all(choices) or len(prefix) + max(map(len, choices)) > limit:
        raise InvalidRequest(f"This model's maximum context length is {limit} tokens. However, a select's prefix "
                             f"({len(prefix)} tokens) and its longest choice ({max(map(len, choices))} tokens) "
                             f"exceed it.", "program")
    p = len(prefix)
    match = cache.match_prefix(namespace, prefix[:-1])
    cache.lock(match.node)
    m, tail = match.length, []
    try:
        tail = _slots(engine, p - m)
        shared = match.slots + tail
        budget = engine.scheduler.chunk_tokens
        row = _row(rows)
        try:
            rows.table[row, :p] = torch.tensor(shared, dtype=torch.int32)
            for start in range(m, p, budget):           # in chunks, as the scheduler prefills
                end = min(start + budget, p)
                last = _forward(engine, [(row, prefix, start, end)], [end - start - 1] if end == p else [])
        finally:
            rows.free(row)
        out = [[x] for x in last[0, torch.tensor([c[0] for c in choices], device=last.device)].tolist()]
        longer = [i for i, c in enumerate(choices) if len(c) > 1]
        while longer:
            group = longer[:1]
            while len(group) < min(len(longer), rows.available) and \
                    sum(len(choices[i]) - 1 for i in longer[:len(group) + 1]) <= budget:
                group = longer[:len(group) + 1]
            longer = longer[len(group):]
            for i, lps in zip(group, _extend_choices(engine, prefix, shared, [choices[i] for i in group])):
                out[i] += lps
        cache.insert_and_release(namespace, prefix, shared, m)      # the turn continues from here
        tail = []
    finally:
        if tail:
            runner.pool.free(tail)
        cache.unlock(match.node)
    return Scored(out, p + sum(len(c) - 1 for c in choices), m)


def _row(rows) -> int:
    row = rows.alloc()
    if row is None:
        raise Overloaded("every request row is in use; retry the select shortly", 1.0)
    return row


def _slots(engine: Engine, n: int) -> list[int]:
    pool = engine.runner.pool
    if pool.available < n:
        engine.cache.evict(n - pool.available)
    slots = pool.alloc(n)
    if slots is None:
        raise Overloaded("the KV cache is full; retry the select shortly", 1.0)
    return slots


def _extend_choices(engine: Engine, prefix: list[int], shared: list[int], choices: list[list[int]]) -> list[list[float]]:
    """Log-probabilities of each choice's tokens after its first: one row per choice, one forward."""
    rows, p = engine.runner.req_pool, len(prefix)
    taken, owned = [], []
    try:
        seqs, targets = [], []
        for c in choices:
            taken.append(_row(rows))
            slots = _slots(engine, len(c) - 1)
            owned += slots
            rows.table[taken[-1], :p + len(c) - 1] = torch.tensor(shared + slots, dtype=torch.int32)
            seqs.append((taken[-1], prefix + c, p, p + len(c) - 1))
            targets += c[1:]
        logprobs = _forward(engine, seqs, list(range(len(targets))))
    finally:
        for row in taken:
            rows.free(row)
        engine.runner.pool.free(owned)
    picked = logprobs[torch.arange(len(targets), device=logprobs.device),
                      torch.tensor(targets, device=logprobs.device)].tolist()
    out, k = [], 0
    for c in choices:
        out.append(picked[k:k + len(c) - 1])
        k += len(c) - 1
    return out


def _forward(engine: Engine, seqs: list[tuple[int, list[int], int, int]], at: list[int]) -> torch.Tensor:
    """Sequence (row, tokens, start, end) computes tokens[start:end] over the K/V its row holds for
    tokens[:start]; returns float32 log-softmax rows [len(at), vocab] at the packed indices `at`."""
    ids, positions, seq_lens, extend_lens = [], [], [], []
    for _, tokens, start, end in seqs:
        ids += tokens[start:end]
        positions += range(start, end)
        seq_lens.append(end)
        extend_lens.append(end - start)
    engine.runner.computed_tokens += len(ids)
    logits = engine.runner.run(ids, positions, seq_lens, extend_lens, [s[0] for s in seqs], graphs=False, at=at)
    return torch.log_softmax(logits, dim=-1)
