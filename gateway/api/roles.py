"""Who may do what: permissions, the role → permission table, and per-handler access policies.

Pure: no I/O. The auth middleware asks :func:`policy_of` which policy a handler carries;
a handler without one is refused (fail closed), so a new route cannot be reachable by
accident. The same policies feed the OpenAPI document (``x-roles``).

Workspace pages (gateway/workspace) carry a :class:`PageAccess` instead (``@page``,
``@page_public``): the bearer middleware lets them through and the workspace's session
middleware enforces them with the same role matrix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from gateway.settings import ROLES


class Permission(enum.Enum):
    """One thing a user may do through the API."""

    SUBMIT = "submit"  # POST /referrals: queue an outgoing message
    INBOX_LIST = "inbox.list"  # GET /inbox: metadata only
    INBOX_READ = "inbox.read"  # GET /inbox/{id}: decrypted payload (plaintext personal data)
    RESPOND = "respond"  # POST /inbox/{id}/response
    STATUS = "status"  # GET /messages/{id}: delivery status, no payload
    FIND_SENT = "messages.find"  # GET /messages?local_case_id=: what was sent for a local case
    OPERATE = "operate"  # metrics, quarantine listing: operations, no payloads
    WITHDRAW = "consent.withdraw"  # POST /cases/{case}/withdrawal: withdraw consent, shred at recipients
    AUDIT_READ = "audit.read"  # audit log query, export, checkpoints, proofs: ids and codes only
    STATS_READ = "stats.read"  # aggregate statistics with small cells suppressed


_CASEWORK = frozenset({Permission.SUBMIT, Permission.INBOX_LIST, Permission.INBOX_READ,
                       Permission.RESPOND, Permission.STATUS, Permission.WITHDRAW, Permission.FIND_SENT})

#: The role matrix. Only caseworkers and supervisors ever see plaintext (INBOX_READ);
#: auditors see metadata and statuses; admins run the service and see no case data at all.
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "caseworker": _CASEWORK,
    "supervisor": _CASEWORK | {Permission.STATS_READ},
    "auditor": frozenset({Permission.INBOX_LIST, Permission.STATUS, Permission.AUDIT_READ, Permission.STATS_READ}),
    "admin": frozenset({Permission.OPERATE}),
}
assert set(ROLE_PERMISSIONS) == set(ROLES), "every settings role needs a row in ROLE_PERMISSIONS"


def allowed(role: str, permission: Permission) -> bool:
    """True if ``role`` holds ``permission`` (unknown roles hold nothing)."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def roles_with(permission: Permission) -> list[str]:
    """The roles holding ``permission``, in settings order (for documentation)."""
    return [role for role in ROLES if allowed(role, permission)]


@dataclass(frozen=True)
class Access:
    """The access policy of one handler: public, or a permission an authenticated user needs."""

    permission: Permission | None  # None: public, no token needed

    @property
    def public(self) -> bool:
        return self.permission is None


_ATTR = "__gateway_access__"
H = TypeVar("H", bound=Callable[..., Any])


def requires(permission: Permission) -> Callable[[H], H]:
    """Mark a handler as needing a bearer token whose user holds ``permission``."""
    def mark(handler: H) -> H:
        setattr(handler, _ATTR, Access(permission))
        return handler
    return mark


def public(handler: H) -> H:
    """Mark a handler as reachable without a token (health, readiness, the API description)."""
    setattr(handler, _ATTR, Access(None))
    return handler


def policy_of(handler: Any) -> Access | None:
    """The policy a handler was marked with, or None if it was never marked."""
    return getattr(handler, _ATTR, None)


@dataclass(frozen=True)
class PageAccess:
    """The access policy of one workspace page: public, any signed-in user, or a permission."""

    permission: Permission | None  # None: any signed-in user (or anyone, if public)
    public: bool = False

    def allows(self, role: str) -> bool:
        """True if a signed-in user with ``role`` may see the page."""
        return self.public or self.permission is None or allowed(role, self.permission)


_PAGE_ATTR = "__gateway_page_access__"


def page(permission: Permission | None) -> Callable[[H], H]:
    """Mark a workspace page as needing a session whose role holds ``permission`` (None: any role)."""
    def mark(handler: H) -> H:
        setattr(handler, _PAGE_ATTR, PageAccess(permission))
        return handler
    return mark


def page_public(handler: H) -> H:
    """Mark a workspace page as reachable without a session (sign-in, language switch, static files)."""
    setattr(handler, _PAGE_ATTR, PageAccess(None, public=True))
    return handler


def page_policy_of(handler: Any) -> PageAccess | None:
    """The page policy a handler was marked with, or None if it is not a workspace page."""
    return getattr(handler, _PAGE_ATTR, None)
