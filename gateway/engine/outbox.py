"""Deltas made during a step, handed to their clients' event loops with one wake-up per loop.

Waking an asyncio loop from another thread (`call_soon_threadsafe`) writes to its self-pipe, 20-45 µs
each; one wake-up per token of 256 decoding requests was most of a decode step's CPU time. The
engine thread puts Deltas here and flushes once per loop iteration, so every client's Deltas of a
step arrive in one callback, in the order they were made.

Each request reads its Deltas from a `Mailbox`. A client that falls behind the engine (a thousand
streams on one event loop) takes everything that arrived since it last looked, with consecutive
plain Deltas of a choice merged into one, so its per-step cost stops growing with the backlog.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.protocol import Delta

Item = tuple["Mailbox", "Delta | BaseException", Callable[[], None]]


class Mailbox:
    """One request's Deltas, filled on its event loop by `_deliver`, emptied by `take`."""
    __slots__ = ("items", "_waiter")

    def __init__(self) -> None:
        self.items: list[Delta | BaseException] = []
        self._waiter: asyncio.Future | None = None

    def put(self, item: Delta | BaseException) -> None:
        self.items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[Delta | BaseException]:
        """Every item that arrived since the last take (waiting for one), plain Deltas merged."""
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        items, self.items = self.items, []
        return merged(items) if len(items) > 1 else items


def mergeable(d: object) -> bool:
    return isinstance(d, Delta) and d.finish_reason is None and not d.tool_calls and d.usage is None


def merged(items: list[Delta | BaseException]) -> list[Delta | BaseException]:
    """Runs of a choice's plain Deltas (no ending, no tool calls) as one Delta each; order kept."""
    out: list[Delta | BaseException] = []
    last: dict[int, int] = {}                   # choice index -> position in out of its open plain Delta
    for d in items:
        if not mergeable(d):
            out.append(d)
            last.clear()                        # nothing merges across an ending or an error
            continue
        at = last.get(d.index)
        if at is None:
            last[d.index] = len(out)
            out.append(d)
            continue
        prev = out[at]
        logprobs = None if prev.logprobs is None else prev.logprobs + (d.logprobs or [])
        out[at] = Delta(d.index, prev.text + d.text, prev.token_ids + d.token_ids, logprobs)
    return out


def _deliver(items: list[Item]) -> None:
    for box, delta, _ in items:
        box.put(delta)


class Outbox:
    def __init__(self) -> None:
        self._pending: dict[asyncio.AbstractEventLoop, list[Item]] = {}

    def sink(self, loop: asyncio.AbstractEventLoop, box: Mailbox,
             lost: Callable[[], None]) -> Callable[[Delta | BaseException], None]:
        """An emit function for one request (engine thread only); `lost` runs if its loop is gone."""
        def emit(delta: Delta | BaseException) -> None:
            self._pending.setdefault(loop, []).append((box, delta, lost))
        return emit

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:                  # the loop is closed: nobody listens
                for lost in {id(lost): lost for _, _, lost in items}.values():
                    lost()
