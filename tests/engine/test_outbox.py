"""A client that falls behind the engine gets its backlog merged, losing and reordering nothing."""
from __future__ import annotations

import asyncio
import threading

from gateway.engine.outbox import Mailbox, Outbox
from gateway.protocol import Delta, TokenLogprob, Usage


def test_a_lagging_client_gets_its_backlog_merged_in_order():
    async def main() -> list:
        loop, box, outbox = asyncio.get_running_loop(), Mailbox(), Outbox()
        emit = outbox.sink(loop, box, lambda: None)
        lp = lambda t: TokenLogprob(t, str(t), -0.5, [])

        def engine() -> None:                     # three steps' Deltas before the client looks
            for step, items in enumerate([
                [Delta(0, "a", [1], [lp(1)]), Delta(1, "x", [9], [lp(9)])],
                [Delta(0, "b", [2], [lp(2)]), Delta(1, "y", [8], [lp(8)])],
                [Delta(0, "c", [3], [lp(3)], finish_reason="length"), Delta(1, "z", [7], [lp(7)])],
            ]):
                for d in items:
                    emit(d)
                outbox.flush()
        worker = threading.Thread(target=engine)
        worker.start()
        worker.join()
        await asyncio.sleep(0.01)
        first = await box.take()
        emit(Delta(1, "!", [6], [lp(6)], finish_reason="stop", usage=Usage(3, 8)))
        outbox.flush()
        return first, await box.take()

    first, rest = asyncio.run(main())
    assert [(d.index, d.text, d.token_ids, [x.token_id for x in d.logprobs], d.finish_reason) for d in first] == [
        (0, "ab", [1, 2], [1, 2], None), (1, "xy", [9, 8], [9, 8], None),
        (0, "c", [3], [3], "length"), (1, "z", [7], [7], None)], "nothing merges across an ending"
    assert [(d.text, d.finish_reason, d.usage.completion_tokens) for d in rest] == [("!", "stop", 8)]


def test_an_error_is_delivered_after_what_came_before_it():
    async def main() -> list:
        box = Mailbox()
        for item in (Delta(0, "a", [1]), Delta(0, "b", [2]), RuntimeError("boom"), Delta(0, "late", [3])):
            box.put(item)
        return await box.take()

    items = asyncio.run(main())
    assert isinstance(items[0], Delta) and items[0].text == "ab"
    assert isinstance(items[1], RuntimeError) and items[2].text == "late"
