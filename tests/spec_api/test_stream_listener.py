"""The listener beside a stream being written (gateway/api/answers.py): keep-alive pings while the
backend is quiet, the writer cancelled when the client hangs up, and nothing sent once stopped."""
from __future__ import annotations

import asyncio

from gateway.api.answers import PING, Listener


def test_a_quiet_stream_is_pinged_and_a_hang_up_cancels_the_writer():
    async def main() -> tuple[list[bytes], str]:
        sent: list[bytes] = []
        hang_up = asyncio.Event()

        async def receive() -> dict:
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message["body"])

        async def writer() -> str:
            listener = Listener(receive, send, ping=0.05)
            try:
                await asyncio.sleep(30)                     # a backend with nothing to say yet
            except asyncio.CancelledError:
                return "absorbed" if listener.absorbed() else "cancelled"
            finally:
                listener.stop()
            return "slept"

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.19)
        hang_up.set()
        return sent, await asyncio.wait_for(task, 5)

    sent, outcome = asyncio.run(main())
    assert outcome == "absorbed"
    assert 2 <= len(sent) <= 4 and set(sent) == {PING}


def test_nothing_is_sent_after_stop_and_events_put_off_the_ping():
    async def main() -> list[bytes]:
        sent: list[bytes] = []

        async def receive() -> dict:
            await asyncio.sleep(30)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message["body"])

        listener = Listener(receive, send, ping=0.1)
        for _ in range(4):                                  # an event every 0.05 s: no ping needed
            await asyncio.sleep(0.05)
            listener.sent()
        assert sent == []
        listener.stop()
        await asyncio.sleep(0.3)
        return sent

    assert asyncio.run(main()) == []
