"""Running a request against the Backend and answering with a whole response or an SSE stream.

The first Delta is awaited before the response starts, so errors the backend raises up front
(context length, bad token ids) are proper 4xx responses; an error after the stream has started
goes out as an `error` event, as OpenAI does. Cancellation (client gone) propagates into the
backend's generator, which aborts the request and frees its memory.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from sse_starlette.sse import EventSourceResponse
from starlette.responses import JSONResponse

from gateway.api.errors import ApiError
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

    async def next(self, it: AsyncIterator[Delta]) -> Delta:
        t = time.perf_counter()
        try:
            return await it.__anext__()
        finally:
            now = time.perf_counter()
            self.waiting += now - t
            if self.first_token is None:
                self.first_token = now - self.start
            elif self._last is not None:
                self.gaps.append(now - self._last)
            self._last = now


async def respond(deltas: AsyncIterator[Delta], shaper: Shaper, stream: bool, include_usage: bool,
                  on_done: Callable[[Usage | None, Timing], None]):
    timing = Timing()
    try:
        first = await timing.next(deltas)
    except StopAsyncIteration:
        first = None
    except Exception as exc:
        raise backend_error(exc) from exc

    async def all_deltas() -> AsyncIterator[Delta]:
        d = first
        while d is not None:
            shaper.add(d)
            yield d
            try:
                d = await timing.next(deltas)
            except StopAsyncIteration:
                d = None

    if not stream:
        try:
            async for _ in all_deltas():
                pass
        except Exception as exc:
            raise backend_error(exc) from exc
        on_done(shaper.final_usage, timing)
        return JSONResponse(shaper.full())

    async def events():
        try:
            async for d in all_deltas():
                for chunk in shaper.chunks(d, include_usage):
                    yield {"data": json.dumps(chunk, ensure_ascii=False)}
        except Exception as exc:
            yield {"data": json.dumps(backend_error(exc).body())}
            return
        if include_usage:
            yield {"data": json.dumps(shaper.usage_chunk())}
        yield {"data": "[DONE]"}
        on_done(shaper.final_usage, timing)

    return EventSourceResponse(events(), sep="\n", ping=15)
