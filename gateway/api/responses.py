"""JSON answers: one place for the media type, the encoder and the no-caching headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

#: Every answer may carry case data or metadata: no shared or browser cache may keep it.
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_body(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={**NO_STORE, **(headers or {})}, dumps=dumps)
