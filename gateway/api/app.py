"""The HTTP app: thin routes (parse, call the Backend, shape the response) behind the gateway
middleware (authentication, rate limits, body size, request metrics).

The two generation routes are plain ASGI handlers `(scope, receive) -> answer`: a POST to exactly their
path goes to them straight from the middleware (Dispatch), past Starlette's application, router,
Request and per-route exception wrappers; every other request, and their own other methods, take
Starlette's routes as before. A handler raises ApiError only before it returns its answer; anything
else it raises is a bug, answered with the 500 envelope as Starlette's routes answer theirs.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.answers import JsonAnswer
from gateway.api.auth import ANONYMOUS, KeyStore
from gateway.api.chat import ChatShaper, parse_chat
from gateway.api.completions import CompletionShaper, parse_completion
from gateway.api.errors import (ApiError, api_error_handler, internal_error, method_not_allowed, server_error,
                                unknown_route)
from gateway.api.generation import Timing, merged, respond
from gateway.api.jsonio import loads
from gateway.api.limits import RateLimiter
from gateway.api.metrics import Metrics
from gateway.api.middleware import GatewayMiddleware
from gateway.api.shapes import random_hex
from gateway.config import ServeConfig
from gateway.protocol import Backend, ModelCard, Usage

Answer = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Scope, Receive], Awaitable[Answer]]


class ClientGone(Exception):
    """The client hung up before its request body was read: nobody to answer."""


def request_id(prefix: str) -> str:
    return prefix + random_hex(32)


class Dispatch:
    """POST to a generation route's exact path: its handler, straight; anything else: the rest of the app."""

    def __init__(self, app: ASGIApp, handlers: dict[str, Handler]):
        self.app, self.handlers = app, handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        try:
            answer = await handler(scope, receive)
        except ApiError as err:
            answer = err.response()
        except ClientGone:
            return
        except Exception as exc:
            answer = server_error(scope["method"], scope["path"], exc).response()
        await answer(scope, receive, send)


class Gateway(GatewayMiddleware):
    """The app as served: the gateway middleware in front of Dispatch in front of Starlette (`routes`)."""

    def __init__(self, routes: Starlette, handlers: dict[str, Handler], keys: KeyStore, limiter: RateLimiter,
                 metrics: Metrics, max_body_bytes: int):
        super().__init__(Dispatch(routes, handlers), keys, limiter, metrics, max_body_bytes)
        self.routes, self.state = routes, routes.state


def as_route(handler: Handler) -> Callable[[Request], Awaitable[Answer]]:
    async def endpoint(request: Request) -> Answer:
        return await handler(request.scope, request.receive)
    return endpoint


def model_object(card: ModelCard) -> dict:
    return {"id": card.id, "object": "model", "created": card.created or int(time.time()), "owned_by": card.owned_by}


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def read_json(receive: Receive):
    raw = await read_body(receive)
    try:
        return loads(raw)
    except (ValueError, RecursionError):         # bad JSON, bad UTF-8, 5,000-digit numbers, deep nesting
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                            "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                       code="invalid_json") from None


def create_app(backend: Backend, cfg: ServeConfig | None = None) -> Gateway:
    cfg = cfg or ServeConfig()
    models = backend.models()
    by_id = {m.id: m for m in models}
    served = set(by_id)
    stats = getattr(backend, "stats", None)
    metrics = Metrics(stats)
    limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)

    def finished(state: dict):
        key = state.get("rate_key") or state.get("api_key", ANONYMOUS)

        def record(usage: Usage | None, timing: Timing) -> None:
            total = time.perf_counter() - timing.start
            metrics.observe_overhead(max(total - timing.waiting, 0.0))
            if timing.first_token is not None:
                metrics.observe_ttft(timing.first_token)
            for gap in timing.gaps:
                metrics.observe_itl(gap)
            if usage is not None:
                metrics.observe_tokens(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
                limiter.debit(key, usage.total_tokens)
        return record

    async def chat(scope: Scope, receive: Receive) -> Answer:
        state = scope.setdefault("state", {})
        req, model, stream, include_usage = parse_chat(await read_json(receive), served,
                                                       state.get("api_key", ANONYMOUS), request_id("chatcmpl-"))
        req.model, req.stream = model, stream
        shaper = ChatShaper(model, req.n, req.params.logprobs)
        return await respond(backend.generate(req), shaper, stream, include_usage, finished(state))

    async def completions(scope: Scope, receive: Receive) -> Answer:
        state = scope.setdefault("state", {})
        reqs, model, stream, include_usage, echoes = parse_completion(
            await read_json(receive), served, state.get("api_key", ANONYMOUS), request_id("cmpl-"))
        for r in reqs:
            r.model, r.stream = model, stream
        shaper = CompletionShaper(model, len(reqs) * reqs[0].n, reqs[0].params.logprobs, echoes)
        return await respond(merged(backend, reqs), shaper, stream, include_usage, finished(state))

    async def list_models(_: Request) -> JsonAnswer:
        return JsonAnswer({"object": "list", "data": [model_object(m) for m in models]})

    async def get_model(request: Request) -> JsonAnswer:
        name = request.path_params["model"]
        if name not in by_id:
            raise ApiError(404, f"The model '{name}' does not exist", "model", "model_not_found")
        return JsonAnswer(model_object(by_id[name]))

    async def health(_: Request) -> JsonAnswer:
        state = await backend.health()
        return JsonAnswer({**state, "models": sorted(served)}, 200 if state.get("status") == "ok" else 503)

    async def metrics_route(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    generation = {"/v1/chat/completions": chat, "/v1/completions": completions}
    routes = [
        *(Route(path, as_route(handler), methods=["POST"]) for path, handler in generation.items()),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    handlers = {ApiError: api_error_handler, 404: unknown_route, 405: method_not_allowed, Exception: internal_error}
    rest = Starlette(routes=routes, exception_handlers=handlers)
    rest.state.limiter, rest.state.metrics = limiter, metrics
    return Gateway(rest, generation, KeyStore.from_config(cfg), limiter, metrics, cfg.max_body_bytes)
