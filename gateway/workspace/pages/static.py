"""The workspace's static files (CSS, htmx, its licence), shipped in the package: no CDN."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.api.roles import page_public

routes = web.RouteTableDef()

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: File name → media type; only these are served (no directory listing, no path walking).
FILES = {
    "workspace.css": "text/css",
    "htmx.min.js": "text/javascript",
    "LICENSE-htmx.txt": "text/plain",
}


@routes.get("/workspace/static/{name}", name="workspace.static")
@page_public
async def static_file(request: web.Request) -> web.StreamResponse:
    """One of the listed static files."""
    name = request.match_info["name"]
    media_type = FILES.get(name)
    path = STATIC_DIR / name
    if media_type is None or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=media_type, charset="utf-8")
