"""Deltas made during a step, handed to their clients' event loops with one wake-up per loop.

Waking an asyncio loop from another thread (`call_soon_threadsafe`) writes to its self-pipe, 20-45 µs
each; one wake-up per token of 256 decoding requests was most of a decode step's CPU time. The
engine thread puts Deltas here and flushes once per loop iteration, so every client's Deltas of a
step arrive in one callback, in the order they were made.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.protocol import Delta

Item = tuple[asyncio.Queue, "Delta | BaseException", Callable[[], None]]


def _deliver(items: list[Item]) -> None:
    for queue, delta, _ in items:
        queue.put_nowait(delta)


class Outbox:
    def __init__(self) -> None:
        self._pending: dict[asyncio.AbstractEventLoop, list[Item]] = {}

    def sink(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
             lost: Callable[[], None]) -> Callable[[Delta | BaseException], None]:
        """An emit function for one request (engine thread only); `lost` runs if its loop is gone."""
        def emit(delta: Delta | BaseException) -> None:
            self._pending.setdefault(loop, []).append((queue, delta, lost))
        return emit

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, items in pending.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:                  # the loop is closed: nobody listens
                for lost in {id(lost): lost for _, _, lost in items}.values():
                    lost()
