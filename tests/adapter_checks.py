"""Checks every country adapter's fuzz tests share (kept here so each country file holds
only what is particular to its format: the local schema, overrides and nudges)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from adapters import AdapterError, MappingAdapter
from gateway.errors import SchemaInvalidError
from gateway.schema import find_violations


def maps_or_refuses(adapter: MappingAdapter, record: dict[str, Any], purposes: list[str] | None = None,
                    *, refusable: set[str] | None = None) -> None:
    """``to_shared`` gives a schema-valid payload that round-trips, or an AdapterError — nothing else.

    ``refusable``: when given, the local fields an AdapterError may name. The caller's
    record is never modified.
    """
    before = copy.deepcopy(record)
    try:
        result = adapter.to_shared(record, purposes)
    except SchemaInvalidError:
        raise  # a mapping bug: the adapter accepted a record and built an invalid payload
    except AdapterError as exc:
        if refusable is not None:
            assert exc.local_field in refusable, str(exc)
        return
    finally:
        assert record == before
    assert find_violations("referral.request", result.payload) == []
    # whatever went out comes back out the same through the local format
    assert adapter.to_shared(adapter.from_shared(result.payload), result.payload["purposes"]).payload == result.payload


def respell_coded_fields(data: st.DataObject, adapter: MappingAdapter, local_schema: dict[str, Any],
                         record: dict[str, Any], *, skip: set[str]) -> None:
    """Re-draw some coded top-level fields of ``record`` from their code lists, in any letter case."""
    coded = {name: node["x-code-list"] for name, node in local_schema["properties"].items() if "x-code-list" in node}
    for name in data.draw(st.sets(st.sampled_from(sorted(set(coded) - skip))), label="fields"):
        spellings = st.sampled_from(sorted(adapter.table.code_lists[coded[name]].codes))
        spelled = st.tuples(spellings, st.sampled_from([str.upper, str.lower, str.title, str])).map(lambda t: t[1](t[0]))
        node = local_schema["properties"][name]
        record[name] = data.draw(st.lists(spelled, min_size=1, max_size=4) if "oneOf" in node else spelled, label=name)
