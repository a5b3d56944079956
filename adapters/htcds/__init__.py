"""HTCDS: a flat IOM Human Trafficking Case Data Standard style record <-> the shared ``referral.request``.

Data: ``mapping.json`` (field table and code lists), ``countries.json`` (ISO codes, English
country names and nationality adjectives), ``htcds.schema.json`` (the local record's shape)
and ``samples/``. See ``docs/adapters.md``.
"""

from adapters.htcds.adapter import HtcdsAdapter

__all__ = ["HtcdsAdapter"]
