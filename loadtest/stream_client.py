"""One streamed OpenAI call, timed: what the load test records for each request.

Tokens are counted by the server's usage (`stream_options.include_usage`), so a chunk carrying several
tokens (jump-forward) or none counts right; inter-token latency is the gap between chunks that carry
text. An endpoint that sends no usage gets its completion tokens estimated as one per text chunk.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import httpx

from loadtest.workloads import Call

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
CUT = "cut: still streaming when the run's drain ended"


@dataclass(slots=True)
class CallRecord:
    endpoint: str
    start: float                        # seconds since the run's start
    e2e: float = 0.0                    # seconds to the last byte
    ttft: float | None = None           # seconds to the first chunk with text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None    # usage.prompt_tokens_details.cached_tokens, when the server reports it
    error: str | None = None
    text: str = ""
    chunk_times: list[float] = field(default_factory=list)   # arrival of each text chunk, since `start`

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cut(self) -> bool:
        """Cancelled at the run's end: its tokens so far count toward throughput, its latencies do not."""
        return self.error == CUT

    @property
    def gaps(self) -> list[float]:
        t = self.chunk_times
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first."""
        if self.ttft is None or self.completion_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.completion_tokens - 1)

    def summary(self) -> dict:
        """What the results file keeps per call (chunk times go into the run's timeline and ITL sample)."""
        out = asdict(self)
        del out["chunk_times"], out["text"]
        out["tpot"] = self.tpot
        return out


def request_body(call: Call, model: str) -> dict:
    return {**call.body, "model": model, "stream": True, "stream_options": {"include_usage": True}}


def chunk_text(endpoint: str, chunk: dict) -> str:
    out = ""
    for choice in chunk.get("choices") or []:
        if endpoint == "chat":
            out += (choice.get("delta") or {}).get("content") or ""
        else:
            out += choice.get("text") or ""
    return out


async def sse_lines(resp: httpx.Response):
    """The stream's lines as SSE defines them: ended by LF, CR LF or CR only. (httpx's `aiter_lines`
    also breaks at U+2028, U+0085 and the like, which JSON leaves unescaped inside generated text.)"""
    buffer = b""
    async for data in resp.aiter_bytes():
        buffer += data
        *lines, buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


async def stream_call(client: httpx.AsyncClient, call: Call, model: str, t0: float,
                      records: list[CallRecord]) -> CallRecord:
    """POST the call streamed and time it, its record added to `records` as it starts (so a call cut by
    cancellation keeps what it streamed); never raises for an HTTP or protocol failure (it is recorded)."""
    start = time.perf_counter()
    rec = CallRecord(call.endpoint, start - t0)
    records.append(rec)
    try:
        async with client.stream("POST", PATHS[call.endpoint], json=request_body(call, model)) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode(errors="replace")
                rec.error = f"HTTP {resp.status_code}: {body[:300]}"
                return rec
            async for line in sse_lines(resp):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    rec.error = f"stream error: {json.dumps(chunk['error'])[:300]}"
                    break
                if text := chunk_text(call.endpoint, chunk):
                    now = time.perf_counter() - start
                    if rec.ttft is None:
                        rec.ttft = now
                    rec.chunk_times.append(now)
                    rec.text += text
                if usage := chunk.get("usage"):
                    rec.prompt_tokens = usage.get("prompt_tokens") or 0
                    rec.completion_tokens = usage.get("completion_tokens") or 0
                    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                    rec.cached_tokens = cached
    except (httpx.HTTPError, ValueError) as err:
        rec.error = f"{type(err).__name__}: {err}"
    except asyncio.CancelledError:
        rec.error, rec.e2e, rec.completion_tokens = CUT, time.perf_counter() - start, len(rec.chunk_times)
        raise
    rec.e2e = time.perf_counter() - start
    if rec.ok and not rec.completion_tokens:
        rec.completion_tokens = len(rec.chunk_times)
    return rec
