"""One upstream OpenAI-compatible API as a Backend, over an `openai.AsyncOpenAI` client.

Every call streams (with usage) so Deltas pass on chunk by chunk. The client's own retries are off:
the Router decides what to try again, from the UpstreamError raised here. The raw response lines
are read instead of the SDK's typed stream objects, since building those costs more per chunk than
the rest of the proxy together; errors still come from the SDK (status, body, timeouts).
"""
from __future__ import annotations

import importlib
import json
import os
from collections.abc import AsyncIterator

import openai

from gateway.protocol import Delta, GenerateRequest, InvalidRequest, ModelCard, UpstreamError, Usage
from gateway.spec_api.schema_guard import guarded, needs_guard
from gateway.spec_api.speculative import speculative_program
from gateway.spec_api.translate import ChunkReader, Wire, request_body
from gateway.spec_api.upstream_config import UpstreamConfig

# The HTTP library under the SDK: httpx, or in newer SDKs its successor httpx2, whose errors and
# types are its own; the stream's errors must be caught as the ones the SDK's client raises.
http = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])


class UpstreamBackend:
    def __init__(self, cfg: UpstreamConfig, schema_retries: int = 2):
        self.cfg, self.name, self.schema_retries = cfg, cfg.name, schema_retries
        api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.api_key_env and not api_key:
            raise ValueError(f"upstream {cfg.name!r}: environment variable {cfg.api_key_env} is not set")
        timeout = http.Timeout(cfg.timeout, connect=min(cfg.timeout, 10.0))
        pool = openai.DefaultAsyncHttpxClient(timeout=timeout, limits=http.Limits(
            max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections))
        self.client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=api_key or "none", max_retries=0,
                                         timeout=timeout, http_client=pool)
        self.wire = Wire(cfg.extensions, cfg.supports_json_schema)
        self.cards = [ModelCard(served, owned_by=cfg.name) for served in cfg.models]

    def models(self) -> list[ModelCard]:
        return self.cards

    async def health(self) -> dict:
        return {"status": "ok"}

    async def abort(self, request_id: str) -> None:
        """Nothing to do: a cancelled generate() closes its upstream response, which ends the call there."""

    async def close(self) -> None:
        await self.client.close()

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
        if needs_guard(req, self.wire):
            return guarded(self.stream, req, model, self.schema_retries)
        return self.stream(req, model)

    async def stream(self, req: GenerateRequest, model: str) -> AsyncIterator[Delta]:
        path, body = request_body(req, model, self.wire)
        try:
            response = await self.client.post(path, cast_to=http.Response, body=body, stream=True)
        except openai.APIStatusError as err:
            raise status_error(self.name, err) from None
        except openai.APITimeoutError:
            raise UpstreamError(504, f"Upstream {self.name!r} timed out.", code="upstream_timeout") from None
        except openai.APIConnectionError as err:
            raise UpstreamError(502, f"Upstream {self.name!r} could not be reached: {err.__cause__ or err}",
                                code="upstream_unreachable") from None
        reader, done = ChunkReader(body.get("messages") is not None), False
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise malformed(self.name, data) from None
                if not isinstance(chunk, dict):
                    raise malformed(self.name, data)
                if "error" in chunk:
                    raise error_event(self.name, chunk["error"])
                try:
                    deltas = reader.deltas(chunk)
                except (AttributeError, KeyError, TypeError) as err:
                    raise malformed(self.name, data) from err
                for d in deltas:
                    yield d
        except http.TimeoutException:
            raise UpstreamError(504, f"Upstream {self.name!r} timed out while streaming.",
                                code="upstream_timeout") from None
        except http.HTTPError as err:
            raise UpstreamError(502, f"Upstream {self.name!r} broke off the response: {err}",
                                code="upstream_disconnected") from None
        finally:
            await response.aclose()
        if not done:
            raise UpstreamError(502, f"Upstream {self.name!r} ended the response before it was complete.",
                                code="upstream_disconnected")
        yield Delta(0, usage=reader.usage or Usage())


def retry_after(headers: http.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            pass
    return None


def status_error(name: str, err: openai.APIStatusError) -> UpstreamError:
    """A 4xx is the client's: the same status and error body. 5xx becomes a gateway error naming the upstream."""
    status, body = err.status_code, err.body if isinstance(err.body, dict) else {}
    message = body.get("message") if isinstance(body.get("message"), str) else err.message
    if status < 500:
        kind = body.get("type") if isinstance(body.get("type"), str) else (
            "rate_limit_exceeded" if status == 429 else "invalid_request_error")
        return UpstreamError(status, message, kind, body.get("code"), body.get("param"),
                             retry_after(err.response.headers))
    gateway_status = status if status in (503, 504) else 502
    return UpstreamError(gateway_status, f"Upstream {name!r} answered {status}: {message}", "server_error",
                         "upstream_error", retry_after=retry_after(err.response.headers) if status == 503 else None)


def error_event(name: str, error: object) -> UpstreamError:
    error = error if isinstance(error, dict) else {"message": str(error)}
    return UpstreamError(502, f"Upstream {name!r} failed while streaming: {error.get('message')}",
                         code="upstream_error")


def malformed(name: str, data: str) -> UpstreamError:
    return UpstreamError(502, f"Upstream {name!r} sent a malformed stream chunk: {data[:200]!r}",
                         code="upstream_malformed")
