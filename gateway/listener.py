"""HTTP listeners with a bounded time to receive each request.

aiohttp bounds header sizes but not the time a client may take to send a request, so a client
that sends a few bytes and stalls holds its connection (and whatever it sent) for ever. Here every
request must arrive — request line, headers and the whole body — within ``read_timeout_s`` of its
first byte:

- headers still incomplete when the time is up: a 408 is written and the connection closed;
- body still incomplete while a handler runs: the body stream fails with :class:`ReadTimeout`,
  which the handler's read raises and the error middleware answers as a 408 (connection closed);
- body still incomplete after the handler answered without reading it: the connection is closed.

Idle keep-alive connections are closed after ``keepalive_timeout_s`` (aiohttp's own timer).
The clock stops once the body has fully arrived: waiting for Kafka is not the client's time.

This hooks into aiohttp's request handler (a subclass of it, reading a few of its attributes);
tests/test_edge_timeouts.py exercises every path above, so an aiohttp upgrade that changes them
fails there first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from gateway.errors import ApiError, BadRequest


class ReadTimeout(ApiError):
    """The request (headers and whole body) did not arrive within `ingest.read_timeout_s`
    (`admin.read_timeout_s` on the admin port); the connection is closed."""

    status = 408
    code = "request_timeout"


@dataclass(frozen=True)
class ListenerLimits:
    read_timeout_s: float
    keepalive_timeout_s: float


def _raw_timeout_response(read_timeout_s: float) -> bytes:
    body = orjson.dumps({"code": ReadTimeout.code, "message": _timeout_message(read_timeout_s)})
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def _timeout_message(read_timeout_s: float) -> str:
    return f"the request did not arrive within {read_timeout_s:g} s"


class TimedRequestHandler(RequestHandler):
    """aiohttp's connection handler, plus a deadline for receiving each request."""

    def __init__(self, manager: Server, *, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.read_timeout_s = read_timeout_s
        self._read_timer: asyncio.TimerHandle | None = None
        # Body stream of the request being received; None until its headers are complete.
        self._body: Any = None

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and data and (self._body is None or self._body.is_eof()):
            # The first byte of a new request starts its clock.
            self._body = None
            self._read_timer = self._loop.call_later(self.read_timeout_s, self._read_timed_out)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed and self._messages:
            self._body = self._messages[-1][1]
        if self._read_timer is not None and self._body is not None and self._body.is_eof():
            self._read_timer.cancel()
            self._read_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._body = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Malformed HTTP (bad request line, oversized header, ...): a JSON 4xx, logged at debug.

        The internet sends such bytes all the time; aiohttp would log each with a traceback and
        answer in plain text.
        """
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        self.logger.debug("malformed request from %s: %s", request.remote, exc)
        reason = message or (exc.__class__.__name__ if exc is not None else "malformed request")
        response = web.json_response(
            {"code": BadRequest.code, "message": f"malformed HTTP request: {reason}"}, status=status
        )
        response.force_close()
        return response

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport is None:
            return
        if self._body is None:
            # Headers never completed: no handler will answer, so answer here.
            self.transport.write(_raw_timeout_response(self.read_timeout_s))
            self.force_close()
        elif self._current_request is not None and self._current_request.content is self._body:
            # The handler answers the 408 when its read fails. aiohttp would then linger to
            # read the rest of the body (which fails the same way): close after the answer.
            self._lingering_time = 0.0
            self._body.set_exception(ReadTimeout(_timeout_message(self.read_timeout_s)))
        else:
            # Answered without reading the body (or queued behind another request).
            self.force_close()


class TimedSite(web.BaseSite):
    """A TCP site whose connections are :class:`TimedRequestHandler`s."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        limits: ListenerLimits,
        handler_args: dict[str, Any],
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limits = limits
        self._handler_args = handler_args
        self._reuse_port = reuse_port or None
        self.bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def connection() -> TimedRequestHandler:
            return TimedRequestHandler(
                server,
                loop=loop,
                read_timeout_s=self._limits.read_timeout_s,
                keepalive_timeout=self._limits.keepalive_timeout_s,
                **self._handler_args,
            )

        self._server = await loop.create_server(
            connection, self._host, self._port, reuse_port=self._reuse_port
        )
        if self._server.sockets:
            self.bound_port = self._server.sockets[0].getsockname()[1]
