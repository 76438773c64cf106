"""A request's state inside the engine: one `Req` per choice, grouped by the API request.

KV regions of a running Req's row in req_to_token (positions):

    [0, cached_len)        slots owned by the radix tree, kept alive by the lock on `node`
    [cached_len, kv_len)   slots this Req allocated and alone owns
    [kv_len, len(tokens))  tokens whose K/V is not computed yet (the next forward computes them)

Invariant: 0 <= cached_len <= kv_len <= len(tokens). A waiting Req owns nothing (row is None).
`slots` mirrors the row on the host, so freeing and caching never read the device table back (a
device-to-host read waits for the forward in flight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from gateway.engine.stop import StopStrings
from gateway.engine.tokenizer import IncrementalDetokenizer
from gateway.protocol import Delta, SamplingParams, Usage


@dataclass(slots=True)
class ReqGroup:
    """The n choices of one API request; delivers Deltas and sums usage."""
    request_id: str
    prompt_len: int
    emit: Callable[[Delta], None]            # engine thread: queues a Delta for the waiting client
    open_choices: int = 1
    usage: Usage = field(default_factory=Usage)
    aborted: bool = False


@dataclass(slots=True, eq=False)
class Req:
    rid: str
    group: ReqGroup
    index: int
    namespace: str
    prompt_ids: list[int]
    params: SamplingParams
    max_new_tokens: int
    stop_ids: frozenset[int]
    detok: IncrementalDetokenizer
    stops: StopStrings
    generator: torch.Generator | None = None
    after: "Req | None" = None               # a sibling whose prompt prefill this one waits for
    matcher: Any = None                      # structured output: the grammar's state, None when free
    tool_stream: Any = None                  # splits output into content and tool calls, when tools are on
    output_ids: list[int] = field(default_factory=list)
    row: int | None = None
    slots: list[int] = field(default_factory=list)   # host copy of the row's allocated slots, [0, kv_len + pending)
    node: Any = None                         # locked radix node covering [0, cached_len)
    cached_len: int = 0
    kv_len: int = 0
    first_hit: int | None = None             # prompt tokens found cached at first admission
    arrival: int = 0                         # scheduler step at which it arrived (for aging)
    finish_reason: str | None = None
    runs_ahead: bool = False                 # may decode several steps unseen (engine.decode_window)
    family: int = 0                          # the scheduler's key of the prompt's opening (admission order)

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def token_slice(self, start: int, stop: int) -> list[int]:
        """tokens[start:stop] without building the whole prompt + output list."""
        p = len(self.prompt_ids)
        if stop <= p:
            return self.prompt_ids[start:stop]
        if start >= p:
            return self.output_ids[start - p:stop - p]
        return self.prompt_ids[start:] + self.output_ids[:stop - p]

    @property
    def seq_len(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def prefilled(self) -> bool:
        """The prompt's K/V is computed (and, being cached, shareable by siblings)."""
        return self.kv_len >= len(self.prompt_ids) or self.finish_reason is not None

    def check(self) -> None:
        assert 0 <= self.cached_len <= self.kv_len <= self.seq_len, (self.rid, self.cached_len, self.kv_len)
        assert len(self.slots) >= self.kv_len, (self.rid, len(self.slots), self.kv_len)
        assert (self.row is None) == (self.node is None), self.rid
