"""One upstream OpenAI-compatible API as a Backend.

A client that streams gets a streamed call (with usage), its Deltas passed on chunk by chunk; one that
takes the answer whole gets one non-streamed call: one read, and retryable wherever it fails. Nothing
is retried here: the Router decides what to try again, from the UpstreamError raised here. Requests go
out through http1.Origin, a keep-alive HTTP/1.1 client several times cheaper per call than the openai
SDK (see http1.py), in OpenAI's wire format, as the SDK would send and read them.
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from gateway.api.jsonio import dumps, loads
from gateway.protocol import Delta, GenerateRequest, InvalidRequest, ModelCard, UpstreamError, Usage
from gateway.spec_api.http1 import BrokenAnswer, Exchange, Origin, Timeout, Unreachable
from gateway.spec_api.schema_guard import guarded, needs_guard
from gateway.spec_api.speculative import speculative_program
from gateway.spec_api.translate import ChunkReader, Wire, request_body, whole_deltas
from gateway.spec_api.upstream_config import UpstreamConfig

MAX_BODY = 64 << 20          # a larger non-streamed answer is cut, and so fails to parse: a clean 502


class UpstreamBackend:
    def __init__(self, cfg: UpstreamConfig, schema_retries: int = 2):
        self.cfg, self.name, self.schema_retries = cfg, cfg.name, schema_retries
        api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.api_key_env and not api_key:
            raise ValueError(f"upstream {cfg.name!r}: environment variable {cfg.api_key_env} is not set")
        self.origin = Origin(cfg.base_url, {"Authorization": f"Bearer {api_key}"} if api_key else {},
                             cfg.timeout, connect_timeout=min(cfg.timeout, 10.0))
        self.wire = Wire(cfg.extensions, cfg.supports_json_schema)
        self.cards = [ModelCard(served, owned_by=cfg.name) for served in cfg.models]

    def models(self) -> list[ModelCard]:
        return self.cards

    async def health(self) -> dict:
        return {"status": "ok"}

    async def abort(self, request_id: str) -> None:
        """Nothing to do: a cancelled generate() drops its upstream connection, which ends the call there."""

    async def close(self) -> None:
        await self.origin.close()

    def upstream_model(self, served: str | None) -> str:
        models = self.cfg.models
        if served is None:
            return next(iter(models.values()))
        if served not in models:
            raise InvalidRequest(f"The model '{served}' is not served by upstream {self.name!r}.", "model")
        return models[served]

    def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]:
        if req.program is not None:           # one call for the whole turn, fields falling back one by one
            return speculative_program(self.generate, req)
        model = self.upstream_model(req.model)
        if req.constraint is not None and needs_guard(req, self.wire):
            return guarded(self.whole, req, model, self.schema_retries)
        return self.stream(req, model) if req.stream else self.whole(req, model)

    async def open(self, req: GenerateRequest, model: str, stream: bool) -> Exchange:
        """The upstream's answer, started with a 200, for the caller to read and close; every failure as
        the UpstreamError the Router judges."""
        path, body = request_body(req, model, self.wire, stream)
        try:
            answer = await self.origin.post(path, dumps(body), whole=not stream)
        except (Timeout, Unreachable) as err:       # a plain call's body is read in post: it may break off there
            raise self.failure(err, answered=isinstance(err, BrokenAnswer)) from None
        if answer.status != 200:
            try:
                raw = await answer.body()
            except (Timeout, Unreachable) as err:
                raise self.failure(err, answered=True) from None
            finally:
                answer.close()
            raise status_error(self.name, answer.status, raw, answer.headers)
        return answer

    def failure(self, err: Timeout | Unreachable, answered: bool) -> UpstreamError:
        if isinstance(err, Timeout):
            return UpstreamError(504, f"Upstream {self.name!r} timed out.", code="upstream_timeout")
        code, what = ("upstream_disconnected", "broke off the response") if answered else \
            ("upstream_unreachable", "could not be reached")
        return UpstreamError(502, f"Upstream {self.name!r} {what}: {err}", code=code)

    def whole(self, req: GenerateRequest, model: str) -> AsyncIterator[Delta]:
        return Later(self.answer, req, model)

    async def answer(self, req: GenerateRequest, model: str) -> list[Delta]:
        """One non-streamed call's Deltas."""
        answer = await self.open(req, model, stream=False)
        try:
            raw = await answer.body(MAX_BODY)
        except (Timeout, Unreachable) as err:
            raise self.failure(err, answered=True) from None
        finally:
            answer.close()
        try:
            return whole_deltas(loads(raw), req.messages is not None)
        except (ValueError, AttributeError, KeyError, TypeError, IndexError):
            raise malformed(self.name, raw) from None

    async def stream(self, req: GenerateRequest, model: str) -> AsyncIterator[Delta]:
        reader, done = ChunkReader(req.messages is not None), False
        answer = await self.open(req, model, stream=True)
        try:
            async for line in answer.lines():
                if done or not line.startswith(b"data:"):
                    continue                        # read to the end, so the connection is kept
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                try:
                    chunk = loads(data)
                except ValueError:
                    raise malformed(self.name, data) from None
                if not isinstance(chunk, dict):
                    raise malformed(self.name, data)
                if "error" in chunk:
                    raise error_event(self.name, chunk["error"])
                try:
                    deltas = reader.deltas(chunk)
                except (AttributeError, KeyError, TypeError, IndexError) as err:
                    raise malformed(self.name, data) from err
                for d in deltas:
                    yield d
        except (Timeout, Unreachable) as err:
            raise self.failure(err, answered=True) from None
        finally:
            answer.close()
        if not done:
            raise UpstreamError(502, f"Upstream {self.name!r} ended the response before it was complete.",
                                code="upstream_disconnected")
        yield Delta(0, usage=reader.usage or Usage())


class Later:
    """The Deltas a coroutine function returns, as an AsyncIterator that calls it on the first step. A class,
    not an async generator: the event loop's hook for async generators (a WeakSet entry made and dropped,
    Python code) does not run for it, on every plain call."""
    __slots__ = ("args", "deltas", "fetch")

    def __init__(self, fetch: Callable[..., Awaitable[list[Delta]]], *args):
        self.fetch, self.args = fetch, args
        self.deltas: Iterator[Delta] | None = None

    def __aiter__(self) -> Later:
        return self

    async def __anext__(self) -> Delta:
        if self.deltas is None:
            fetch, self.fetch = self.fetch, None
            if fetch is None:                   # the call failed, or the iterator was closed
                raise StopAsyncIteration
            self.deltas = iter(await fetch(*self.args))
        for d in self.deltas:
            return d
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.fetch = None


def retry_after(headers: dict[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            pass
    return None


def status_error(name: str, status: int, raw: bytes, headers: dict[str, str]) -> UpstreamError:
    """A 4xx is the client's: the same status and error body, except 401/403, which refuse radixgate's own
    key. 5xx becomes a gateway error naming the upstream."""
    try:
        body = loads(raw)
        error = body.get("error", body) if isinstance(body, dict) else {}
    except ValueError:
        error = {}
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = error.get("message") if isinstance(error.get("message"), str) else \
        raw[:300].decode("utf-8", "replace") or f"HTTP {status}"
    if status in (401, 403):                    # our credentials, not the client's: another upstream may take it
        return UpstreamError(502, f"Upstream {name!r} refused radixgate's credentials ({status}): {message}",
                             "server_error", "upstream_auth", retryable=True)
    if status < 500:
        kind = error.get("type") if isinstance(error.get("type"), str) else (
            "rate_limit_exceeded" if status == 429 else "invalid_request_error")
        code, param = error.get("code"), error.get("param")
        return UpstreamError(status, message, kind, code if isinstance(code, (str, type(None))) else str(code),
                             param if isinstance(param, (str, type(None))) else None, retry_after(headers))
    gateway_status = status if status in (503, 504) else 502
    return UpstreamError(gateway_status, f"Upstream {name!r} answered {status}: {message}", "server_error",
                         "upstream_error", retry_after=retry_after(headers) if status == 503 else None)


def error_event(name: str, error: object) -> UpstreamError:
    error = error if isinstance(error, dict) else {"message": str(error)}
    return UpstreamError(502, f"Upstream {name!r} failed while streaming: {error.get('message')}",
                         code="upstream_error")


def malformed(name: str, data: bytes) -> UpstreamError:
    return UpstreamError(502, f"Upstream {name!r} sent a malformed stream chunk: {data[:200].decode('utf-8', 'replace')!r}",
                         code="upstream_malformed")
