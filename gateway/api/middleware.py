"""What every HTTP request passes before a route sees it: API key, rate limit, body size, metrics.

Under /v1/ a request must carry a configured key (when any are configured) and fit its key's rate
limit; the key id lands in `request.state.api_key` (the radix-cache namespace) and the rate-limit
bucket name in `request.state.rate_key` (for RateLimiter.debit). /health and /metrics stay open.
Bodies are capped everywhere, by Content-Length up front and by counting bytes as they arrive.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.auth import ANONYMOUS, KeyStore
from gateway.api.errors import ApiError
from gateway.api.limits import RateLimiter
from gateway.api.metrics import Metrics

# Route labels for metrics; any other path counts as "other", so arbitrary URLs cannot grow the
# label set without bound.
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/models/{model:path}", "/v1/chat/completions",
          "/v1/completions")


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body is too large: the limit is {limit} bytes.", code="request_too_large")


class Exchange:
    """One request's receive and send as the app sees them: counts body bytes against the limit and
    remembers the response status and when the last body byte went out."""
    __slots__ = ("_receive", "_send", "finished", "limit", "overflow", "received", "replaced", "scope", "started",
                 "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int):
        self.scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.received = 0
        self.overflow: ApiError | None = None
        self.status = 500                    # until the app starts a response, a failure is a 500
        self.started = False
        self.replaced = False                # the app's own response is dropped for the 413
        self.finished: float | None = None

    async def receive(self) -> Message:
        if self.overflow is not None:
            raise self.overflow
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                # Raised before the chunk reaches the app, so the app never holds more than the limit.
                self.overflow = too_large(self.limit)
                raise self.overflow
        return message

    async def send(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            if self.overflow is not None:
                # The app caught the 413 and answered something else; the client gets the 413.
                self.replaced = True
                await self.reply(self.overflow)
                return
            self.status, self.started = message["status"], True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = time.perf_counter()
        await self._send(message)

    async def reply(self, error: ApiError) -> None:
        """Answer with `error`'s envelope, unless a response is already under way."""
        if self.started:
            return
        self.status, self.started = error.status, True
        await error.response()(self.scope, self._receive, self._send)
        self.finished = time.perf_counter()


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyStore, limiter: RateLimiter, metrics: Metrics,
                 max_body_bytes: int, routes: Iterable[str] = ROUTES):
        self.app, self.keys, self.limiter, self.metrics = app, keys, limiter, metrics
        self.max_body_bytes = max_body_bytes
        self._exact = {r: r for r in routes if "{" not in r}
        self._routes: list[tuple[re.Pattern[str], str]] = [compile_path(r)[:2] for r in routes]

    def route_label(self, path: str) -> str:
        label = self._exact.get(path)
        if label is not None:
            return label
        for pattern, label in self._routes:
            if pattern.match(path):
                return label
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        exchange = Exchange(scope, receive, send, self.max_body_bytes)
        try:
            try:
                declared = self.check(scope)
            except ApiError as refusal:
                await exchange.reply(refusal)
                return
            try:
                # A body declared within the limit cannot pass it (the parser reads exactly that many
                # bytes): its messages need no counting.
                await self.app(scope, exchange.receive if declared is None else receive, exchange.send)
            except ApiError as err:
                if err is not exchange.overflow:
                    raise
                await exchange.reply(err)
        finally:
            end = exchange.finished or time.perf_counter()
            self.metrics.observe_request(self.route_label(scope["path"]), exchange.status, end - start)

    def check(self, scope: Scope) -> int | None:
        """Raise the ApiError that refuses this request before its body is read, if any; else the body's
        declared length, if it declares one."""
        path: str = scope["path"]
        gated = path.startswith("/v1/")
        authorization = length = None
        for name, value in scope["headers"]:    # the first of each
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("utf-8", "replace")
            elif name == b"content-length" and length is None:
                length = value.decode("utf-8", "replace")
        if gated:
            key = self.keys.authenticate(authorization)
            state = scope.setdefault("state", {})
            state["api_key"] = key
            client = scope.get("client")
            state["rate_key"] = key if key != ANONYMOUS else f"addr:{client[0] if client else 'unknown'}"
        declared = int(length) if length is not None and length.strip().isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        if gated:
            self.limiter.admit(scope["state"]["rate_key"])
        return declared
