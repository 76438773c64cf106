"""Running a request against the Backend and answering with a whole response or an SSE stream.

The first Delta is awaited before the response starts, so errors the backend raises up front
(context length, bad token ids) are proper 4xx responses; an error after the stream has started
goes out as an `error` event, as OpenAI does. A client that hangs up mid-stream cancels the writing
task, and the cancellation propagates into the backend's generator, which aborts the request and
frees its memory. A stream writes each Delta's chunks in one message and ends with the usage chunk,
[DONE] and the end of the body in one, so a short answer costs few writes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.types import Receive, Scope, Send

from gateway.api.answers import STREAM_HEADERS, JsonAnswer, Listener, event
from gateway.api.errors import ApiError
from gateway.api.jsonio import dumps
from gateway.api.shapes import Shaper
from gateway.protocol import (Backend, BackendUnavailable, Delta, GenerateRequest, InvalidRequest, Overloaded,
                              UpstreamError, Usage)

log = logging.getLogger(__name__)


def backend_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidRequest):
        code = "context_length_exceeded" if "context length" in str(exc) else "invalid_value"
        return ApiError(400, str(exc), exc.param, code)
    if isinstance(exc, Overloaded):
        return ApiError(429, f"The server is overloaded: {exc}", code="overloaded",
                        headers={"Retry-After": str(max(1, round(exc.retry_after)))})
    if isinstance(exc, UpstreamError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
        return ApiError(exc.status, exc.message, exc.param, exc.code, headers, exc.type)
    if isinstance(exc, BackendUnavailable):
        return ApiError(503, f"The model backend is unavailable: {exc}", code="backend_unavailable")
    log.error("backend failed: %r", exc)
    return ApiError(500, f"The model backend failed while generating: {exc}", code="backend_error")


async def merged(backend: Backend, reqs: list[GenerateRequest]) -> AsyncIterator[Delta]:
    """The Deltas of several requests (completions with a list of prompts) as one stream: choice
    indices offset by prompt, and the summed Usage on one last Delta."""
    if len(reqs) == 1:
        async for d in backend.generate(reqs[0]):
            yield d
        return
    queue: asyncio.Queue = asyncio.Queue()
    total, done = Usage(), object()

    async def pump(p: int, req: GenerateRequest) -> None:
        try:
            async for d in backend.generate(req):
                await queue.put((p, d))
        except Exception as exc:
            await queue.put(exc)
        finally:
            await queue.put(done)

    tasks = [asyncio.create_task(pump(p, r)) for p, r in enumerate(reqs)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                p, d = item
                if d.usage:
                    total.prompt_tokens += d.usage.prompt_tokens
                    total.completion_tokens += d.usage.completion_tokens
                    total.cached_tokens += d.usage.cached_tokens
                yield Delta(p * reqs[p].n + d.index, d.text, d.token_ids, d.logprobs, d.finish_reason)
        yield Delta(0, usage=total)
    finally:
        for t in tasks:
            t.cancel()


class Timing:
    """Where a request's time went, for the metrics: waiting on the backend vs. the gateway itself."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.waiting = 0.0
        self.first_token: float | None = None
        self.gaps: list[float] = []
        self._last: float | None = None

    async def next(self, it: AsyncIterator[Delta]) -> Delta | None:
        """The next Delta, None at the end."""
        t = time.perf_counter()
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return None
        finally:
            now = time.perf_counter()
            self.waiting += now - t
            if self.first_token is None:
                self.first_token = now - self.start
            elif self._last is not None:
                self.gaps.append(now - self._last)
            self._last = now


Done = Callable[[Usage | None, Timing], None]


async def respond(deltas: AsyncIterator[Delta], shaper: Shaper, stream: bool, include_usage: bool,
                  on_done: Done) -> JsonAnswer | Stream:
    timing = Timing()
    try:
        first = await timing.next(deltas)
    except Exception as exc:
        raise backend_error(exc) from exc
    if stream:
        return Stream(deltas, first, shaper, include_usage, on_done, timing)
    d = first
    try:
        while d is not None:
            shaper.add(d)
            d = await timing.next(deltas)
    except Exception as exc:
        raise backend_error(exc) from exc
    return JsonAnswer(shaper.full(), after=lambda: on_done(shaper.final_usage, timing))


class Stream:
    """The SSE answer: OpenAI's chunks as the Deltas come, then the usage chunk if asked for, then [DONE]."""

    def __init__(self, deltas: AsyncIterator[Delta], first: Delta | None, shaper: Shaper, include_usage: bool,
                 on_done: Done, timing: Timing):
        self.deltas, self.first, self.shaper, self.include_usage = deltas, first, shaper, include_usage
        self.on_done, self.timing = on_done, timing
        self.complete = False               # every Delta went out: the usage is final

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        listener = Listener(receive, send)
        try:
            tail = await self.events(send, listener)
        except asyncio.CancelledError:
            if listener.absorbed():             # the client hung up: nobody to answer
                return
            raise
        finally:
            listener.stop()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if self.complete:
            self.on_done(self.shaper.final_usage, self.timing)

    async def events(self, send: Send, listener: Listener) -> bytes:
        """Sends every chunk but the last; returns the last events (usage, [DONE]), or the error event."""
        shaper, d = self.shaper, self.first
        try:
            while d is not None:
                shaper.add(d)
                chunks = shaper.chunks(d, self.include_usage)
                if chunks:
                    await send({"type": "http.response.body", "more_body": True,
                                "body": b"".join([event(dumps(c)) for c in chunks])})
                    listener.sent()
                d = await self.timing.next(self.deltas)
        except Exception as exc:
            return event(dumps(backend_error(exc).body()))
        self.complete = True
        usage = event(dumps(shaper.usage_chunk())) if self.include_usage else b""
        return usage + b"data: [DONE]\n\n"
