"""A fake OpenAI-compatible upstream on loopback, for the spec_api tests and the proxy benchmark.

What it answers is a `Reply`, from a pluggable function of the request body (`reply=`), or from a
script of Replies queued for the next requests (`script(...)`, consumed first, in order). A Reply
can carry latency, an error status (500, 429 with Retry-After, 400 with an OpenAI error body), a
mid-stream disconnect, a malformed chunk, tool calls and text cut into given pieces. The server
counts requests, keeps the bodies and keys it received, and how many responses are still open.

    python -m loadtest.fake_upstream --port 9000       # alone, in its own process (the benchmark)
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FAKE_MODEL = "fake-model"
PIECES = ("Hello", ",", " world", "!")


@dataclass(slots=True)
class Reply:
    pieces: tuple[str, ...] = PIECES          # the answer, one stream chunk per piece
    finish_reason: str = "stop"
    tool_calls: list[dict] = field(default_factory=list)     # [{"name": ..., "arguments": "{...}"}]
    status: int = 200                         # otherwise: an OpenAI error body with this status
    message: str = "injected failure"
    error_type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None          # sent as Retry-After with an error status
    delay: float = 0.0                        # seconds before the response starts
    chunk_delay: float = 0.0                  # seconds between stream chunks
    stall: tuple[int, float] | None = None    # stream: after this many chunks, silence for this many seconds
    disconnect_after: int | None = None       # cut the connection after this many chunks (whole: half the body)
    malformed_after: int | None = None        # a chunk that is not JSON after this many (whole: half the body)
    prompt_tokens: int | None = None          # default: words in the prompt

    @classmethod
    def text(cls, text: str, **kw) -> Reply:
        """`text` cut into word-sized pieces."""
        words = text.split(" ")
        return cls(tuple(w if i == 0 else " " + w for i, w in enumerate(words)), **kw)


ReplyFn = Callable[[dict], Reply]


def default_reply(body: dict) -> Reply:
    return Reply()


class Disconnect(Exception):
    """Raised inside a streaming body to make the server drop the connection mid-response."""


class FakeUpstream:
    def __init__(self, reply: ReplyFn = default_reply, models: tuple[str, ...] = (FAKE_MODEL,), keep: int = 1000):
        self.reply, self.model_names = reply, models
        self.scripted: collections.deque[Reply] = collections.deque()
        self.bodies: collections.deque[dict] = collections.deque(maxlen=keep)
        self.api_keys: collections.deque[str | None] = collections.deque(maxlen=keep)   # Authorization headers
        self.calls = 0
        self.open_responses = 0

    def script(self, *replies: Reply) -> None:
        self.scripted.extend(replies)

    def next_reply(self, body: dict) -> Reply:
        return self.scripted.popleft() if self.scripted else self.reply(body)

    @property
    def app(self) -> Starlette:
        routes = [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                  Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/models", self.list_models, methods=["GET"])]
        return Starlette(routes=routes)

    async def list_models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                         "owned_by": "fake"} for m in self.model_names]})

    async def chat(self, request: Request) -> Response:
        return await self.answer(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self.answer(request, chat=False)

    async def answer(self, request: Request, chat: bool) -> Response:
        body = json.loads(await request.body())
        self.calls += 1
        self.bodies.append(body)
        self.api_keys.append(request.headers.get("authorization"))
        r = self.next_reply(body)
        if r.delay:
            await asyncio.sleep(r.delay)
        if r.status != 200:
            kind = r.error_type or ("rate_limit_exceeded" if r.status == 429 else
                                    "invalid_request_error" if r.status < 500 else "server_error")
            headers = {"Retry-After": f"{r.retry_after:g}"} if r.retry_after is not None else None
            return JSONResponse({"error": {"message": r.message, "type": kind, "param": r.param, "code": r.code}},
                                r.status, headers=headers)
        if body.get("model") not in self.model_names:
            return JSONResponse({"error": {"message": f"The model '{body.get('model')}' does not exist",
                                           "type": "invalid_request_error", "param": "model",
                                           "code": "model_not_found"}}, 404)
        shape = Shape(body, r, chat)
        if not body.get("stream"):
            whole = json.dumps(shape.whole()).encode()
            if r.malformed_after is not None:                  # a body cut short, sent as if whole
                return Response(whole[:len(whole) // 2], media_type="application/json")
            if r.disconnect_after is not None:
                return StreamingResponse(self.cut(whole), media_type="application/json")
            return Response(whole, media_type="application/json")
        return StreamingResponse(self.events(shape, r), media_type="text/event-stream")

    async def cut(self, whole: bytes):
        self.open_responses += 1
        try:
            yield whole[:len(whole) // 2]
            raise Disconnect("scripted disconnect mid-body")
        finally:
            self.open_responses -= 1

    async def events(self, shape: Shape, r: Reply):
        self.open_responses += 1
        try:
            for k, chunk in enumerate(shape.chunks()):
                if r.disconnect_after is not None and k == r.disconnect_after:
                    raise Disconnect("scripted mid-stream disconnect")
                if k == r.malformed_after:
                    yield b'data: {"choices": [{"index": 0, "delta": {"content": "oops"\n\n'
                if r.chunk_delay and k:
                    await asyncio.sleep(r.chunk_delay)
                if r.stall is not None and k == r.stall[0]:
                    await asyncio.sleep(r.stall[1])
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            self.open_responses -= 1


class Shape:
    """One Reply as OpenAI's objects: the stream's chunks, or the whole response."""

    def __init__(self, body: dict, r: Reply, chat: bool):
        self.body, self.r, self.chat = body, r, chat
        self.n = body.get("n") or 1
        self.id = ("chatcmpl-" if chat else "cmpl-") + "fake"
        self.created = int(time.time())
        prompt = body.get("messages") if chat else body.get("prompt")
        words = r.prompt_tokens if r.prompt_tokens is not None else len(json.dumps(prompt).split())
        completion = len(r.pieces) + sum(2 for _ in r.tool_calls)
        self.usage = {"prompt_tokens": words, "completion_tokens": completion * self.n,
                      "total_tokens": words + completion * self.n,
                      "prompt_tokens_details": {"cached_tokens": 0}}

    def envelope(self, choices: list[dict], whole: bool = False) -> dict:
        kind = ("chat.completion" if whole else "chat.completion.chunk") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.body["model"],
                "choices": choices}

    def logprobs(self, piece: str) -> dict | None:
        if self.chat:
            if not self.body.get("logprobs"):
                return None
            top = [{"token": f"t{k}", "logprob": -1.0 - k, "bytes": [116]} for k in range(self.body.get("top_logprobs") or 0)]
            return {"content": [{"token": piece, "logprob": -0.5, "bytes": list(piece.encode()), "top_logprobs": top}],
                    "refusal": None}
        k = self.body.get("logprobs")
        if k is None:
            return None
        return {"tokens": [piece], "token_logprobs": [-0.5], "top_logprobs": [{f"t{j}": -1.0 - j for j in range(k)}],
                "text_offset": [0]}

    def chunks(self):
        usage = (self.body.get("stream_options") or {}).get("include_usage")
        for i in range(self.n):
            if self.chat:
                yield self.chunk(i, {"role": "assistant", "content": ""})
            for piece in self.r.pieces:
                yield self.chunk(i, {"content": piece} if self.chat else piece, logprobs=self.logprobs(piece))
            for k, call in enumerate(self.r.tool_calls):
                args = call["arguments"]
                yield self.chunk(i, {"tool_calls": [{"index": k, "id": f"call_{k}", "type": "function",
                                                     "function": {"name": call["name"], "arguments": ""}}]})
                for part in (args[:len(args) // 2], args[len(args) // 2:]):
                    yield self.chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": part}}]})
            yield self.chunk(i, {} if self.chat else "", finish=self.r.finish_reason)
        if usage:
            yield {**self.envelope([]), "usage": self.usage}

    def chunk(self, i: int, delta, finish: str | None = None, logprobs: dict | None = None) -> dict:
        choice = {"index": i, "delta": delta} if self.chat else {"index": i, "text": delta}
        choice.update(logprobs=logprobs, finish_reason=finish)
        out = self.envelope([choice])
        if (self.body.get("stream_options") or {}).get("include_usage"):
            out["usage"] = None
        return out

    def whole_logprobs(self) -> dict | None:
        parts = [self.logprobs(p) for p in self.r.pieces]
        if not parts or parts[0] is None:
            return None
        if self.chat:
            return {"content": [e for p in parts for e in p["content"]], "refusal": None}
        offsets = [sum(len(q) for q in self.r.pieces[:k]) for k in range(len(parts))]
        return {"tokens": list(self.r.pieces), "token_logprobs": [p["token_logprobs"][0] for p in parts],
                "top_logprobs": [p["top_logprobs"][0] for p in parts], "text_offset": offsets}

    def whole(self) -> dict:
        text = "".join(self.r.pieces)
        logprobs = self.whole_logprobs()
        choices = []
        for i in range(self.n):
            if self.chat:
                message = {"role": "assistant", "content": text or None, "refusal": None}
                if self.r.tool_calls:
                    message["tool_calls"] = [{"id": f"call_{k}", "type": "function", "function": c}
                                             for k, c in enumerate(self.r.tool_calls)]
                choices.append({"index": i, "message": message, "logprobs": logprobs,
                                "finish_reason": self.r.finish_reason})
            else:
                choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": self.r.finish_reason})
        return {**self.envelope(choices, whole=True), "usage": self.usage}


def main() -> None:
    import uvicorn
    ap = argparse.ArgumentParser(description="a fake OpenAI-compatible upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    uvicorn.run(FakeUpstream().app, host=args.host, port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
