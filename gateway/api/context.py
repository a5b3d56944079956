"""Typed keys for what the app and each request carry: the gateway, settings, the user."""

from __future__ import annotations

from aiohttp import web

from gateway.actors import Actor
from gateway.service import Gateway
from gateway.settings import Settings, User

GATEWAY = web.AppKey("gateway", Gateway)
SETTINGS = web.AppKey("settings", Settings)
#: The authenticated user of a request (absent on public routes and failed authentication).
USER = web.RequestKey("user", User)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def actor_of(request: web.Request) -> Actor:
    """The audit actor of an authenticated request."""
    user = request[USER]
    return Actor(user.name, user.role)


def route_template(request: web.Request) -> str | None:
    """The matched route's path template (``/inbox/{id}``), never the raw path; None if unmatched."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else None


def route_name(request: web.Request) -> str:
    """The matched route's name (``inbox.read``): a metric label; ``unmatched`` for 404/405."""
    resource = getattr(request.match_info.route, "resource", None)
    return (resource.name if resource is not None else None) or "unmatched"
