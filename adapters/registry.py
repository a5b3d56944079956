"""Find an adapter by format id: the built-in list below, plus installed plugins.

A new country is a new folder (``adapters/<country>/``: mapping.json, local schema,
samples, an adapter class) and one line in ``BUILTIN``; the gateway itself does not
change. Adapters packaged elsewhere register under the Python entry-point group
``referral_gateway.adapters`` (``name = "package.module:AdapterClass"``).
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from adapters.base import Adapter, UnknownFormatError

ENTRY_POINT_GROUP = "referral_gateway.adapters"

#: format id -> "module:Class". Imported lazily, so one broken adapter cannot stop the others.
BUILTIN: dict[str, str] = {
    "niger": "adapters.niger.adapter:NigerAdapter",
    "htcds": "adapters.htcds.adapter:HtcdsAdapter",
    "nigeria": "adapters.nigeria.adapter:NigeriaAdapter",
    "mali": "adapters.mali.adapter:MaliAdapter",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)  # a plugin cannot shadow a built-in adapter
    return found


def available_formats() -> tuple[str, ...]:
    """Format ids an adapter is registered for (``shared`` is the gateway's own format, not listed)."""
    return tuple(sorted(_targets()))


@cache
def get_adapter(format_id: str) -> Adapter:
    """The adapter for a format id (one shared instance: adapters hold no per-record state)."""
    target = _targets().get(format_id)
    if target is None:
        raise UnknownFormatError(f"no adapter for format {format_id!r}; available: {', '.join(available_formats())}")
    module_name, _, class_name = target.partition(":")
    adapter = getattr(import_module(module_name), class_name)()
    if getattr(adapter, "format_id", None) != format_id:
        raise UnknownFormatError(f"adapter {target} does not declare format_id {format_id!r}")
    return adapter
