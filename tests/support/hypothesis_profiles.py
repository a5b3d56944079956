"""Hypothesis profiles: ``ci`` (the full run, selected by CI=true) and ``fast`` (local runs).

``fast`` runs a fifth of the examples; ``ci`` runs hypothesis's defaults and every test's
own ``max_examples``. A test that needs more or fewer examples than the default writes
``@settings(max_examples=scaled(300))``: an explicit ``max_examples`` would override the
profile, ``scaled`` keeps the same proportion under both. HYPOTHESIS_PROFILE=ci (or
``pytest --hypothesis-profile=ci``) runs the full profile locally.
"""

from __future__ import annotations

import os

from hypothesis import settings

#: Examples per test under hypothesis's defaults (the ``ci`` profile).
FULL_EXAMPLES = 100
FAST_EXAMPLES = 20


def running_in_ci() -> bool:
    """True when CI=true (or 1, yes), as for the broker and database fixtures."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def register_profiles() -> str:
    """Register ``ci`` and ``fast`` and load the one for this environment; its name."""
    settings.register_profile("ci", max_examples=FULL_EXAMPLES)
    settings.register_profile("fast", max_examples=FAST_EXAMPLES)
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if running_in_ci() else "fast")
    settings.load_profile(name)
    return name


def scaled(full: int) -> int:
    """``full`` examples under the ``ci`` profile, the same share of it under the loaded one."""
    return max(1, full * settings.default.max_examples // FULL_EXAMPLES)
