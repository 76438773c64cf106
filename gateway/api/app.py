"""The HTTP surface served so far: health and the model list, with OpenAI-style errors.

Chat and text completions arrive with the engine and API issues; until then every other route
answers 404 in the OpenAI error envelope, as OpenAI does for an unknown route.
"""
from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.protocol import Backend, ModelCard


def model_object(card: ModelCard) -> dict:
    return {"id": card.id, "object": "model", "created": card.created or int(time.time()), "owned_by": card.owned_by}


def error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def create_app(backend: Backend) -> Starlette:
    models = backend.models()
    by_id = {m.id: m for m in models}

    async def health(_: Request) -> JSONResponse:
        state = await backend.health()
        return JSONResponse({**state, "models": [m.id for m in models]}, 200 if state["status"] == "ok" else 503)

    async def list_models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_object(m) for m in models]})

    async def get_model(request: Request) -> JSONResponse:
        card = by_id.get(request.path_params["model"])
        if card is None:
            return error(404, f"The model '{request.path_params['model']}' does not exist", "invalid_request_error",
                         "model", "model_not_found")
        return JSONResponse(model_object(card))

    async def not_found(request: Request, _exc) -> JSONResponse:
        return error(404, f"Unknown request URL: {request.method} {request.url.path}", "invalid_request_error",
                     code="unknown_url")

    routes = [Route("/health", health), Route("/v1/models", list_models),
              Route("/v1/models/{model:path}", get_model)]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
