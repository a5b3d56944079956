"""Aggregate statistics (gateway/stats.py) and ``GET /stats`` (gateway/api/stats.py).

The protection tests do not trust gateway.stats' own checker alone: they parse the
published JSON, as a recipient would, and attack it with two checkers written here, the
one-unknown-per-line rule and an independent dense rank test.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import secrets
from collections import Counter
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters.registry import available_formats, get_adapter
from gateway.api import stats as stats_api
from gateway.api.auth import auth_middleware
from gateway.api.context import GATEWAY, SETTINGS
from gateway.api.errors import error_middleware
from gateway.metrics import Metrics
from gateway.schema import SCHEMA_DIR, load_example
from gateway.schema_versions import EXPLOITATION_TYPE_V1_TO_V2
from gateway.service import Actor
from gateway.settings import ROLES, Settings, User
from gateway.stats import (
    ACTS, AGE_BANDS, AGE_CATEGORIES, EXPLOITATION_TYPES, MEANS, MINOR_OF_AGE, REFERRAL_SOURCES, SEXES,
    V1_EXPLOITATION_TYPES, InvalidThresholdError, SentRecord, StatsError, StatsRecord, Table, UnknownDimensionError,
    OUTCOMES, aggregate, band_of_years, carrying_purposes, derivable, is_protected, month_range, period_of,
)

from testkit.gateway_pair import NIGERIA, eventually, gateway_pair
from tests.support.hypothesis_profiles import scaled

ROOT = Path(__file__).resolve().parent.parent
MARCH = datetime(2026, 3, 6, 10, 15, tzinfo=timezone.utc)


def rec(month: str = "2026-01", sex: str = "female", age: str = "21-23", nat: str = "NG",
        types: tuple[str, ...] = (), source: str = "ngo", acts: tuple[str, ...] | None = None,
        means: tuple[str, ...] | None = None) -> StatsRecord:
    return StatsRecord(month, sex, age, nat, frozenset(types), source,
                       None if acts is None else frozenset(acts), None if means is None else frozenset(means))


# --- the attacker, written independently of gateway.stats ---------------------------------


def equations(report_json: dict[str, Any]) -> tuple[dict[tuple, int | None], list[list[tuple]]]:
    """Published values and sums (first key = sum of the rest) of a report's JSON.

    Keys: ("T",) grand total, ("M", p) period total, ("P", pop[, p]) a restricted
    population's totals, (dim, p, c) a cell, (dim, c) a column total; a cross-tab's rows
    and columns are the column totals of its two dimensions."""
    values: dict[tuple, int | None] = {}
    sums: list[list[tuple]] = []

    def put(key: tuple, cell: dict[str, Any]) -> None:
        assert (cell["count"] is None) == cell["suppressed"]
        if values.get(key) is None:
            values[key] = cell["count"]

    for table in report_json["tables"]:
        dim, cats, by = table["dimension"], table.get("categories", []), table.get("rows_by", "month")
        rows = [r[by] for r in table["rows"]]
        pop = table.get("population")
        cross = "columns_by" in table
        total = ("T",) if pop is None else ("P", pop)

        def row_key(r: str, by: str = by, pop: str | None = pop, cross: bool = cross) -> tuple:
            return (by, r) if cross else ("M", r) if pop is None else ("P", pop, r)

        col_dim = table.get("columns_by", dim)
        put(total, table["total"])
        sums.append([total] + [row_key(r) for r in rows])
        for row in table["rows"]:
            put(row_key(row[by]), row["total"])
            for c in cats:
                put((dim, row[by], c), row["cells"][c])
        for c in cats:
            put((col_dim, c), table["column_totals"][c])
            sums.append([(col_dim, c)] + [(dim, r, c) for r in rows])
        if cats and not table["multi_valued"]:
            for r in rows:
                sums.append([row_key(r)] + [(dim, r, c) for c in cats])
            sums.append([total] + [(col_dim, c) for c in cats])
        if "sums_of" in table:
            source = table["sums_of"]["dimension"]
            for c, parts in table["sums_of"]["categories"].items():
                for r in rows:
                    sums.append([(dim, r, c)] + [(source, r, part) for part in parts])
                sums.append([(dim, c)] + [(source, part) for part in parts])
    return values, sums


def single_unknown_leaks(values: dict[tuple, int | None], sums: list[list[tuple]]) -> set[tuple]:
    """Suppressed values recomputable by repeatedly solving a sum with one unknown."""
    known = {k: v for k, v in values.items() if v is not None}
    found: set[tuple] = set()
    progress = True
    while progress:
        progress = False
        for line in sums:
            unknown = [k for k in line if k not in known]
            if len(unknown) == 1:
                (k,) = unknown
                rest = sum(known[x] for x in line[1:] if x != k)
                known[k] = rest if k == line[0] else known[line[0]] - rest
                found.add(k)
                progress = True
    return found


def _rref(rows: list[list[Fraction]]) -> tuple[list[list[Fraction]], list[int]]:
    rows = [r[:] for r in rows]
    pivots: list[int] = []
    width = len(rows[0]) if rows else 0
    for col in range(width):
        r = len(pivots)
        pivot = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        rows[r] = [a / rows[r][col] for a in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                f = rows[i][col]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(col)
    return rows[:len(pivots)], pivots


def rank_leaks(values: dict[tuple, int | None], sums: list[list[tuple]]) -> set[tuple]:
    """Suppressed values fixed by the sums: those zero in every vector of the null space
    (the null space spans every way the unknowns can change without changing a sum)."""
    unknown = [k for k, v in values.items() if v is None]
    matrix = [[Fraction((k == line[0]) - (k in line[1:])) for k in unknown] for line in sums]
    rows, pivots = _rref([r for r in matrix if any(r)])
    free = [c for c in range(len(unknown)) if c not in set(pivots)]
    moves = set()  # unknowns some null-space basis vector changes
    for f in free:
        moves.add(f)
        moves.update(p for row, p in zip(rows, pivots) if row[f] != 0)
    return {k for i, k in enumerate(unknown) if i not in moves}


def small_outside_leaks(doc: dict[str, Any], values: dict[tuple, int | None], sums: list[list[tuple]],
                        truth: dict[tuple, int], threshold: int) -> set[tuple]:
    """Counts of referrals *outside* a restricted population (period total minus the
    population's) that are small and follow from the published numbers.

    Never published, so ``equations`` does not list them; but the period table and the
    acts table give both terms, and a small difference is a small count all the same."""
    values, sums = dict(values), list(sums)
    pops = {t["population"] for t in doc["tables"] if "population" in t}
    for pop in pops:
        values[("R", pop)] = None
        sums.append([("T",), ("P", pop), ("R", pop)])
        for p in doc["periods"]:
            values[("R", pop, p)] = None
            sums.append([("M", p), ("P", pop, p), ("R", pop, p)])
    small = set()
    for key in rank_leaks(values, sums):
        if key[0] == "R":
            outside = truth.get(("T",) if len(key) == 2 else ("M", key[2]), 0) - truth.get(("P", *key[1:]), 0)
            if 0 < outside < threshold:
                small.add(key)
    return small


MINOR_OF = {"0-8": "minor", "9-17": "minor", "under_18_unspecified": "minor", "unknown": "unknown"}


def true_counts(records: list[Any], interval: str = "month") -> dict[tuple, int]:
    counts: Counter[tuple] = Counter()
    for r in records:
        p = period_of(r.month, interval)
        counts[("T",)] += 1
        counts[("M", p)] += 1
        if isinstance(r, SentRecord):
            cats: dict[str, set[str]] = {"recipient": {r.recipient}, "outcome": {r.outcome}}
        else:
            cats = {"sex": {r.sex}, "age_band": {r.age_band}, "nationality": {r.nationality},
                    "minor": {MINOR_OF.get(r.age_band, "adult")}, "referral_source": {r.referral_source},
                    "exploitation_type": set(r.exploitation_types or {"not_recorded"})}
            for name in ("acts", "means"):
                value = getattr(r, name)
                if value is not None:
                    cats[name] = set(value or {"not_recorded"})
                    counts[("P", name)] += 1
                    counts[("P", name, p)] += 1
            counts[("sex_by_age_band", r.sex, r.age_band)] += 1
        for dim, found in cats.items():
            for c in found:
                counts[(dim, p, c)] += 1
                counts[(dim, c)] += 1
    return counts


def check_report(records: list[StatsRecord], threshold: int, **kw: Any) -> dict[str, Any]:
    """Every invariant a report must hold; returns its JSON."""
    report = aggregate(records, threshold=threshold, **kw)
    doc = json.loads(json.dumps(report.to_json()))
    values, sums = equations(doc)
    truth = true_counts(records, kw.get("interval", "month"))
    for key, value in values.items():
        if value is not None:
            assert value == truth.get(key, 0), key  # published = true count
            assert value == 0 or value >= threshold, key  # nothing small is published
        else:
            assert truth.get(key, 0) > 0, key  # zeros are never suppressed
    assert not single_unknown_leaks(values, sums)
    assert not rank_leaks(values, sums)
    assert not small_outside_leaks(doc, values, sums, truth, threshold)
    assert is_protected(report.tables)
    assert is_protected([Table.from_json(t) for t in doc["tables"]])
    assert doc["threshold"] == threshold
    assert doc["records"]["count"] in (None, len(records))
    if 0 < len(records) < threshold:
        assert doc["records"] == {"count": None, "suppressed": True}
    return doc


# --- categories agree with the schema -----------------------------------------------------


def test_categories_are_the_schema_enums() -> None:
    """Categories are v2's; every v1 value is one of them or renamed by the v1 → v2 table."""
    v1, v2 = (json.loads((SCHEMA_DIR / v / "common.schema.json").read_text())["$defs"] for v in ("v1", "v2"))
    for defs in (v1, v2):
        assert list(SEXES) == defs["sex"]["enum"]
        assert [*AGE_BANDS, "unknown"] == defs["age_band"]["enum"]
        assert list(ACTS) == defs["act"]["enum"] and list(MEANS) == defs["means"]["enum"]
    assert list(EXPLOITATION_TYPES) == v2["exploitation_type"]["enum"]
    assert list(REFERRAL_SOURCES) == v2["referral_source"]["enum"]
    assert set(v1["referral_source"]["enum"]) <= set(REFERRAL_SOURCES)
    assert V1_EXPLOITATION_TYPES == EXPLOITATION_TYPE_V1_TO_V2
    assert {V1_EXPLOITATION_TYPES.get(t, t) for t in v1["exploitation_type"]["enum"]} <= set(EXPLOITATION_TYPES)
    assert AGE_CATEGORIES[-1] == "unknown" and set(AGE_BANDS) < set(AGE_CATEGORIES)
    assert sorted(a for ages in MINOR_OF_AGE.values() for a in ages) == sorted(AGE_CATEGORIES)


def test_acts_and_means_carriers_come_from_the_minimal_data_tables() -> None:
    assert carrying_purposes("acts", "1") == carrying_purposes("means", "1") == {"assistance"}
    assert carrying_purposes("acts", "2") == carrying_purposes("means", "2") == {"criminal_justice_cooperation"}


def test_band_of_years_uses_the_schema_bands() -> None:
    for band in AGE_BANDS:
        low, high = (int(band[:-1]), 120) if band.endswith("+") else map(int, band.split("-"))
        assert {band_of_years(y) for y in range(low, high + 1)} == {band}
    with pytest.raises(ValueError):
        band_of_years(-1)


# --- records ------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "expected"), [
    (None, ("female", "21-23", "NG", frozenset())),  # years 22
    ("all_purposes", ("female", "24-26", "NG", frozenset({"sexual_exploitation", "domestic_servitude"}))),
    ("minor_guardian", ("female", "9-17", "NG", frozenset())),  # years 16, estimated
    ("safety_assessment_only", ("female", "18-20", "NG", frozenset())),  # band
])
def test_from_payload_on_the_schema_examples(variant: str | None, expected: tuple) -> None:
    record = StatsRecord.from_payload(load_example("referral.request", variant), MARCH)
    assert record.month == "2026-03"
    assert (record.sex, record.age_band, record.nationality, record.exploitation_types) == expected
    # Born 2001-07-15: 24 on 2026-03-06, 23 the day before the birthday a year earlier.
    dob = StatsRecord.from_payload(load_example("referral.request", "all_purposes"),
                                   datetime(2025, 7, 14, tzinfo=timezone.utc))
    assert dob.age_band == "21-23"


def _adapter_payloads() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in available_formats():
        for path in sorted(glob.glob(str(ROOT / "adapters" / name / "samples" / "*.json"))):
            out.append((f"{name}/{Path(path).name}",
                        get_adapter(name).to_shared(json.loads(Path(path).read_text()), None).payload))
    return out


def test_from_payload_on_adapter_outputs() -> None:
    records = {name: StatsRecord.from_payload(p, MARCH) for name, p in _adapter_payloads()}
    assert len(records) >= 8
    # Missing values: unknown sex and nationality, minor flag only, exploitation undetermined.
    missing = records["niger/valeurs_manquantes.json"]
    assert (missing.sex, missing.age_band, missing.nationality, missing.exploitation_types) == (
        "unknown", "under_18_unspecified", "unknown", frozenset({"undetermined"}))
    # A date of birth is banded on the receipt date (2009-05-02 → 16 in March 2026).
    assert records["niger/mineure_retour_tuteur.json"].age_band == "9-17"
    # v1 assistance carries acts and means (v1's minimal-data table), so they are counted.
    assert records["mali/garcon_mendicite_assistance.json"] == StatsRecord(
        "2026-03", "male", "9-17", "GN", frozenset({"forced_begging"}), "law_enforcement",
        frozenset({"recruitment", "transportation", "harbouring"}), frozenset({"deception", "abuse_of_vulnerability"}))


def test_from_payload_age_fallbacks_and_junk() -> None:
    def band(age: Any) -> str:
        return StatsRecord.from_payload({"person": {"sex": "male", "age": age}}, MARCH).age_band
    assert band({"minor": True, "band": "unknown"}) == "under_18_unspecified"
    assert band({"minor": False, "band": "unknown"}) == "18_plus_unspecified"
    assert band({"minor": False, "years": 48}) == "48+"
    assert band({"minor": True, "date_of_birth": "2030-01-01"}) == "under_18_unspecified"  # after receipt
    assert band({"minor": True, "date_of_birth": "not a date"}) == "under_18_unspecified"
    assert band(None) == "unknown"
    junk = StatsRecord.from_payload({"person": {"sex": "Amaka", "nationality": "Nigeria", "age": {"years": True}},
                                     "exploitation": [{"type": "Amaka"}, "x", {"type": "forced_labour"}]}, MARCH)
    assert (junk.sex, junk.nationality, junk.age_band, junk.exploitation_types) == (
        "unknown", "unknown", "unknown", frozenset({"forced_labour"}))
    assert StatsRecord.from_payload({}, MARCH) == StatsRecord("2026-03", "unknown", "unknown", "unknown")
    # The month is the UTC month of receipt.
    late = datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert StatsRecord.from_payload({}, late).month == "2026-03"
    with pytest.raises(ValueError, match="timezone-aware"):
        StatsRecord.from_payload({}, datetime(2026, 3, 6))


def test_v2_payloads_referral_sources_and_acts_only_with_criminal_justice() -> None:
    """v2: the judicial and faith-based sources are counted; acts and means only from a
    request whose purposes include criminal_justice_cooperation (v2's minimal data)."""
    def v2(variant: str | None) -> StatsRecord:
        return StatsRecord.from_payload(load_example("referral.request", variant, version="2"), MARCH)
    cjc = v2("criminal_justice_cooperation")
    assert cjc.referral_source == "prosecutor"
    assert cjc.acts == {"recruitment", "transportation", "receipt"} and cjc.means == {"deception", "abuse_of_vulnerability"}
    assert v2("minor_guardian").referral_source == "juvenile_judge" and v2("minor_guardian").minor == "minor"
    protection = v2("international_protection")
    assert protection.referral_source == "faith_based_organisation" and protection.acts is None
    # Acts next to v2 assistance (the schema refuses them; statistics ignore them all the same).
    assistance = dict(load_example("referral.request", "criminal_justice_cooperation", version="2"),
                      purposes=["assistance"])
    record = StatsRecord.from_payload(assistance, MARCH)
    assert record.acts is None and record.means is None
    assert record.categories("acts") == frozenset()
    # With the purpose but no acts given: counted in the population as not recorded.
    bare = {k: v for k, v in load_example("referral.request", "criminal_justice_cooperation", version="2").items()
            if k not in ("acts", "means")}
    assert StatsRecord.from_payload(bare, MARCH).categories("acts") == {"not_recorded"}


def test_v1_payloads_acts_with_assistance_and_renamed_types() -> None:
    """v1: acts and means travel with assistance (v1's minimal data), so they count; v1's
    exploitation codes are counted in v2 words."""
    v1 = load_example("referral.request", "all_purposes")
    assert "schema_version" not in v1 and "assistance" in v1["purposes"]
    record = StatsRecord.from_payload(v1, MARCH)
    assert record.acts == frozenset(v1["acts"]) and record.means == frozenset(v1["means"])
    without = dict(v1, purposes=["safety_assessment"])
    assert StatsRecord.from_payload(without, MARCH).acts is None
    renamed = dict(v1, exploitation=[{"type": "slavery_servitude"}, {"type": "child_soldiering"}])
    assert StatsRecord.from_payload(renamed, MARCH).exploitation_types == {
        "servitude", "forced_military_by_non_state_actors"}
    junk = dict(v1, acts=["Amaka", "recruitment"], identification={"referral_source": "Amaka"})
    record = StatsRecord.from_payload(junk, MARCH)
    assert record.acts == {"recruitment"} and record.referral_source == "unknown"


def test_acts_table_counts_its_population_only() -> None:
    """20 referrals, 12 of them with a purpose carrying acts: the acts table's totals are
    12, not 20; acts and means with the same population share its totals."""
    records = ([rec(acts=("recruitment",), means=("deception",))] * 12 + [rec()] * 11)
    doc = check_report(records, 11)
    tables = {t["dimension"]: t for t in doc["tables"]}
    assert tables["acts"]["population"] == tables["means"]["population"] == "acts"
    assert tables["acts"]["total"]["count"] == 12 and doc["records"]["count"] == 23
    assert tables["acts"]["column_totals"]["recruitment"]["count"] == 12
    assert tables["means"]["column_totals"]["deception"]["count"] == 12
    minor = tables["minor"]
    assert minor["sums_of"]["dimension"] == "age_band" and minor["column_totals"]["adult"]["count"] == 23


def test_referrals_outside_the_acts_population_are_not_given_away() -> None:
    """12 referrals for criminal-justice cooperation (they carry acts) and 8 for assistance
    only: publishing the month total 20 and the acts population 12 would say that 8
    persons, fewer than the threshold, were not referred to an investigation."""
    records = [rec(acts=("recruitment",), means=("deception",))] * 12 + [rec()] * 8
    doc = check_report(records, 11)
    month = next(t for t in doc["tables"] if t["dimension"] == "month")
    acts = next(t for t in doc["tables"] if t["dimension"] == "acts")
    shown = (doc["records"]["count"], acts["total"]["count"])
    assert None in shown, shown
    january = (month["rows"][0]["total"]["count"], acts["rows"][0]["total"]["count"])
    assert None in january, january


def test_cross_tab_margins_are_the_sex_and_age_totals() -> None:
    """Sex x age band over the period: its margins are the sex and age column totals, so a
    hidden cell next to published ones gets complements across the linked tables."""
    records = [rec("2026-01", "female", "21-23")] * 20 + [rec("2026-02", "female", "9-17")] * 4 + [
        rec("2026-02", "male", "21-23")] * 15
    doc = check_report(records, 11, interval="quarter")
    cross = next(t for t in doc["tables"] if t["dimension"] == "sex_by_age_band")
    female = next(r for r in cross["rows"] if r["sex"] == "female")
    assert female["cells"]["9-17"]["suppressed"] and female["cells"]["21-23"]["suppressed"]
    assert cross["total"]["count"] == 39


def test_record_fields_are_checked() -> None:
    assert [f.name for f in dataclasses.fields(StatsRecord)] == [
        "month", "sex", "age_band", "nationality", "exploitation_types", "referral_source", "acts", "means"]
    for bad in (dict(month="2026-13"), dict(sex="woman"), dict(age="12"), dict(nat="Nigeria")):
        with pytest.raises(StatsError):
            rec(**bad)
    with pytest.raises(StatsError):
        StatsRecord("2026-01", "male", "unknown", "NG", frozenset({"theft"}))


def test_month_range() -> None:
    assert month_range("2025-11", "2026-02") == ("2025-11", "2025-12", "2026-01", "2026-02")
    assert month_range("2026-02", "2026-01") == ()


# --- worked examples ----------------------------------------------------------------------


def test_worked_example_one_month_by_sex() -> None:
    """January: 15 women, 3 men, threshold 11.

    Primary: men 3 (cell and column total). The January row (18 = 15 + 3 + 0 + 0) then has
    one unknown, so the smallest other nonzero cell, women 15, is suppressed; the women's
    column (15 = 15) then has one unknown, so its total goes too. Published: 18, zeros.
    A reader knows women + men = 18 and nothing more.
    """
    records = [rec(sex="female")] * 15 + [rec(sex="male")] * 3
    doc = check_report(records, 11, dimensions=("sex",))
    sex = doc["tables"][1]
    cells = {c: v["count"] for c, v in sex["rows"][0]["cells"].items()}
    assert cells == {"female": None, "male": None, "other": 0, "unknown": 0}
    assert {c: v["count"] for c, v in sex["column_totals"].items()} == cells
    assert sex["rows"][0]["total"] == {"count": 18, "suppressed": False}
    assert doc["records"] == {"count": 18, "suppressed": False}
    eighteen = {"count": 18, "suppressed": False}
    assert doc["tables"][0] == {"dimension": "month", "rows_by": "month", "rows": [{"month": "2026-01", "total": eighteen}],
                                "total": eighteen}


def test_worked_example_two_months_column_complement() -> None:
    """Men: 12 in January, 4 in February; women 20 and 30. Threshold 11.

    Primary: February men 4. The men's column (16 = 12 + 4) then has one unknown, so
    January men 12 is its complement; each row now has one unknown (32 = 20 + 12 and
    34 = 30 + 4), so women 20 and 30 follow. Four cells suppressed, every total published:
    the classic 2 x 2 block, which can move by +-1 along its cycle without changing a total.
    """
    records = ([rec("2026-01", "male")] * 12 + [rec("2026-02", "male")] * 4
               + [rec("2026-01", "female")] * 20 + [rec("2026-02", "female")] * 30)
    doc = check_report(records, 11, dimensions=("sex",))
    sex = doc["tables"][1]
    hidden = {(r["month"], c) for r in sex["rows"] for c, v in r["cells"].items() if v["suppressed"]}
    assert hidden == {("2026-01", "female"), ("2026-01", "male"), ("2026-02", "female"), ("2026-02", "male")}
    assert [r["total"]["count"] for r in sex["rows"]] == [32, 34]
    assert {c: v["count"] for c, v in sex["column_totals"].items()} == {
        "female": 50, "male": 16, "other": 0, "unknown": 0}


def test_small_totals_are_suppressed() -> None:
    """Five women in one month: the cell, its column, the month and the grand total are all
    below 11; the record count is not stated."""
    doc = check_report([rec()] * 5, 11)
    assert doc["records"] == {"count": None, "suppressed": True}
    assert doc["tables"][0]["rows"][0]["total"]["suppressed"]
    assert doc["tables"][1]["rows"][0]["cells"]["female"]["suppressed"]


def test_multi_valued_exploitation() -> None:
    """January: 12 persons sexually exploited, 4 of them also in forced labour; February:
    15 in forced labour. Threshold 11.

    Cells count persons, so January's row (12 + 4 = 16) exceeds its total 12: rows are not
    sums and get no complement. The forced-labour column is one (19 = 4 + 15): January's
    4 is primary and February's 15 its complement. Nothing else is suppressed.
    """
    records = ([rec("2026-01", types=("sexual_exploitation", "forced_labour"))] * 4
               + [rec("2026-01", types=("sexual_exploitation",))] * 8
               + [rec("2026-02", types=("forced_labour",))] * 15)
    doc = check_report(records, 11, dimensions=("exploitation_type",))
    table = doc["tables"][1]
    assert table["multi_valued"] is True
    hidden = {(r["month"], c) for r in table["rows"] for c, v in r["cells"].items() if v["suppressed"]}
    assert hidden == {("2026-01", "forced_labour"), ("2026-02", "forced_labour")}
    jan = table["rows"][0]
    assert jan["cells"]["sexual_exploitation"]["count"] == 12 and jan["total"]["count"] == 12
    assert table["column_totals"]["forced_labour"]["count"] == 19
    assert table["column_totals"]["not_recorded"]["count"] == 0
    # Read as additive, January's row would give forced labour away: 12 - 12 = 0 (wrong, but
    # a checker that assumed additivity would call the table unprotected for nothing).


def test_not_recorded_exploitation() -> None:
    doc = check_report([rec(types=())] * 11, 11, dimensions=("exploitation_type",))
    assert doc["tables"][1]["column_totals"]["not_recorded"]["count"] == 11


def test_bridge_between_blocks_is_found_and_prevented() -> None:
    """Two 2 × 2 blocks of suppressed cells joined by one more suppressed cell: every row
    and column has two or more unknowns, yet rows 1+2 minus columns female+male leave just
    the bridge. The one-unknown rule misses it; elimination does not."""
    months = ("2026-01", "2026-02", "2026-03", "2026-04")
    cols = SEXES
    hidden = {(months[0], "female"), (months[0], "male"), (months[1], "female"), (months[1], "male"),
              (months[2], "other"), (months[2], "unknown"), (months[3], "other"), (months[3], "unknown"),
              (months[0], "other")}
    cells = {(m, c): None if (m, c) in hidden else 20 for m in months for c in cols}
    table = Table("sex", months, cols, cells, {m: 100 for m in months}, {c: 100 for c in cols}, 400)
    doc = {"tables": [table.to_json()]}
    values, sums = equations(doc)
    assert not single_unknown_leaks(values, sums)
    assert rank_leaks(values, sums) == {("sex", months[0], "other")}
    assert derivable(table) == {("sex", months[0], "other")}
    assert not is_protected(table)
    # aggregate never publishes such a pattern: counts that would produce it get more cells hidden.
    records = []
    for (m, c) in hidden:
        records += [rec(m, c)] * 5
    for m in months:
        for c in cols:
            if (m, c) not in hidden:
                records += [rec(m, c)] * 20
    check_report(records, 11, dimensions=("sex",))


def test_linked_tables_share_month_totals() -> None:
    """February has 3 persons: its total is suppressed in every table at once, and
    January's with it (else the month line would give February away)."""
    records = [rec("2026-01", nat="NE")] * 30 + [rec("2026-02", nat="ML")] * 3
    doc = check_report(records, 11)
    for table in doc["tables"]:
        if "population" in table or table["rows_by"] != "month":
            continue  # acts and means count their own population; the cross-tab has no months
        assert [r["total"]["suppressed"] for r in table["rows"]] == [True, True]
    assert doc["records"]["count"] == 33


def test_threshold_one_suppresses_nothing_and_bad_thresholds_fail() -> None:
    records = [rec(), rec(sex="male", nat="ML")]
    doc = check_report(records, 1)
    assert doc["records"]["count"] == 2
    assert not any(v is None for v in equations(doc)[0].values())
    for bad in (0, -1, True, 1.5, "11", None):
        with pytest.raises(InvalidThresholdError):
            aggregate(records, threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidThresholdError, match="at least 1"):
        aggregate(records, threshold=0)
    with pytest.raises(InvalidThresholdError, match="base_threshold"):
        aggregate(records, threshold=11, base_threshold=12)
    with pytest.raises(UnknownDimensionError):
        aggregate(records, dimensions=("religion",))
    assert InvalidThresholdError.code == "invalid_threshold"


def test_empty_input_and_empty_months() -> None:
    doc = check_report([], 11, months=("2026-01", "2026-02"))
    assert doc["records"] == {"count": 0, "suppressed": False}
    assert doc["months"] == ["2026-01", "2026-02"]
    tables = {t["dimension"]: t for t in doc["tables"]}
    assert tables["nationality"]["categories"] == ["unknown"]  # only those seen, and unknown


def test_no_name_reaches_the_report() -> None:
    payloads = [load_example("referral.request", v)
                for v in (None, "all_purposes", "minor_guardian", "safety_assessment_only")]
    payloads += [p for _, p in _adapter_payloads()]
    payloads += [load_example("referral.request", v, version="2")
                 for v in (None, "all_purposes", "criminal_justice_cooperation", "international_protection")]
    secrets_in: set[str] = set()

    def collect(value: Any, inside: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(v, inside or k in {"names", "family_contacts", "place_of_origin",
                                           "identity_documents", "narrative", "comment"})
        elif isinstance(value, list):
            for v in value:
                collect(v, inside)
        elif inside and isinstance(value, str) and len(value) > 2:
            secrets_in.add(value)

    for p in payloads:
        collect(p, False)
    assert {"Amaka", "Testfixture", "Hadiza", "Benin City"} <= secrets_in
    records = [StatsRecord.from_payload(p, MARCH) for p in payloads]
    text = json.dumps(aggregate(records * 3, threshold=1).to_json(), ensure_ascii=False)
    leaked = {s for s in secrets_in if s in text}
    assert not leaked


# --- properties ---------------------------------------------------------------------------

MONTHS = ("2026-01", "2026-02", "2026-03")
records_strategy = st.lists(
    st.builds(
        StatsRecord,
        month=st.sampled_from(MONTHS),
        sex=st.sampled_from(("female", "male", "unknown")),
        age_band=st.sampled_from(("9-17", "18-20", "21-23", "under_18_unspecified")),
        nationality=st.sampled_from(("NG", "NE", "ML", "unknown")),
        exploitation_types=st.frozensets(st.sampled_from(("sexual_exploitation", "forced_labour",
                                                          "forced_begging")), max_size=2),
        referral_source=st.sampled_from(("law_enforcement", "ngo", "juvenile_judge", "unknown")),
        acts=st.none() | st.frozensets(st.sampled_from(("recruitment", "transportation")), max_size=2),
        means=st.none() | st.frozensets(st.sampled_from(("deception", "coercion")), max_size=2),
    ),
    max_size=90,
)
wide_records = st.lists(
    st.builds(
        StatsRecord,
        month=st.sampled_from(("2025-11", "2025-12", *MONTHS, "2026-04")),
        sex=st.sampled_from(SEXES),
        age_band=st.sampled_from(AGE_CATEGORIES),
        nationality=st.sampled_from(("NG", "NE", "ML", "GN", "BF", "TD", "unknown")),
        exploitation_types=st.frozensets(st.sampled_from(EXPLOITATION_TYPES), max_size=3),
        referral_source=st.sampled_from((*REFERRAL_SOURCES, "unknown")),
        acts=st.none() | st.frozensets(st.sampled_from(ACTS), max_size=3),
        means=st.none() | st.frozensets(st.sampled_from(MEANS), max_size=3),
    ),
    min_size=20, max_size=150,
)
PROPERTY = settings(max_examples=scaled(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(records_strategy, st.integers(min_value=1, max_value=15))
def test_every_report_is_protected_and_true(records: list[StatsRecord], threshold: int) -> None:
    check_report(records, threshold)


@settings(max_examples=scaled(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_records, st.integers(min_value=2, max_value=15))
def test_wide_sparse_reports_are_protected_and_true(records: list[StatsRecord], threshold: int) -> None:
    check_report(records, threshold)


@PROPERTY
@given(records_strategy, st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=10))
def test_higher_thresholds_only_hide_more(records: list[StatsRecord], base: int, extra: int) -> None:
    low = equations(check_report(records, base))[0]
    high = equations(check_report(records, base + extra, base_threshold=base))[0]
    assert {k: v for k, v in high.items() if v is not None}.items() <= {
        k: v for k, v in low.items() if v is not None}.items()


def _test_key(key: tuple) -> tuple:
    if key == ("total",):
        return ("T",)
    if key[0] == "month":
        return ("M", key[1])
    return (key[0], key[2]) if key[1] == "*" else key


@PROPERTY
@given(st.data())
def test_checker_agrees_with_an_independent_rank_test(data: st.DataObject) -> None:
    """gateway.stats.derivable against rank_leaks on arbitrary suppression patterns."""
    months = MONTHS[:data.draw(st.integers(1, 3))]
    cols = SEXES[:data.draw(st.integers(1, 4))]
    multi = data.draw(st.booleans())
    dim = "exploitation_type" if multi else "sex"
    hide = data.draw(st.lists(st.booleans(), min_size=len(months) * (len(cols) + 1) + len(cols) + 1,
                              max_size=len(months) * (len(cols) + 1) + len(cols) + 1))
    flags = iter(hide)
    table = Table(dim, months, cols,
                  {(m, c): None if next(flags) else 5 for m in months for c in cols},
                  {m: None if next(flags) else 9 for m in months},
                  {c: None if next(flags) else 7 for c in cols},
                  None if next(flags) else 99, additive_rows=not multi)
    values, sums = equations({"tables": [table.to_json()]})
    assert {_test_key(k) for k in derivable(table)} == rank_leaks(values, sums)
    assert {_test_key(k) for k in derivable(table)} >= single_unknown_leaks(values, sums) & {
        k for k, v in values.items() if v is None}


@PROPERTY
@given(records_strategy, st.integers(min_value=2, max_value=15), st.sampled_from(("quarter", "year")))
def test_quarter_and_year_reports_are_protected_and_true(records: list[StatsRecord], threshold: int,
                                                         interval: str) -> None:
    """Rows by quarter or year: the same invariants, cross-tab margins and minor sums included."""
    doc = check_report(records, threshold, interval=interval, months=("2025-12", "2026-01"))
    assert doc["interval"] == interval
    assert doc["periods"] == (["2025-Q4", "2026-Q1"] if interval == "quarter" else ["2025", "2026"])


@PROPERTY
@given(st.data())
def test_no_suppressed_cross_tab_cell_follows_from_its_margins(data: st.DataObject) -> None:
    """Random sex x age tables (the counts drawn per cell, not per record): no suppressed
    cell of the cross-tab, nor any other suppressed value, can be derived by subtraction
    or any combination of the published numbers of the same answer, the sex and age
    totals (the cross-tab's margins) and the minor sums included."""
    sexes = data.draw(st.lists(st.sampled_from(SEXES), min_size=1, max_size=4, unique=True))
    ages = data.draw(st.lists(st.sampled_from(AGE_CATEGORIES), min_size=1, max_size=6, unique=True))
    records = []
    for sex in sexes:
        for age in ages:
            n = data.draw(st.integers(min_value=0, max_value=30))
            month = data.draw(st.sampled_from(MONTHS))
            records += [rec(month, sex, age)] * n
    threshold = data.draw(st.integers(min_value=2, max_value=15))
    doc = check_report(records, threshold, dimensions=("sex", "age_band", "minor"), interval="quarter")
    cross = next(t for t in doc["tables"] if t["dimension"] == "sex_by_age_band")
    assert cross["rows_by"] == "sex" and cross["columns_by"] == "age_band"
    published = [c["count"] for r in cross["rows"] for c in r["cells"].values() if not c["suppressed"]]
    assert all(v == 0 or v >= threshold for v in published)


@PROPERTY
@given(st.lists(st.builds(SentRecord, month=st.sampled_from(MONTHS),
                          recipient=st.sampled_from(("NG-NAPTIP", "ML-DNPEF", "NG-POLICE")),
                          outcome=st.sampled_from(OUTCOMES)), max_size=80),
       st.integers(min_value=1, max_value=15), st.sampled_from(("month", "quarter")))
def test_sent_reports_are_protected_and_true(records: list[SentRecord], threshold: int, interval: str) -> None:
    doc = check_report(records, threshold, dimensions=("recipient", "outcome"), interval=interval)
    assert [t["dimension"] for t in doc["tables"]] == ["month", "recipient", "outcome"]


@PROPERTY
@given(records_strategy)
def test_reports_do_not_depend_on_record_order(records: list[StatsRecord]) -> None:
    assert aggregate(records).to_json() == aggregate(list(reversed(records))).to_json()


@PROPERTY
@given(records_strategy.filter(lambda r: len(r) > 0), st.integers(min_value=1, max_value=15))
def test_one_dimension_alone_is_protected(records: list[StatsRecord], threshold: int) -> None:
    for dim in ("sex", "exploitation_type", "nationality"):
        check_report(records, threshold, dimensions=(dim,))


# --- GET /stats ---------------------------------------------------------------------------

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=timezone.utc)


class FakeGateway:
    """What the /stats handler and the auth middleware use of a Gateway."""

    def __init__(self, items: list[tuple[datetime, dict[str, Any]]]) -> None:
        self.items = items
        self.audits: list[tuple[str, str, dict[str, Any]]] = []
        self.metrics = Metrics()
        self.asked: list[str] = []
        # ANLTP-TIM mostly sends: 30 to NAPTIP and 12 to DNPEF in the first quarter, 5 in April.
        self.sent = ([(datetime(2026, 1 + i % 3, 1 + i % 28, tzinfo=timezone.utc), "NG-NAPTIP",
                       ("accepted", "delivered", "declined")[i % 3]) for i in range(30)]
                     + [(datetime(2026, 2, 1 + i, tzinfo=timezone.utc), "ML-DNPEF", "sent") for i in range(12)]
                     + [(datetime(2026, 4, 1 + i, tzinfo=timezone.utc), "NG-NAPTIP", "queued") for i in range(5)])

    def clock(self) -> datetime:
        return NOW

    async def received_payloads(self, message_type: str, *, since: datetime, until: datetime):  # noqa: ANN201
        self.asked.append(message_type)
        for item in self.items:
            if since <= item[0] < until:  # the service filters on the inbox row, before decrypting
                yield item

    async def sent_requests(self):  # noqa: ANN201 - an async iterator
        self.asked.append("sent")
        for at, recipient, status in self.sent:
            yield at, recipient, status

    async def audit_event(self, event: str, actor: Any, detail: dict[str, Any], **_: Any) -> None:
        self.audits.append((event, actor.role, detail))


def _items() -> list[tuple[datetime, dict[str, Any]]]:
    base = load_example("referral.request")
    minor = load_example("referral.request", "minor_guardian")
    items = []
    for day in range(1, 26):
        items.append((datetime(2026, 2, day, tzinfo=timezone.utc), base))
        items.append((datetime(2026, 3, day, tzinfo=timezone.utc), minor if day <= 4 else base))
    items.append((datetime(2026, 4, 2, tzinfo=timezone.utc), minor))  # the current month: never counted
    return items


async def _client(**overrides: Any) -> tuple[TestClient, FakeGateway, dict[str, str]]:
    tokens = {role: secrets.token_urlsafe(16) for role in ROLES}
    users = tuple(User(f"{r}.test", r, hashlib.sha256(t.encode()).hexdigest()) for r, t in tokens.items())
    conf = Settings(agency_id="NE-ANLTP-TIM", demo_keys=True, users=users, **overrides)
    gateway = FakeGateway(_items())
    app = web.Application(middlewares=[error_middleware, auth_middleware(users)])
    app[GATEWAY] = gateway  # type: ignore[assignment]
    app[SETTINGS] = conf
    app.add_routes(stats_api.routes)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, gateway, tokens


async def _get(client: TestClient, token: str | None, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.get("/stats", params=params, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_api_answers_complete_months_and_audits() -> None:
    client, gateway, tokens = await _client()
    try:
        status, body = await _get(client, tokens["supervisor"])
        assert status == 200, body
        assert gateway.asked == ["referral.request"]
        # From the first month wholly within the 365-day retention to the last complete one.
        assert body["period"] == {"from": "2025-05", "to": "2026-03"} and len(body["months"]) == 11
        assert body["threshold"] == 11 and body["records"] == {"count": 50, "suppressed": False}
        assert [t["dimension"] for t in body["tables"]] == [
            "month", "sex", "age_band", "minor", "nationality", "referral_source", "exploitation_type", "acts",
            "means", "sex_by_age_band"]
        assert body["direction"] == "received" and body["interval"] == "month"
        age = {t["dimension"]: t for t in body["tables"]}["age_band"]
        march = age["rows"][-1]["cells"]
        assert march["9-17"] == {"count": None, "suppressed": True}  # 4 minors
        assert march["21-23"] == {"count": None, "suppressed": True}  # their complement (21)
        assert is_protected([Table.from_json(t) for t in body["tables"]])
        assert gateway.audits == [("stats.read", "supervisor",
                                   {"threshold": 11, "month_from": "2025-05", "month_to": "2026-03",
                                    "direction": "received", "interval": "month"})]
        text = json.dumps(body)
        assert "Amaka" not in text and "Testfixture" not in text
        status, body = await _get(client, tokens["auditor"], month_from="2026-03", month_to="2026-03")
        assert status == 200 and body["months"] == ["2026-03"] and body["records"]["count"] == 25
        status, body = await _get(client, tokens["auditor"], month_from="2025-12", month_to="2026-01")
        assert status == 200 and body["records"]["count"] == 0 and body["months"] == ["2025-12", "2026-01"]
    finally:
        await client.close()


async def test_api_roles() -> None:
    client, _, tokens = await _client()
    try:
        assert (await _get(client, None))[0] == 401
        for role in ("caseworker", "admin"):
            status, body = await _get(client, tokens[role])
            assert status == 403 and body["error"] == "forbidden"
        assert (await _get(client, tokens["auditor"]))[0] == 200
    finally:
        await client.close()


async def test_api_refuses_lower_thresholds_and_bad_months() -> None:
    client, _, tokens = await _client(stats_min_cell=15)
    token = tokens["supervisor"]
    try:
        status, body = await _get(client, token)
        assert status == 200 and body["threshold"] == 15
        status, body = await _get(client, token, threshold="11")
        assert status == 400 and body["error"] == "invalid_query" and "at least 15" in body["detail"]
        status, body = await _get(client, token, threshold="20")
        assert status == 200 and body["threshold"] == 20
        for params, words in (
            ({"threshold": "x"}, "integer"),
            ({"month_to": "2026-04"}, "last complete month"),
            ({"month_from": "2026-03", "month_to": "2026-02"}, "after"),
            ({"month_from": "2026-13"}, "YYYY-MM"),
            ({"month_from": "2025-04"}, "at least 2025-05"),
            ({"month_to": "2025-04"}, "month_to must be at least 2025-05"),
        ):
            status, body = await _get(client, token, **params)
            assert status == 400 and words in body["detail"], (params, body)
    finally:
        await client.close()


async def test_api_higher_threshold_shows_nothing_new() -> None:
    client, _, tokens = await _client()
    try:
        low = equations((await _get(client, tokens["supervisor"]))[1])[0]
        for threshold in ("12", "20", "26"):
            high = equations((await _get(client, tokens["supervisor"], threshold=threshold))[1])[0]
            assert {k: v for k, v in high.items() if v is not None}.items() <= {
                k: v for k, v in low.items() if v is not None}.items()
    finally:
        await client.close()


async def test_api_retention_bounds_the_period() -> None:
    client, _, tokens = await _client(retention_days={"referral.request": 40})
    try:  # 2026-04-10 minus 40 days is 2026-03-01: March may lose referrals any day now
        status, body = await _get(client, tokens["supervisor"])
        assert status == 400 and "retention" in body["detail"]
    finally:
        await client.close()
    client, _, tokens = await _client(retention_days={"referral.request": 36500})
    try:
        status, body = await _get(client, tokens["supervisor"], month_from="1950-01")
        assert status == 400 and "at most 240 months" in body["detail"]
        status, body = await _get(client, tokens["supervisor"], month_from="2026-02")
        assert status == 200 and body["records"]["count"] == 50
    finally:
        await client.close()


async def test_api_sent_referrals_by_recipient_and_outcome() -> None:
    client, gateway, tokens = await _client()
    try:
        status, body = await _get(client, tokens["supervisor"], direction="sent", interval="quarter")
        assert status == 200, body
        assert gateway.asked == ["sent"]  # no payload read: the sender cannot open what it sealed
        assert body["direction"] == "sent" and body["interval"] == "quarter"
        # No retention bound for outbox rows: the last 12 complete months, widened to whole quarters.
        assert body["period"] == {"from": "2025-04", "to": "2026-03"}
        assert body["periods"] == ["2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1"]
        assert [t["dimension"] for t in body["tables"]] == ["month", "recipient", "outcome"]
        assert body["records"]["count"] == 42  # April's 5 are in the current month
        recipient = body["tables"][1]
        assert recipient["categories"] == ["ML-DNPEF", "NG-NAPTIP"]
        assert recipient["column_totals"]["NG-NAPTIP"]["count"] == 30
        assert recipient["column_totals"]["ML-DNPEF"]["count"] == 12
        outcome = body["tables"][2]
        assert outcome["categories"] == ["pending", "more_info_requested", "accepted", "declined"]
        assert outcome["column_totals"]["pending"]["count"] == 22  # 10 delivered + 12 sent
        assert outcome["column_totals"]["accepted"]["suppressed"]  # 10 < 11
        assert is_protected([Table.from_json(t) for t in body["tables"]])
        assert gateway.audits[-1][2] == {"threshold": 11, "month_from": "2025-04", "month_to": "2026-03",
                                         "direction": "sent", "interval": "quarter"}
    finally:
        await client.close()


async def test_api_quarter_and_year_periods() -> None:
    client, _, tokens = await _client(retention_days={"referral.request": 800})
    token = tokens["supervisor"]
    try:
        status, body = await _get(client, token, interval="quarter")
        assert status == 200, body
        # 800 days before 2026-04-10 is 2024-01-31: from 2024-02, widened forward to 2024-Q2.
        assert body["period"] == {"from": "2024-04", "to": "2026-03"} and len(body["periods"]) == 8
        assert body["tables"][0]["rows"][-1] == {"quarter": "2026-Q1", "total": {"count": 50, "suppressed": False}}
        status, body = await _get(client, token, interval="year")
        assert status == 200 and body["period"] == {"from": "2025-01", "to": "2025-12"}
        assert body["periods"] == ["2025"] and body["records"]["count"] == 0
        status, body = await _get(client, token, interval="quarter", month_from="2026-01", month_to="2026-03")
        assert status == 200 and body["records"]["count"] == 50 and body["periods"] == ["2026-Q1"]
        for params, words in (
            ({"interval": "quarter", "month_from": "2026-02"}, "first month of a quarter"),
            ({"interval": "year", "month_to": "2026-03"}, "last month of a year"),
            ({"interval": "week"}, "one of: month, quarter, year"),
            ({"direction": "both"}, "one of: received, sent"),
        ):
            status, body = await _get(client, token, **params)
            assert status == 400 and words in body["detail"], (params, body)
    finally:
        await client.close()
    client, _, tokens = await _client()
    try:  # 365 days: no calendar year is ever wholly retained; quarters are
        status, body = await _get(client, tokens["supervisor"], interval="year")
        assert status == 400 and "no complete year" in body["detail"]
        status, body = await _get(client, tokens["supervisor"], interval="quarter")
        assert status == 200 and body["period"] == {"from": "2025-07", "to": "2026-03"}
    finally:
        await client.close()


def test_month_helpers() -> None:
    assert period_of("2026-03", "quarter") == "2026-Q1" and period_of("2026-10", "year") == "2026"
    # docs/stats.md: a calendar year is answerable in January with 397 days of retention, never with 365.
    january = datetime(2026, 1, 31, 23, 0, tzinfo=timezone.utc)
    assert stats_api.period({}, january, 397, "year") == ("2025-01", "2025-12")
    with pytest.raises(stats_api.ApiError, match="no complete year"):
        stats_api.period({}, datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc), 365, "year")
    assert stats_api.period({}, january, None, "year") == ("2025-01", "2025-12")  # sent: no retention bound
    assert stats_api.period({"month_to": "2024-06"}, january, None) == ("2023-07", "2024-06")  # 12 months to month_to
    assert stats_api.previous_month(datetime(2026, 1, 5, tzinfo=timezone.utc)) == "2025-12"
    assert stats_api.previous_month(NOW) == "2026-03"
    assert stats_api.first_retained_month(NOW, 365) == "2025-05"
    assert stats_api.first_retained_month(datetime(2026, 1, 31, tzinfo=timezone.utc), 31) == "2026-01"


async def test_received_payloads_of_a_real_gateway_feed_the_statistics(tmp_path: Path) -> None:
    """End to end: referrals sent NE → NG are counted from NG's store, and nothing else."""
    async with gateway_pair(tmp_path) as (ne, ng):
        actor = Actor("caseworker.ne", "caseworker")
        variants = (None, "all_purposes", "minor_guardian")
        for i, variant in enumerate(variants):
            await ne.submit("referral.request", load_example("referral.request", variant), recipient=NIGERIA,
                            case_ref=f"ne-ng-statscase{i:06d}", actor=actor)

        async def arrived() -> bool:
            return len(await ng.list_inbox()) >= len(variants)
        await eventually(arrived)
        records = [StatsRecord.from_payload(p, at) async for at, p in ng.received_payloads("referral.request")]
        today = ng.clock().date()  # all_purposes: born 2001-07-15, banded on the receipt date
        born = today.year - 2001 - ((today.month, today.day) < (7, 15))
        assert sorted(r.age_band for r in records) == sorted(["21-23", "9-17", band_of_years(born)])
        assert {r.month for r in records} == {ng.clock().strftime("%Y-%m")}
        doc = aggregate(records, threshold=1).to_json()
        assert doc["records"]["count"] == 3 and "Testfixture" not in json.dumps(doc)


async def test_sent_requests_of_a_real_gateway(tmp_path: Path) -> None:
    """NE sends three referrals to NG; NE counts them from its outbox metadata alone, and a
    consent withdrawal for one case takes that referral out of the count."""
    async with gateway_pair(tmp_path) as (ne, ng):
        actor = Actor("caseworker.ne", "caseworker")
        variants = (None, "all_purposes", "minor_guardian")
        for i, variant in enumerate(variants):
            await ne.submit("referral.request", load_example("referral.request", variant), recipient=NIGERIA,
                            case_ref=f"ne-ng-sentcase{i:06d}", actor=actor)

        async def arrived() -> bool:
            return len(await ng.list_inbox()) >= len(variants)
        await eventually(arrived)
        sent = [item async for item in ne.sent_requests()]
        assert [r for _, r, _ in sent] == [NIGERIA] * 3
        records = [SentRecord.from_outbox(at, recipient, status) for at, recipient, status in sent]
        assert {r.outcome for r in records} == {"pending"}
        withdrawal = {"withdrawn_at": ne.clock().strftime("%Y-%m-%dT%H:%M:%SZ"), "decision_maker": "self",
                      "scope": "all_purposes"}
        await ne.withdraw_consent("ne-ng-sentcase000001", withdrawal, actor=actor)
        assert len([item async for item in ne.sent_requests()]) == 2
        doc = aggregate(records, threshold=1, dimensions=("recipient", "outcome")).to_json()
        assert doc["tables"][1]["column_totals"][NIGERIA]["count"] == 3


def test_v2_payloads_count_under_the_v2_categories() -> None:
    """The report's categories are v2's (HTCDS 2.0 plus the v1 extras): a v2 type is counted as spelled."""
    payload = load_example("referral.request", "criminal_justice_cooperation", "2")
    payload["exploitation"] = [{"type": "servitude", "intended": False},
                               {"type": "child_labour", "intended": False},
                               {"type": "forced_labour", "intended": True}]
    record = StatsRecord.from_payload(payload, datetime(2026, 4, 6, tzinfo=timezone.utc))
    assert record.exploitation_types == {"servitude", "child_labour", "forced_labour"}
    assert (record.sex, record.age_band, record.nationality) == ("male", "21-23", "NG")


@pytest.mark.parametrize(("query", "retention", "interval", "english"), [
    ({"month_from": "2026-02"}, 800, "quarter", "first month of a quarter"),
    ({"month_to": "2026-02"}, 800, "year", "last month of a year"),
    ({}, 365, "year", "no complete year"),
    ({"month_to": "2020-01"}, 800, "month", "month_to must be at least"),
])
def test_period_checks_answer_in_french(query: dict[str, str], retention: int, interval: str, english: str) -> None:
    from gateway.i18n import translate
    with pytest.raises(stats_api.ApiError) as refused:
        stats_api.period(query, datetime(2026, 4, 10, tzinfo=timezone.utc), retention, interval)
    detail = refused.value.detail
    assert english in translate(detail, "en")
    french = translate(detail, "fr")
    assert english not in french and ("paramètre de requête" in french or "aucune période" in french)
