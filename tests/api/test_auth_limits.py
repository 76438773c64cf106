"""API keys, rate limits and the body cap, through GatewayMiddleware in front of a tiny Starlette app."""
from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.api import auth
from gateway.api.auth import KeyStore
from gateway.api.errors import ApiError, api_error_handler
from gateway.api.limits import RateLimiter
from gateway.api.metrics import Metrics
from gateway.api.middleware import GatewayMiddleware
from gateway.config import ServeConfig

pytestmark = pytest.mark.anyio

KEY_A = "sk-alpha-0123456789abcd"
KEY_B = "sk-bravo-9876543210wxyz"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway_app(keys: KeyStore, limiter: RateLimiter, metrics: Metrics, max_body_bytes: int = 1024,
                extra: list[Route] | None = None) -> Starlette:
    """A stand-in for the real app: echo routes that report what the middleware handed them."""

    async def echo(request: Request) -> JSONResponse:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
        request.app.state.seen.append(seen)
        return JSONResponse({"api_key": request.state.api_key, "rate_key": request.state.rate_key, "bytes": seen})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def scrape(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type})

    routes = [Route("/v1/chat/completions", echo, methods=["POST"]), Route("/v1/models", echo),
              Route("/health", health), Route("/metrics", scrape), *(extra or [])]
    app = Starlette(routes=routes, exception_handlers={ApiError: api_error_handler},
                    middleware=[Middleware(GatewayMiddleware, keys=keys, limiter=limiter, metrics=metrics,
                                           max_body_bytes=max_body_bytes)])
    app.state.seen = []
    return app


def client(app: Starlette, address: str = "10.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=(address, 50000)), base_url="http://gw")


def assert_envelope(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


# ----- keys ----------------------------------------------------------------------------------------

def test_key_file_merges_with_config_keys_skipping_blanks_and_comments(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# team keys\n\n{KEY_B}\n   \n  sk-charlie-key  # ci runner\n{KEY_A}\n")
    store = KeyStore.from_config(ServeConfig(api_keys=(KEY_A,), api_keys_file=str(path)))
    assert store.enabled and len(store) == 3
    for key in (KEY_A, KEY_B, "sk-charlie-key"):
        assert store.authenticate(f"Bearer {key}") == auth.key_id(key)
    with pytest.raises(ApiError):
        store.authenticate("Bearer # team keys")


def test_no_keys_means_anonymous_for_anything():
    store = KeyStore.from_config(ServeConfig())
    assert not store.enabled
    assert store.authenticate(None) == store.authenticate("Bearer whatever") == "anonymous"


def test_key_id_is_stable_distinct_and_never_the_key():
    store = KeyStore([KEY_A, KEY_B])
    a, b = store.authenticate(f"Bearer {KEY_A}"), store.authenticate(f"bearer   {KEY_B} ")
    assert re.fullmatch(r"key-[0-9a-f]{8}", a) and a != b
    assert a == KeyStore([KEY_B, KEY_A]).authenticate(f"Bearer {KEY_A}")
    assert KEY_A not in a and KEY_A[3:11] not in a


@pytest.mark.parametrize("presented", [KEY_A, KEY_B, "sk-wrong-key-000000"])
def test_every_key_is_compared_in_constant_time(monkeypatch, presented):
    keys = [KEY_A, KEY_B, "sk-charlie-key"]
    calls = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    store = KeyStore(keys)
    try:
        store.authenticate(f"Bearer {presented}")
    except ApiError:
        pass
    assert len(calls) == len(keys)
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}     # digests, not raw keys


def test_a_key_that_passed_is_remembered_and_a_wrong_one_still_compared(monkeypatch):
    store = KeyStore([KEY_A, KEY_B])
    first = store.authenticate(f"Bearer {KEY_A}")
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert [store.authenticate(f"Bearer {KEY_A}") for _ in range(3)] == [first] * 3 and calls == []
    for wrong in (KEY_A + "x", KEY_A[:-1], "sk-wrong-key-000000"):          # near misses are not remembered
        with pytest.raises(ApiError):
            store.authenticate(f"Bearer {wrong}")
    assert len(calls) == 3 * 2                          # each wrong key against both digests
    assert store.authenticate(f"bearer  {KEY_B}") != first and len(store._passed) == 2   # one entry per key, at most


def test_wrong_key_message_masks_the_key():
    with pytest.raises(ApiError) as err:
        KeyStore([KEY_A]).authenticate("Bearer sk-abSECRETSECRETcd")
    assert err.value.status == 401 and err.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-ab***cd." in err.value.message and "SECRET" not in err.value.message
    with pytest.raises(ApiError) as err:
        KeyStore([KEY_A]).authenticate("Bearer short")
    assert "short" not in err.value.message


async def test_http_401_for_missing_or_wrong_key_200_for_right_key_and_open_health():
    app = gateway_app(KeyStore([KEY_A, KEY_B]), RateLimiter(0, 0), Metrics())
    async with client(app) as c:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
            error = assert_envelope(await c.get("/v1/models", headers=headers), 401, "invalid_api_key")
            assert error["type"] == "invalid_request_error"
            assert error["message"].startswith("You didn't provide an API key.")
        error = assert_envelope(await c.get("/v1/models", headers={"Authorization": "Bearer sk-abXXXXXXXXcd"}),
                                401, "invalid_api_key")
        assert "sk-ab***cd" in error["message"] and "XXXX" not in error["message"]
        r = await c.post("/v1/chat/completions", content=b"{}", headers={"Authorization": f"Bearer {KEY_B}"})
        assert r.status_code == 200
        assert r.json()["api_key"] == r.json()["rate_key"] == auth.key_id(KEY_B)
        assert (await c.get("/health")).json() == {"status": "ok"}
        assert (await c.get("/metrics")).status_code == 200
    assert app.state.seen == [2]                 # 401s never reached the route


# ----- rate limits ---------------------------------------------------------------------------------

def test_request_budget_refuses_with_integer_retry_after_then_refills():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=0, clock=clock)
    limiter.admit("a")
    limiter.admit("a")
    with pytest.raises(ApiError) as err:
        limiter.admit("a")
    assert err.value.status == 429 and err.value.code == "rate_limit_exceeded"
    assert err.value.headers["Retry-After"] == "30"          # one request refills in 60 s / 2
    limiter.admit("b")                                       # keys have their own buckets
    clock.now += 29
    with pytest.raises(ApiError):
        limiter.admit("a")                                   # a refusal takes nothing
    clock.now += 1
    limiter.admit("a")


def test_token_debits_exhaust_the_token_bucket():
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=0, tokens_per_minute=100, clock=clock)
    limiter.admit("a")
    limiter.debit("a", 60)
    limiter.admit("a")
    limiter.debit("a", 90)                                   # 100 - 60 - 90 = -50: in debt
    with pytest.raises(ApiError) as err:
        limiter.admit("a")
    assert "tokens per min" in err.value.message
    assert err.value.headers["Retry-After"] == "31"          # back to 1 token: 51 tokens at 100/min
    clock.now += 30
    with pytest.raises(ApiError):
        limiter.admit("a")
    clock.now += 1
    limiter.admit("a")


def test_unlimited_keeps_no_state_and_full_buckets_are_dropped():
    clock = FakeClock()
    unlimited = RateLimiter(0, 0, clock=clock)
    unlimited.admit("a")
    unlimited.debit("a", 10**9)
    assert len(unlimited) == 0
    limiter = RateLimiter(requests_per_minute=10, tokens_per_minute=100, clock=clock)
    for i in range(1000):
        limiter.admit(f"addr:{i}")
    limiter.debit("addr:0", 1000)                            # in debt for ~10 minutes
    clock.now += 61
    limiter.admit("fresh")
    assert len(limiter) == 2                                 # the debtor and the fresh key remain
    with pytest.raises(ApiError):
        limiter.admit("addr:0")


async def test_http_429_envelope_and_recovery():
    clock = FakeClock()
    app = gateway_app(KeyStore([KEY_A]), RateLimiter(1, 0, clock=clock), Metrics())
    auth_a = {"Authorization": f"Bearer {KEY_A}"}
    async with client(app) as c:
        assert (await c.get("/v1/models", headers=auth_a)).status_code == 200
        r = await c.get("/v1/models", headers=auth_a)
        assert_envelope(r, 429, "rate_limit_exceeded")
        assert r.headers["Retry-After"] == "60"
        assert (await c.get("/health")).status_code == 200  # open routes are never limited
        assert_envelope(await c.get("/v1/models"), 401, "invalid_api_key")   # auth comes first
        clock.now += 60
        assert (await c.get("/v1/models", headers=auth_a)).status_code == 200


async def test_without_keys_each_client_address_has_its_own_budget():
    clock = FakeClock()
    app = gateway_app(KeyStore([]), RateLimiter(1, 0, clock=clock), Metrics())
    async with client(app, "10.0.0.1") as first, client(app, "10.0.0.2") as second:
        r = await first.get("/v1/models")
        assert r.json()["api_key"] == "anonymous" and r.json()["rate_key"] == "addr:10.0.0.1"
        assert_envelope(await first.get("/v1/models"), 429, "rate_limit_exceeded")
        assert (await second.get("/v1/models")).status_code == 200


# ----- body size -----------------------------------------------------------------------------------

async def test_413_for_content_length_over_the_limit_before_the_route_runs():
    app = gateway_app(KeyStore([]), RateLimiter(0, 0), Metrics(), max_body_bytes=1024)
    async with client(app) as c:
        assert (await c.post("/v1/chat/completions", content=b"x" * 1024)).json()["bytes"] == 1024
        assert_envelope(await c.post("/v1/chat/completions", content=b"x" * 1025), 413, "request_too_large")
    assert app.state.seen == [1024]


async def test_413_for_a_chunked_body_that_grows_past_the_limit():
    app = gateway_app(KeyStore([]), RateLimiter(0, 0), Metrics(), max_body_bytes=1024)
    pulled = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            pulled.append(400)
            yield b"y" * 400

    async with client(app) as c:
        r = await c.post("/v1/chat/completions", content=body())
        assert "content-length" not in r.request.headers
        assert_envelope(r, 413, "request_too_large")
    assert sum(pulled) == 1200                               # reading stopped at the chunk past the limit
    assert app.state.seen == []                              # the route never finished reading


async def test_413_stands_even_when_the_route_swallows_the_error():
    async def lenient(request: Request) -> JSONResponse:
        try:
            await request.body()
        except Exception:
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": False})

    app = gateway_app(KeyStore([]), RateLimiter(0, 0), Metrics(), max_body_bytes=10,
                      extra=[Route("/v1/lenient", lenient, methods=["POST"])])

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps({"pad": "z" * 50}).encode()

    async with client(app) as c:
        assert_envelope(await c.post("/v1/lenient", content=body()), 413, "request_too_large")
