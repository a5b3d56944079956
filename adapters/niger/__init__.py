"""Niger: ANLTP-TIM's "fiche de référencement" <-> the shared ``referral.request``.

Everything but one odd case is data: ``mapping.json`` (field table and code lists),
``pays.json`` (French country names and nationality adjectives), ``fiche.schema.json``
(the local record's shape) and ``samples/``. See ``docs/adapters.md``.
"""

from adapters.niger.adapter import NigerAdapter

__all__ = ["NigerAdapter"]
