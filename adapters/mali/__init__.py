"""Mali: the DNPEF child referral form <-> the shared ``referral.request``.

Mostly data: ``mapping.json`` (field table and code lists; country names come from
``../niger/pays.json``), ``fiche.schema.json`` (the local record's shape) and ``samples/``.
See ``docs/adapters.md``.
"""

from adapters.mali.adapter import MaliAdapter

__all__ = ["MaliAdapter"]
