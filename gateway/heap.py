"""Garbage-collector settings for a long-running gateway.

A gateway builds a large, permanent heap at start (JSON Schemas and their validators, code
lists, ISO 639-3 and country tables, translation catalogues, FHIR models). Every full
collection walked all of it: 45–60 ms with the event loop stopped, a few times a minute
under load, which is where the slowest 1–2% of referrals spent most of their time
(bench/README.md, issue 14). Freezing what exists once the service is built keeps those
objects out of every later collection; they live as long as the process anyway. It must
happen before the first delivery or request: a frozen object is never freed, so nothing of
a case may be in the heap when it is frozen.
"""

from __future__ import annotations

import gc

import pycountry

#: Collections of the young generation start after this many new container objects
#: (Python's default is 700): each referral allocates a few thousand, and fewer young
#: collections means fewer objects promoted towards the full collection.
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Load what is loaded lazily, collect once, then freeze the heap built so far."""
    # pycountry reads its databases on first use (the adapters' language and country
    # lookups): load them now, so they are frozen with the rest instead of walked later.
    for database in (pycountry.languages, pycountry.countries):
        len(database)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
