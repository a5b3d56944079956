"""``/workspace/``: where a signed-in user starts (the inbox, or the admin's page), and the
admin's page, which shows no case data and says where the operations tools are."""

from __future__ import annotations

from aiohttp import web

from gateway.api.roles import Permission, allowed, page, page_public
from gateway.workspace.render import page_context, render

routes = web.RouteTableDef()


@routes.get("/workspace", name="workspace.root")
@page_public
async def root(request: web.Request) -> web.StreamResponse:
    """``/workspace`` without the slash: the session cookie's path is ``/workspace/``."""
    raise web.HTTPSeeOther("/workspace/")


@routes.get("/workspace/", name="workspace.home")
@page(None)
async def home(request: web.Request) -> web.StreamResponse:
    """The inbox for roles that have one; the admin's page otherwise."""
    user = page_context(request).user
    assert user is not None
    if allowed(user.role, Permission.INBOX_LIST):
        raise web.HTTPSeeOther("/workspace/inbox")
    raise web.HTTPSeeOther("/workspace/admin")


@routes.get("/workspace/admin", name="workspace.admin")
@page(Permission.OPERATE)
async def admin(request: web.Request) -> web.StreamResponse:
    """The admin's page: no case pages for this role, and where to look instead."""
    return render(request, "admin.html")
