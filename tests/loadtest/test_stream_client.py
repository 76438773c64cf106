"""The load tester reads SSE lines as the spec ends them, not at every Unicode line break."""
from __future__ import annotations

import asyncio
import json

import httpx

from loadtest.stream_client import sse_lines


def test_generated_text_with_unicode_line_breaks_stays_one_event():
    text = "a\u2028b\u0085c\u2029d"                  # JSON leaves these unescaped; str.splitlines breaks at them
    events = [f"data: {json.dumps({'choices': [{'text': text}]}, ensure_ascii=False)}", "data: [DONE]"]
    payload = "\r\n\r\n".join(events).encode() + b"\r\n\r\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(payload))

    async def main() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://t") as client:
            async with client.stream("POST", "/") as resp:
                return [line async for line in sse_lines(resp) if line.startswith("data:")]

    lines = asyncio.run(main())
    assert len(lines) == 2 and json.loads(lines[0][5:])["choices"][0]["text"] == text
