"""The HTTP/1.1 protocol radixgate is served with, in uvicorn's place for each connection (uvicorn still
binds the sockets, runs the lifespan and drains on shutdown): httptools parses, and each request runs
the ASGI app in its own task with the lean receive and send of server_cycle.py.

uvicorn's own protocol does more per request than a proxy that adds fractions of a millisecond can
afford: an asyncio.Event and a keep-alive timer created and cancelled per request, a URL parser call, a
transport wrapper to gather writes, the proxy-headers middleware's layer for every request. Against
uvicorn's protocol (with the write gathering) this one took 0.06-0.09 ms off the p50 and 70-100 us of
CPU off each request proxied by radixgate (interleaved A/B, loadtest/proxy_bench.py's requests at 10 and
40 ms gaps, on the loaded 2-core machine). What uvicorn's protocol guarantees is kept:
- keep-alive, closed after `timeout_keep_alive` seconds without a request (one timer per idle spell,
  re-armed when it finds the connection was used meanwhile, not one per request);
- pipelining: requests that arrive while one is answered wait in order, reading paused meanwhile;
- flow control: reading pauses while more than 64 KiB of a body wait for the app and resumes when it
  receives; a send waits while the transport's write buffer is above its high-water mark;
- Content-Length and chunked request bodies, `Expect: 100-continue`, HTTP/1.0 and `Connection: close`;
- a malformed request gets a 400 (an OpenAI-style error body) and the connection is closed; an app
  failing before its answer a 500, after its head a closed connection; a client that hangs up turns
  a waiting receive into `http.disconnect` (a stream's listener then cancels the upstream call);
- the server's default headers (date, server), the access log when enabled, limit_concurrency,
  and graceful shutdown (a request under way finishes, then the connection closes).

    uvicorn.run(app, http=server_protocol())      # falls back to uvicorn's choice without httptools
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from urllib.parse import unquote

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.utils import get_client_addr, get_local_addr, get_path_with_query_string, get_remote_addr, is_ssl

from gateway.api.server_cycle import HIGH_WATER, Cycle

try:
    import httptools
except ImportError:                         # pragma: no cover - httptools is a dependency, but optional
    httptools = None

BAD_REQUEST = (b'{"error":{"message":"Invalid HTTP request received.","type":"invalid_request_error",'
               b'"param":null,"code":"invalid_http_request"}}')


class GatewayHttpProtocol(asyncio.Protocol):
    def __init__(self, config, server_state, app_state: dict, _loop: asyncio.AbstractEventLoop | None = None):
        if not config.loaded:
            config.load()
        self.config, self.app, self.app_state = config, config.loaded_app, app_state
        # uvicorn's proxy-headers middleware changes nothing for a request without X-Forwarded-* headers:
        # only such a request takes it (the same middleware, so the same trust rules).
        self.forwarding = None
        if type(self.app) is ProxyHeadersMiddleware:
            self.forwarding, self.app = self.app, self.app.app
        self.forwarded = False              # the request being read has X-Forwarded-For or -Proto
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.access_logger = logging.getLogger("uvicorn.access")
        self.access_log = self.access_logger.hasHandlers()
        self.server_state = server_state
        self.root_path, self.asgi = config.root_path, {"version": config.asgi_version, "spec_version": "2.3"}
        self.raw_root = self.root_path.encode("ascii")
        self.keep_alive_timeout = config.timeout_keep_alive
        self.limit_concurrency = config.limit_concurrency
        self.parser = httptools.HttpRequestParser(self)
        try:                                # answer the first of pipelined requests sent after a close
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:              # pragma: no cover - httptools < 0.6.3
            pass
        self.transport: asyncio.Transport | None = None
        self.server = self.client = None
        self.scheme = "http"
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.parsing: Cycle | None = None   # the request whose head or body is being read
        self.running: Cycle | None = None   # the request whose app runs
        self.pipeline: deque[Cycle] = deque()
        self.reading_paused = self.write_paused = False
        self.drained: asyncio.Future | None = None
        self.sent = self.loop.create_future()   # what a send that wrote at once returns to be awaited
        self.sent.set_result(None)
        self.idle_timer: asyncio.TimerHandle | None = None
        self.last_active = 0.0

    # ----- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.server_state.connections.add(self)
        self.transport = transport
        self.server, self.client = get_local_addr(transport), get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        self.last_active = self.loop.time()
        self.arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        for cycle in (self.running, *self.pipeline):
            if cycle is not None:
                cycle.lost()
        self.pipeline.clear()
        if self.parsing is not None and self.parsing is not self.running:
            self.parsing.lost()
        self.resume_writing()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if exc is None:
            self.transport.close()
        self.parser = None

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass                            # no WebSocket here: an upgrade request is answered as plain HTTP
        except (httptools.HttpParserError, UnicodeDecodeError):
            self.logger.warning("Invalid HTTP request received.")
            self.bad_request()

    def bad_request(self) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % len(BAD_REQUEST))
        if self.running is None or self.running.complete:
            self.transport.write(b"".join(head) + BAD_REQUEST)
        self.transport.close()

    # ----- parser callbacks ----------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        elif name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            self.forwarded = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser, url = self.parser, self.url
        version = parser.get_http_version()
        if url[:1] == b"/" and b"#" not in url:
            raw_path, _, query = url.partition(b"?")
        else:                               # absolute-form and the like
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path, parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope = {"type": "http", "asgi": self.asgi, "http_version": version, "server": self.server,
                 "client": self.client, "scheme": self.scheme, "method": parser.get_method().decode("ascii"),
                 "root_path": self.root_path, "path": self.root_path + path,
                 "raw_path": self.raw_root + raw_path, "query_string": query,
                 "headers": self.headers, "state": self.app_state.copy()}
        cycle = Cycle(self, scope, version != "1.0" and parser.should_keep_alive(), self.expect_continue)
        cycle.forwarded = self.forwarded
        self.url, self.headers, self.expect_continue, self.forwarded = b"", [], False, False   # the next request's
        self.parsing = cycle
        if self.running is None:
            self.run(cycle)
        else:                               # pipelined: answered in order, and no more read meanwhile
            self.pipeline.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle.complete or cycle.disconnected:
            return
        cycle.body.append(body)
        if len(cycle.body) > 1 and sum(map(len, cycle.body)) > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle.complete or cycle.disconnected:
            return
        cycle.more_body = False
        cycle.wake()

    # ----- running requests ----------------------------------------------------------------------

    def run(self, cycle: Cycle) -> None:
        self.running = cycle
        app = self.forwarding if cycle.forwarded and self.forwarding is not None else self.app
        if self.limit_concurrency is not None and (len(self.server_state.connections) >= self.limit_concurrency
                                                   or len(self.server_state.tasks) >= self.limit_concurrency):
            from uvicorn.protocols.http.flow_control import service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
            app = service_unavailable
        task = self.loop.create_task(self.asgi_call(app, cycle))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def asgi_call(self, app, cycle: Cycle) -> None:
        try:
            result = await app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.started:
                await self.internal_error(cycle)
            else:
                self.abandon(cycle)
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.abandon(cycle)
            elif not cycle.started and not cycle.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.internal_error(cycle)
            elif not cycle.complete and not cycle.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.abandon(cycle)

    def abandon(self, cycle: Cycle) -> None:
        """An answer that cannot be completed: what was written goes out, then the connection closes."""
        cycle.flush()
        self.transport.close()

    @staticmethod
    async def internal_error(cycle: Cycle) -> None:
        await cycle.send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")]})
        await cycle.send({"type": "http.response.body", "body": b"Internal Server Error"})

    def answered(self, cycle: Cycle) -> None:
        """`cycle`'s answer was written whole: close, or take the next request."""
        self.server_state.total_requests += 1
        if not cycle.keep_alive:
            self.transport.close()
        if self.transport.is_closing():
            return
        self.running = None
        self.resume_reading()
        if self.pipeline:
            self.run(self.pipeline.popleft())
        else:
            self.last_active = self.loop.time()
            self.arm_idle_timer()

    def log_access(self, scope: dict, status: int) -> None:
        self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                get_path_with_query_string(scope), scope["http_version"], status)

    # ----- keep-alive and shutdown ---------------------------------------------------------------

    def arm_idle_timer(self) -> None:
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.last_active + self.keep_alive_timeout, self.idle_check)

    def idle_check(self) -> None:
        self.idle_timer = None
        if self.running is not None or self.transport.is_closing():
            return                          # re-armed when the answer is written
        due = self.last_active + self.keep_alive_timeout
        if self.loop.time() >= due:
            self.transport.close()
        else:
            self.idle_timer = self.loop.call_at(due, self.idle_check)

    def shutdown(self) -> None:
        """The server is stopping: close now when idle, else after the answer under way."""
        if self.running is None or self.running.complete:
            self.transport.close()
        else:
            self.running.keep_alive = False

    # ----- flow control --------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.pipeline:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    async def drain(self) -> None:
        if self.drained is None:
            self.drained = self.loop.create_future()
        await asyncio.shield(self.drained)


def server_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's `http` setting: this protocol where httptools is installed, else uvicorn's own choice."""
    return GatewayHttpProtocol if httptools is not None else "auto"
