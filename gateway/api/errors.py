"""OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`, for every failure.

Routes raise ApiError; anything else that escapes a route is a bug and answers 500 with the same
envelope (never a bare traceback), while bad input is always caught as a 4xx before that.
"""
from __future__ import annotations

import logging

from starlette.requests import Request

from gateway.api.answers import JsonAnswer

log = logging.getLogger(__name__)

# As OpenAI sends them: a bad key is an invalid_request_error with code invalid_api_key.
TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
         404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, type_: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}
        self.type = type_ or TYPES.get(status, "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonAnswer:
        return JsonAnswer(self.body(), self.status, self.headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


async def api_error_handler(_: Request, exc: Exception) -> JsonAnswer:
    return exc.response()


async def unknown_route(request: Request, _exc: Exception) -> JsonAnswer:
    return ApiError(404, f"Unknown request URL: {request.method} {request.url.path}", code="unknown_url").response()


async def method_not_allowed(request: Request, _exc: Exception) -> JsonAnswer:
    return ApiError(405, f"Method {request.method} is not allowed for {request.url.path}",
                    code="method_not_allowed").response()


def server_error(method: str, path: str, exc: BaseException) -> ApiError:
    """The 500 for a bug, logged with its traceback."""
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return ApiError(500, "The server had an error while processing your request.", code="internal_error")


async def internal_error(request: Request, exc: Exception) -> JsonAnswer:
    return server_error(request.method, request.url.path, exc).response()
