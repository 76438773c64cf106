"""The HTTP app: thin routes (parse, call the Backend, shape the response) behind the gateway
middleware (authentication, rate limits, body size, request metrics)."""
from __future__ import annotations

import json
import time
import uuid

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api.auth import KeyStore
from gateway.api.chat import ChatShaper, parse_chat
from gateway.api.completions import CompletionShaper, parse_completion
from gateway.api.errors import ApiError, api_error_handler, internal_error, method_not_allowed, unknown_route
from gateway.api.generation import Timing, merged, respond
from gateway.api.limits import RateLimiter
from gateway.api.metrics import Metrics
from gateway.api.middleware import GatewayMiddleware
from gateway.config import ServeConfig
from gateway.protocol import Backend, ModelCard, Usage


def model_object(card: ModelCard) -> dict:
    return {"id": card.id, "object": "model", "created": card.created or int(time.time()), "owned_by": card.owned_by}


async def read_json(request: Request):
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):         # bad JSON, bad UTF-8, 5,000-digit numbers, deep nesting
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                            "using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                       code="invalid_json") from None


def create_app(backend: Backend, cfg: ServeConfig | None = None) -> Starlette:
    cfg = cfg or ServeConfig()
    models = backend.models()
    by_id = {m.id: m for m in models}
    served = set(by_id)
    stats = getattr(backend, "stats", None)
    metrics = Metrics(stats)
    limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)

    def api_key(request: Request) -> str:
        return getattr(request.state, "api_key", "anonymous")

    def finished(request: Request):
        key = getattr(request.state, "rate_key", api_key(request))

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

    async def chat(request: Request) -> Response:
        req, model, stream, include_usage = parse_chat(await read_json(request), served, api_key(request),
                                                       "chatcmpl-" + uuid.uuid4().hex)
        req.model, req.stream = model, stream
        shaper = ChatShaper(model, req.n, req.params.logprobs)
        return await respond(backend.generate(req), shaper, stream, include_usage, finished(request))

    async def completions(request: Request) -> Response:
        reqs, model, stream, include_usage, echoes = parse_completion(
            await read_json(request), served, api_key(request), "cmpl-" + uuid.uuid4().hex)
        for r in reqs:
            r.model, r.stream = model, stream
        shaper = CompletionShaper(model, len(reqs) * reqs[0].n, reqs[0].params.logprobs, echoes)
        return await respond(merged(backend, reqs), shaper, stream, include_usage, finished(request))

    async def list_models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_object(m) for m in models]})

    async def get_model(request: Request) -> JSONResponse:
        name = request.path_params["model"]
        if name not in by_id:
            raise ApiError(404, f"The model '{name}' does not exist", "model", "model_not_found")
        return JSONResponse(model_object(by_id[name]))

    async def health(_: Request) -> JSONResponse:
        state = await backend.health()
        return JSONResponse({**state, "models": sorted(served)}, 200 if state.get("status") == "ok" else 503)

    async def metrics_route(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    middleware = [Middleware(GatewayMiddleware, keys=KeyStore.from_config(cfg), limiter=limiter, metrics=metrics,
                             max_body_bytes=cfg.max_body_bytes)]
    handlers = {ApiError: api_error_handler, 404: unknown_route, 405: method_not_allowed, Exception: internal_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.limiter, app.state.metrics = limiter, metrics
    return app
