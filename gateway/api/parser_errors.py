"""JSON answers for requests aiohttp refuses before any middleware runs.

aiohttp's low-level parser refuses a request line or header over its limits, too many
headers, or bytes that are not HTTP; its ``RequestHandler.handle_error`` then answers in
plain text that quotes up to 100 bytes of the offending line (an ``Authorization``
header, a URL with its query string) and logs a traceback quoting it again. The runner
here answers ``{"error", "detail"}`` like the rest of the API, with a status that says
which limit was hit, never the request's bytes, and logs one line with the error type.

This hooks aiohttp's ``Server``/``RequestHandler`` classes (checked against aiohttp
3.14; tests/test_logs_redaction.py sends oversized requests through a real socket).
"""

from __future__ import annotations

import json
import re
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("gateway.api.http")

#: aiohttp's limits (its defaults, named here so the docs and the answers can say them).
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128

_REQUEST_LINE = re.compile(rb"^(?:[A-Z]+ |/)")


def classify(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, detail) for a request aiohttp could not parse or handle; never quotes the request."""
    if status >= 500:
        return status, "internal_error", "the server could not handle the request"
    if isinstance(exc, LineTooLong):
        if _is_request_line(exc):
            return 414, "uri_too_long", f"the request line is longer than {MAX_LINE_BYTES} bytes"
        return 431, "headers_too_large", f"a request header is longer than {MAX_FIELD_BYTES} bytes"
    if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
        return 431, "headers_too_large", f"the request has more than {MAX_HEADERS} headers"
    return 400, "bad_request", "the request is not well-formed HTTP/1.1"


def _is_request_line(exc: LineTooLong) -> bool:
    # The C parser raises from its URL callback; the pure-Python one quotes the line itself.
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if frames and "url" in frames[-1]:
        return True
    line = exc.args[0] if exc.args else b""
    return isinstance(line, (bytes, bytearray)) and bool(_REQUEST_LINE.match(bytes(line)))


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors in JSON without echoing the request."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer ``{"error", "detail"}`` and log one line with the error's type only."""
        status, code, detail = classify(status, exc)
        log.warning("http.refused_by_parser" if status < 500 else "http.unhandled_error", status=status,
                    error=code, exc_type=type(exc).__name__ if exc is not None else None,
                    exc_info=exc if status >= 500 else None)
        if request.writer.output_size > 0:
            # Same as aiohttp: part of a response is out, the connection is broken.
            raise ConnectionError("response already started; cannot send the error answer")
        resp = web.Response(status=status, content_type="application/json",
                            text=json.dumps({"error": code, "detail": detail}))
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parser errors in JSON (see module docstring)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server
