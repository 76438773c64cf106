"""Decode windows: several decode steps back to back on the device, the host looking once.

At large batches a decode step's host work (scheduling, launching, reading the tokens back,
detokenizing, a Delta per request, a wake-up per client) takes longer than the device's forward, so
the host sets the pace. A window of k steps allocates k slots per request up front, feeds each step
the tokens the previous one drew without leaving the device, reads all k tokens back in one copy and
reports them as one Delta per request: the host work of a step is paid once per window.

Only requests whose tokens the host need not see one at a time run ahead (`runs_ahead`): no grammar
(every token changes the next mask), no stop strings or tool calls (text ends them), no penalties
over the output (the next logits depend on it), no logprobs. A request that reaches max_tokens or
draws a stop token inside a window keeps the tokens up to there, and the slots past them go back to
the pool (`Scheduler.cut_window`); while requests wait for a place, windows end where the first
running request does, so none waits on tokens nobody keeps. Greedy and seeded requests draw exactly
what single steps would. The price: a request arriving during a window waits for its end (at most
`decode_steps` steps), and a stream receives k tokens at a time.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from gateway.engine.outputs import Outputs
from gateway.engine.request import Req
from gateway.engine.runner import ModelRunner
from gateway.engine.sampler import Sampler, SamplingRow
from gateway.engine.scheduler import Batch


def runs_ahead(r: Req) -> bool:
    """Whether r's next tokens can be drawn without the host seeing each one first."""
    p = r.params
    return (Outputs.deferrable(r) and r.matcher is None and not p.logprobs and not p.top_logprobs
            and p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty)


def launch_window(runner: ModelRunner, sampler: Sampler, batch: Batch, rows: list[SamplingRow],
                  logits: torch.Tensor) -> Callable[[], list[list[int]]]:
    """Queue the batch's remaining steps behind its first (whose `logits` are given) without waiting;
    calling the result waits and returns each request's `batch.steps` tokens."""
    assert not batch.is_prefill and batch.steps > 1 and len(rows) == len(batch.reqs)
    drawn = [sampler.draw(logits, rows)[0]]
    for step in range(1, batch.steps):
        drawn.append(sampler.draw(runner.forward(batch, step, drawn[-1]), rows)[0])
    return sampler.fetch_steps(drawn)
