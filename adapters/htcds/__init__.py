"""HTCDS: an IOM Human Trafficking Case Data Standard 2.0 record <-> the shared ``referral.request`` (v2).

Data: ``htcds_2.0.json`` (the standard's fields and picklists), ``mapping.json`` (field table and
code lists), ``countries.json`` (ISO codes, English country names and nationality adjectives),
``htcds.schema.json`` (the local record's shape) and ``samples/``. See ``docs/htcds.md``.
"""

from adapters.htcds.adapter import HtcdsAdapter

__all__ = ["HtcdsAdapter"]
