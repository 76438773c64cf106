"""gateway/spec_api/http1.py against a raw loopback server that frames its answers the awkward ways a
real upstream may: bytes dribbled one at a time, chunk extensions and trailers, a body that ends with
the connection, a stream larger than the read pause threshold, and broken framing."""
from __future__ import annotations

import asyncio

import pytest

from gateway.spec_api.http1 import PAUSE, BrokenAnswer, Origin, Timeout, Unreachable



async def serve(answer, dribble: bool = False):
    """A server that reads one request per connection turn and writes `answer` (bytes or list of bytes)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                parts = answer if isinstance(answer, list) else [answer]
                for part in parts:
                    if part is None:                    # close the connection here
                        writer.close()
                        return
                    for piece in ([part[i:i + 1] for i in range(len(part))] if dribble else [part]):
                        writer.write(piece)
                        await writer.drain()
                        if dribble:
                            await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, Origin(f"http://127.0.0.1:{port}/v1", {}, timeout=2.0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def closed(origin: Origin) -> None:
    """Pooled connections closed, and the server's handlers given the moment to see it."""
    await origin.close()
    await asyncio.sleep(0.05)


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
           b"6;ext=1\r\ndata: \r\n" b"4\r\nab\nc\r\n" b"0\r\nX-Trailer: t\r\n\r\n")


@pytest.mark.parametrize("dribble", [False, True], ids=["whole", "byte-by-byte"])
def test_chunked_with_extensions_and_trailers_then_the_connection_is_reused(dribble):
    async def main():
        server, origin = await serve(CHUNKED, dribble)
        async with server:
            for _ in range(3):
                answer = await origin.post("/chat/completions", b"{}")
                assert answer.status == 200 and answer.headers["content-type"] == "text/event-stream"
                assert [line async for line in answer.lines()] == [b"data: ab", b"c"]
                answer.close()
                assert len(origin.idle) == 1 and origin.in_use == 0
            await closed(origin)
    run(main())


@pytest.mark.parametrize("dribble", [False, True], ids=["whole", "byte-by-byte"])
def test_a_whole_answer_by_content_length(dribble):
    async def main():
        body = b'{"ok": true}'
        server, origin = await serve(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
                                     dribble)
        async with server:
            answer = await origin.post("/chat/completions", b"{}", whole=True)
            assert answer.status == 201 and answer.finished and await answer.body() == body
            answer.close()
            assert len(origin.idle) == 1
            await closed(origin)
    run(main())


def test_a_body_that_ends_with_the_connection_is_complete_and_not_reused():
    async def main():
        server, origin = await serve([b"HTTP/1.1 200 OK\r\n\r\nall of ", b"it", None])
        async with server:
            answer = await origin.post("/chat/completions", b"{}")
            assert await answer.body() == b"all of it"
            answer.close()
            assert origin.idle == [] and origin.in_use == 0
    run(main())


def test_a_stream_past_the_pause_threshold_arrives_whole():
    async def main():
        piece = b"x" * 65536 + b"\n"
        count = 3 * PAUSE // len(piece)
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * count + [b"0\r\n\r\n"]
        server, origin = await serve([head, *chunks])
        async with server:
            answer = await origin.post("/chat/completions", b"{}")
            lines = 0
            async for line in answer.lines():
                assert line == piece[:-1]
                lines += 1
                await asyncio.sleep(0.001)                  # a slow reader: the socket is paused meanwhile
            assert lines == count and answer.finished
            answer.close()
            await closed(origin)
    run(main())


@pytest.mark.parametrize("answer", [
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],          # not a chunk size
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY"],      # no CRLF after the chunk
    [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", None],            # cut before its length
    [b"SMTP ready\r\n\r\n"],                                                    # not HTTP
], ids=["bad-size", "bad-chunk-end", "cut", "not-http"])
def test_broken_framing_is_unreachable_not_a_hang(answer):
    async def main():
        server, origin = await serve(answer)
        async with server:
            with pytest.raises(Unreachable):
                a = await origin.post("/chat/completions", b"{}")
                try:
                    await a.body()
                finally:
                    a.close()
            assert origin.in_use == 0
    run(main())


def test_silence_is_a_timeout():
    async def main():
        server, origin = await serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"])
        origin.timeout = 0.2
        async with server:
            answer = await origin.post("/chat/completions", b"{}")
            with pytest.raises(Timeout):
                async for _ in answer.parts():
                    pass
            answer.close()
            assert origin.in_use == 0 and origin.idle == []
    run(main())


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
                         ids=["closed-while-idle", "cut-mid-answer"])
def test_a_pooled_connection_that_breaks_is_retried_fresh_only_when_nothing_came_back(partial):
    """A pooled connection the server dropped while idle gets one fresh try; one that broke off after part
    of the answer is not sent again (the upstream took the request): BrokenAnswer, for the Router to judge."""
    whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    received = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            received.append(head)
            if len(received) == 2:                      # the second request: the break under test
                writer.write(partial)
                await writer.drain()
                break
            writer.write(whole)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        origin = Origin(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", {}, timeout=2.0)
        async with server:
            first = await origin.post("/chat/completions", b"{}", whole=True)
            assert await first.body() == b"{}"
            first.close()
            assert len(origin.idle) == 1
            if partial:
                with pytest.raises(BrokenAnswer):
                    await origin.post("/chat/completions", b"{}", whole=True)
                assert len(received) == 2                # not sent a third time
            else:
                again = await origin.post("/chat/completions", b"{}", whole=True)
                assert await again.body() == b"{}" and len(received) == 3
                again.close()
            assert origin.in_use == 0
            await closed(origin)
    run(main())
