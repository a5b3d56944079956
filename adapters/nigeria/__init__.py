"""Nigeria: NAPTIP's victim referral record <-> the shared ``referral.request``.

Mostly data: ``mapping.json`` (field table and code lists, NAPTIP's exploitation codes,
zonal commands and the 36 states + FCT), ``countries.json`` (English country names and
nationality adjectives), ``naptip.schema.json`` (the local record's shape) and
``samples/``. See ``docs/adapters.md``.
"""

from adapters.nigeria.adapter import NigeriaAdapter

__all__ = ["NigeriaAdapter"]
