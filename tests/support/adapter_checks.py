"""Checks every country adapter's fuzz tests share (kept here so each country file holds
only what is particular to its format: the local schema, overrides and nudges)."""

from __future__ import annotations

import copy
import json
import re
import string
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from hypothesis import strategies as st

from adapters import AdapterError, MappingAdapter
from adapters.base import MappingTable, normalise
from gateway.errors import SchemaInvalidError
from gateway.schema import PURPOSES_BY_VERSION, find_violations

PURPOSES = PURPOSES_BY_VERSION["1"]  # what the tables build (v1)

# --- a hypothesis strategy from a local JSON Schema ------------------------------------

_WORDS = st.text(alphabet=string.ascii_letters + "éèçàÉ' -", min_size=0, max_size=12)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 25) -> st.SearchStrategy[Any]:
    """``good`` about (odds-1)/odds of the time: a record has dozens of fields, and one bad value fails it."""
    return st.sampled_from(range(odds)).flatmap(lambda i: bad if i == odds - 1 else good)


def records_from_schema(schema: dict[str, Any], table: MappingTable,
                        overrides: dict[str, st.SearchStrategy[Any]] | None = None) -> st.SearchStrategy[Any]:
    """Local records shaped by a local JSON Schema, with coded values drawn mostly from the code lists.

    Understands what local schemas here use: type (or a list of types), properties, required,
    items, maxItems, oneOf, local ``$ref`` to ``$defs``, ``x-code-list`` (a code list name in
    ``table``), pattern and min/max. ``overrides`` maps a ``$defs`` name to a strategy (dates).
    Values are often valid, sometimes missing ("inconnu", ""), sometimes garbage: the adapter
    must answer every one with a valid payload or an AdapterError.
    """
    defs = schema.get("$defs", {})
    overrides = overrides or {}
    missing = sorted(table.missing_values) + ["Inconnu", "NSP"]

    def coded(name: str) -> st.SearchStrategy[Any]:
        good = st.sampled_from(sorted(table.code_lists[name].codes))
        spelled = st.one_of(good, good.map(str.upper), good.map(normalise))
        return mostly(spelled, st.one_of(st.sampled_from(missing), _WORDS))

    def build(node: Any) -> st.SearchStrategy[Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return overrides[name] if name in overrides else build(defs[name])
        if "oneOf" in node:  # the first alternative is the usual shape; the others are rarer
            first, *rest = node["oneOf"]
            return mostly(build(first), st.one_of(*[build(n) for n in rest]), 10) if rest else build(first)
        types = node.get("type", "string")
        types = types if isinstance(types, list) else [types]
        options = []
        if "object" in types:
            props = node.get("properties", {})
            required = {k: build(v) for k, v in props.items() if k in node.get("required", [])}
            optional = {k: build(v) for k, v in props.items() if k not in required}
            options.append(st.fixed_dictionaries(required, optional=optional))
        if "array" in types:
            items = build(node.get("items", {}))
            options.append(mostly(st.lists(items, min_size=1, max_size=min(node.get("maxItems", 4), 4)), st.just([]), 10))
        if "string" in types:
            if "x-code-list" in node:
                options.append(coded(node["x-code-list"]))
            elif "pattern" in node:
                options.append(st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= node.get("maxLength", 10**6)))
            else:
                options.append(mostly(_WORDS.filter(lambda s: len(s) <= node.get("maxLength", 200)), st.sampled_from(missing)))
        if "integer" in types:
            options.append(st.integers(node.get("minimum", -5), node.get("maximum", 200)))
        if "string" in types and "integer" in types:  # a number, or a missing value
            return mostly(options[-1], options[0])
        if "boolean" in types:
            options.append(st.booleans())
        return st.one_of(*options)

    return build(schema)


#: Purposes given to ``to_shared`` by the fuzz tests: mostly none (the record's own).
PURPOSES_OR_NONE = mostly(st.none(), st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=5, unique=True), 3)


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
            # every problem of the record is reported at once: each must be a refusable one
            assert all(one.local_field in refusable for one in exc.errors), str(exc)
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


def local_dates(fmt: str, low: date = date(1930, 1, 1), high: date = date(2035, 12, 31)) -> st.SearchStrategy[str]:
    """Dates between ``low`` and ``high`` written with ``fmt`` (strftime)."""
    return st.dates(low, high).map(lambda d: d.strftime(fmt))


def day_month_year_overrides(unknown: str, datetime_kind: str) -> dict[str, st.SearchStrategy[str]]:
    """Fuzz overrides for the dd/mm/yyyy formats (Niger, Mali, Nigeria): good dates and
    times mostly, else the format's "unknown" word and impossible dates."""
    return {
        "date": mostly(local_dates("%d/%m/%Y"), st.sampled_from([unknown, "", "31/02/2020", "1/1/1899"])),
        datetime_kind: mostly(st.one_of(local_dates("%d/%m/%Y"), local_dates("%d/%m/%Y %H:%M")),
                              st.sampled_from([unknown, "25/12/2026 24:00"])),
    }


def fuzz_local_record(data: st.DataObject, adapter: MappingAdapter, local_schema: dict[str, Any],
                      overrides: Mapping[str, st.SearchStrategy[Any]], *, minor: str, birth: str,
                      birth_dates: st.SearchStrategy[str], drop: Iterable[str] = (),
                      defaults: Mapping[str, Any] | None = None) -> None:
    """A record drawn from the local schema maps to a valid payload or an AdapterError.

    Often nudged toward records that can succeed (each nudge alone fails most random
    records): a ``minor`` flag, no ``drop`` fields, ``defaults`` set, a plausible ``birth``."""
    local = data.draw(records_from_schema(local_schema, adapter.table, overrides), label="record")
    if data.draw(mostly(st.just(True), st.just(False), 4)):
        local.setdefault(minor, data.draw(st.booleans()))
        for name in drop:
            local.pop(name, None)
        for name, value in (defaults or {}).items():
            local.setdefault(name, value)
        if birth in local:
            local[birth] = data.draw(birth_dates)
    maps_or_refuses(adapter, local, data.draw(PURPOSES_OR_NONE, label="purposes"))


def fuzz_respelled_sample(data: st.DataObject, adapter: MappingAdapter, local_schema: dict[str, Any],
                          samples: Iterable[str], load: Callable[[str], dict[str, Any]], *, minor: str,
                          refusable: set[str]) -> None:
    """A sample with coded fields re-drawn from the code lists (any case) maps, or names one
    of the ``refusable`` fields (what a good spelling can still break: purposes vs consent,
    age or band vs the minor flag)."""
    rec = load(data.draw(st.sampled_from(sorted(samples)), label="sample"))
    respell_coded_fields(data, adapter, local_schema, rec, skip={minor})
    maps_or_refuses(adapter, rec, refusable=refusable)


def assert_hides(shown: str, secret: str) -> None:
    """An error text shows nothing of ``secret`` (a name typed into the record), in any case."""
    assert secret not in shown and secret.lower() not in shown.lower(), shown


# --- hand-written records (tests/support/handwritten/) -----------------------------------

HANDWRITTEN = Path(__file__).resolve().parent / "handwritten"


def handwritten_names(country: str) -> list[str]:
    """The hand-written records of one country (file stems, ``niger_01_...``)."""
    return sorted(p.stem for p in HANDWRITTEN.glob(f"{country}_*.json"))


def handwritten(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A hand-written record and the payload values it must produce (``expected.json``)."""
    record = json.loads((HANDWRITTEN / f"{name}.json").read_text(encoding="utf-8"))
    expected = json.loads((HANDWRITTEN / "expected.json").read_text(encoding="utf-8"))[name]
    return record, expected


def at(payload: Any, dotted: str) -> Any:
    """The value at ``a.b[0].c`` in a payload (KeyError/IndexError when absent)."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        payload = payload[int(part[1:-1])] if part.startswith("[") else payload[part]
    return payload


def converts_first_time(adapter: MappingAdapter, name: str) -> None:
    """A hand-written record maps as it is, holds the expected values, and survives the form's round trip."""
    record, expected = handwritten(name)
    result = adapter.to_shared(record)
    assert find_violations("referral.request", result.payload) == []
    for path, value in expected.items():
        assert at(result.payload, path) == value, path
    back = adapter.from_shared(result.payload)
    assert adapter.to_shared(back, result.payload["purposes"]).payload == result.payload


#: For each hand-written record, an agency its consent covers (by agency id, or by country).
V2_RECIPIENTS = {
    "niger_01_nigeriane_zinder": ("NG-NAPTIP", "NG"),
    "niger_02_mineure_tuteur_legal": ("NG-NAPTIP", "NG"),
    "niger_03_orpaillage_adulte": ("ML-DNPEF", "ML"),
    "niger_04_garcon_talibe": ("NE-ANLTP", "NE"),
    "nigeria_01_returnee_benin": ("NG-NAPTIP", "NG"),
    "nigeria_02_minor_guardian_nscdc": ("NE-ANLTP", "NE"),
    "nigeria_03_urhobo_labour": ("NG-IOM", "NG"),
    "nigeria_04_ijaw_child_church": ("NG-NAPTIP", "NG"),
    "mali_01_talibe_retour": ("NE-ANLTP", "NE"),
    "mali_02_fillette_domestique": ("ML-DNPEF", "ML"),
    "mali_03_garcon_orpaillage": ("ML-DNPEF", "ML"),
}


def converts_to_v2_and_back(adapter: MappingAdapter, name: str) -> dict[str, Any]:
    """A hand-written record as a v2 payload: valid, its v1 content upgraded, and the same after the form's round trip."""
    record, _ = handwritten(name)
    recipient, country = V2_RECIPIENTS[name]
    result = adapter.to_shared_v2(record, recipient=recipient, recipient_country=country)
    payload = result.payload
    assert payload["schema_version"] == "2" and find_violations("referral.request", payload) == []
    assert [e["agency"] for e in payload["consent"]["recipients"]].count(recipient) == 1
    back = adapter.from_shared(payload)
    again = adapter.to_shared_v2(back, payload["purposes"], recipient=recipient, recipient_country=country)
    assert again.payload == payload
    # a v1 payload of the same record still reads back into the form (v1 input keeps working)
    v1 = adapter.to_shared(record).payload
    assert adapter.to_shared(adapter.from_shared(v1), v1["purposes"]).payload == v1
    return payload
