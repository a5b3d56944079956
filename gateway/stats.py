"""Aggregate statistics of referrals received and sent, with small-cell suppression. Pure: no I/O
(the minimal-data tables are read once through gateway.schema's cache).

A coordination body gets, per month, quarter or year, how many persons were referred by
sex, age band, minor/adult, nationality, referral source, exploitation type, acts and
means, plus a sex × age band cross-tab; an agency that mostly sends gets its sent
referrals by recipient and outcome. Never a count small enough to point at a person.
See docs/stats.md for what is counted and what an attacker can and cannot derive.

How it works:

* :meth:`StatsRecord.from_payload` keeps a few coarse fields of a v1 or v2
  ``referral.request`` and nothing else (no names, no dates, no places);
  :class:`SentRecord` keeps the month, recipient agency and outcome of a sent one (the
  sender cannot decrypt what it sealed to the recipient).
* :func:`aggregate` counts them into linked tables (period × category for each dimension,
  the one-way period table, the cross-tab) and suppresses: **primary**, every count ``0 < n <
  threshold`` (cells and totals); **complementary**, more counts, until no suppressed
  value can be recomputed from the published ones and the tables' sums, nor a small count
  of the referrals outside the acts/means population (period total minus population total).
* :func:`is_protected` is the attacker: it solves the published tables' linear equations
  and says whether any suppressed value comes out exactly.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cache
from math import gcd
from typing import Any

from gateway.directory import AGENCY_ID
from gateway.errors import GatewayError
from gateway.schema import SCHEMA_VERSION, SCHEMA_VERSIONS, minimal_data_table, payload_version

DEFAULT_THRESHOLD = 11

# --- categories ---------------------------------------------------------------------------
# The schema's enums (schemas/v<N>/common.schema.json), copied so this module does no I/O;
# tests/test_stats.py fails if they drift apart. Categories are v2's: v1 payloads are
# counted in v2 words (gateway.schema_versions' code tables), so one report reads the same
# whatever version each referral came in.

UNKNOWN = "unknown"
SEXES = ("female", "male", "other", "unknown")
#: The schema's age bands, with their lower bounds in years (the last is open: 48+).
AGE_BANDS = ("0-8", "9-17", "18-20", "21-23", "24-26", "27-29", "30-38", "39-47", "48+")
_BAND_FLOORS = (0, 9, 18, 21, 24, 27, 30, 39, 48)
#: No band, years or date of birth, but the minor flag: the schema requires it and senders
#: presume minority when in doubt, so "a child of unknown age" is a fact worth counting
#: (child victims are the first thing coordination bodies ask about). A false flag says
#: just as deliberately "an adult", so it gets its own category too; ``unknown`` is left
#: for a payload with no usable age at all (never a schema-valid one).
MINOR_UNSPECIFIED = "under_18_unspecified"
ADULT_UNSPECIFIED = "18_plus_unspecified"
AGE_CATEGORIES = (*AGE_BANDS, MINOR_UNSPECIFIED, ADULT_UNSPECIFIED, UNKNOWN)
#: Minor or adult: a roll-up of the age category (so the two tables agree exactly, and the
#: published tables say which age columns add up to which minor column).
MINOR_CATEGORIES = ("minor", "adult", UNKNOWN)
MINOR_OF_AGE: dict[str, tuple[str, ...]] = {
    "minor": ("0-8", "9-17", MINOR_UNSPECIFIED),
    "adult": ("18-20", "21-23", "24-26", "27-29", "30-38", "39-47", "48+", ADULT_UNSPECIFIED),
    UNKNOWN: (UNKNOWN,),
}
#: v2's exploitation types (HTCDS 2.0 plus the v1 values HTCDS lacks).
EXPLOITATION_TYPES = (
    "forced_labour", "sexual_exploitation", "child_labour", "forced_marriage", "servitude",
    "forced_military_by_non_state_actors", "organ_removal", "forced_begging", "forced_adoption",
    "surrogacy", "other", "domestic_servitude", "forced_criminal_activity", "undetermined",
)
#: The v1 values spelled differently in v2 (as gateway.schema_versions.EXPLOITATION_TYPE_V1_TO_V2).
V1_EXPLOITATION_TYPES = {"slavery_servitude": "servitude", "child_soldiering": "forced_military_by_non_state_actors"}
#: A request without such items (its purposes do not allow them, or none were given):
#: counted here so that every person of the table's population appears in it at least once.
NOT_RECORDED = "not_recorded"
EXPLOITATION_CATEGORIES = (*EXPLOITATION_TYPES, NOT_RECORDED)
#: v2's referral sources (v1's plus the judicial actors and faith-based organisations).
REFERRAL_SOURCES = (
    "law_enforcement", "state_social_services", "identified_in_centre", "third_person", "iom", "ngo",
    "un_agency", "foreign_authority", "self_referral", "juvenile_judge", "prosecutor", "court",
    "faith_based_organisation", "community_leader",
)
REFERRAL_SOURCE_CATEGORIES = (*REFERRAL_SOURCES, UNKNOWN)
ACTS = ("recruitment", "transportation", "transfer", "harbouring", "receipt")
MEANS = ("threat_or_use_of_force", "coercion", "abduction", "fraud", "deception", "abuse_of_power",
         "abuse_of_vulnerability", "giving_payments_or_benefits")
ACT_CATEGORIES = (*ACTS, NOT_RECORDED)
MEANS_CATEGORIES = (*MEANS, NOT_RECORDED)
#: Restricted fields counted only from referrals whose purposes may carry them (by the
#: minimal-data table of the payload's version): dimension → payload field.
RESTRICTED_FIELDS = {"acts": "acts", "means": "means"}

#: What a sent referral is, as far as the sender knows (its outbox status, coarsened):
#: no decision yet (queued, sent, delivered or read), or the recipient's answer.
OUTCOMES = ("pending", "more_info_requested", "accepted", "declined")
OUTCOME_OF_STATUS = {"queued": "pending", "sent": "pending", "delivered": "pending", "read": "pending",
                     "more_info_requested": "more_info_requested", "accepted": "accepted", "declined": "declined"}

RECEIVED_DIMENSIONS = ("sex", "age_band", "minor", "nationality", "referral_source", "exploitation_type",
                       "acts", "means")
SENT_DIMENSIONS = ("recipient", "outcome")
DIMENSIONS = RECEIVED_DIMENSIONS + SENT_DIMENSIONS
DEFAULT_DIMENSIONS = RECEIVED_DIMENSIONS
#: Dimensions where one person may fall in several categories.
MULTI_VALUED = frozenset({"exploitation_type", "acts", "means"})
#: Dimensions counted over part of the records only (those whose purposes carry the field).
RESTRICTED = frozenset(RESTRICTED_FIELDS)
#: Cross-tabs over the whole period: name → (row dimension, column dimension).
CROSS_TABS = {"sex_by_age_band": ("sex", "age_band")}
DEFAULT_CROSS_TABS = tuple(CROSS_TABS)
MONTH_TABLE = "month"
#: Row units: a month, a calendar quarter (``2026-Q1``) or a calendar year (``2026``).
INTERVALS = ("month", "quarter", "year")

_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class StatsError(GatewayError, ValueError):
    """A statistics request that cannot be computed as asked."""

    code = "stats_invalid"


class InvalidThresholdError(StatsError):
    """The minimum cell size is not an integer of at least 1."""

    code = "invalid_threshold"


class UnknownDimensionError(StatsError):
    """A dimension that is not one of :data:`DIMENSIONS`."""

    code = "unknown_dimension"


def check_threshold(threshold: object, *, name: str = "threshold") -> int:
    """``threshold`` if it is an int ≥ 1, else :class:`InvalidThresholdError`."""
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise InvalidThresholdError(f"{name} must be an integer, not {type(threshold).__name__}")
    if threshold < 1:
        raise InvalidThresholdError(f"{name} must be at least 1, not {threshold}")
    return threshold


# --- records ------------------------------------------------------------------------------


def month_of(moment: datetime) -> str:
    """``YYYY-MM`` of an aware datetime, in UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: received_at must be timezone-aware")
    return moment.astimezone(timezone.utc).strftime("%Y-%m")


def check_month(month: object, *, name: str = "month") -> str:
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise StatsError(f"{name} must be a month YYYY-MM")
    return month


def month_range(first: str, last: str) -> tuple[str, ...]:
    """Every month from ``first`` to ``last`` inclusive (empty if ``first`` is later)."""
    year, month = map(int, check_month(first, name="first").split("-"))
    end = check_month(last, name="last")
    out = []
    while (current := f"{year:04d}-{month:02d}") <= end:
        out.append(current)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(out)


def check_interval(interval: object) -> str:
    """``interval`` if it is one of :data:`INTERVALS`."""
    if interval not in INTERVALS:
        raise StatsError(f"interval must be one of {list(INTERVALS)}")
    return str(interval)


def period_of(month: str, interval: str) -> str:
    """The row label of ``month``: itself, its quarter (``2026-Q1``) or its year (``2026``)."""
    check_month(month)
    if check_interval(interval) == "quarter":
        return f"{month[:4]}-Q{(int(month[5:]) - 1) // 3 + 1}"
    return month[:4] if interval == "year" else month


def is_period_start(month: str, interval: str) -> bool:
    """True if ``month`` is the first month of a quarter or year (always for months)."""
    return period_of(month, interval) != period_of(shift_month(month, -1), interval)


def shift_month(month: str, by: int) -> str:
    """The month ``by`` months after ``month`` (before it if negative)."""
    index = int(check_month(month)[:4]) * 12 + int(month[5:]) - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def band_of_years(years: int) -> str:
    """The schema age band of an age in whole years."""
    if years < 0:
        raise ValueError("age in years must not be negative")
    index = max(i for i, floor in enumerate(_BAND_FLOORS) if years >= floor)
    return AGE_BANDS[index]


def _years_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _age_category(age: object, on: date) -> str:
    # Band, years or date of birth (the schema allows exactly one), then the minor flag.
    if not isinstance(age, Mapping):
        return UNKNOWN
    band = age.get("band")
    if band in AGE_BANDS:
        return str(band)
    years = age.get("years")
    if isinstance(years, int) and not isinstance(years, bool) and 0 <= years <= 120:
        return band_of_years(years)
    born = age.get("date_of_birth")
    if isinstance(born, str):
        try:
            years = _years_on(date.fromisoformat(born), on)
        except ValueError:
            years = -1
        if 0 <= years <= 120:
            return band_of_years(years)
    minor = age.get("minor")
    if minor is True:
        return MINOR_UNSPECIFIED
    if minor is False:
        return ADULT_UNSPECIFIED
    return UNKNOWN


@cache
def carrying_purposes(field_name: str, version: str) -> frozenset[str]:
    """The purposes whose minimal data (schemas/v<version>/minimal-data.json) allows ``field_name``."""
    table = minimal_data_table(version)
    return frozenset(p for p, fields in table["allowed_by_purpose"].items() if field_name in fields)


def _codes(items: object, allowed: Sequence[str], renamed: Mapping[str, str] | None = None) -> frozenset[str]:
    # Only values of the enum: free text never becomes a category name.
    out = set()
    for item in items if isinstance(items, list) else ():
        value = renamed.get(item, item) if renamed and isinstance(item, str) else item
        if isinstance(value, str) and value in allowed:
            out.add(value)
    return frozenset(out)


@dataclass(frozen=True)
class StatsRecord:
    """The only facts about one referred person that statistics keep."""

    month: str  # YYYY-MM the gateway received the referral, UTC
    sex: str
    age_band: str
    nationality: str  # ISO 3166-1 alpha-2, or "unknown"
    exploitation_types: frozenset[str] = field(default_factory=frozenset)  # empty: not recorded
    referral_source: str = UNKNOWN
    #: None: the referral's purposes do not carry acts (it is not in the acts table at all);
    #: empty: they do, but none was given.
    acts: frozenset[str] | None = None
    means: frozenset[str] | None = None

    def __post_init__(self) -> None:
        check_month(self.month)
        if self.sex not in SEXES:
            raise StatsError(f"sex must be one of {list(SEXES)}")
        if self.age_band not in AGE_CATEGORIES:
            raise StatsError(f"age_band must be one of {list(AGE_CATEGORIES)}")
        if self.nationality != UNKNOWN and not _COUNTRY.fullmatch(self.nationality):
            raise StatsError("nationality must be a two-letter country code or 'unknown'")
        if not isinstance(self.exploitation_types, frozenset) or not self.exploitation_types <= set(EXPLOITATION_TYPES):
            raise StatsError(f"exploitation_types must be a frozenset of {list(EXPLOITATION_TYPES)}")
        if self.referral_source not in REFERRAL_SOURCE_CATEGORIES:
            raise StatsError(f"referral_source must be one of {list(REFERRAL_SOURCE_CATEGORIES)}")
        for name, allowed in (("acts", ACTS), ("means", MEANS)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, frozenset) or not value <= set(allowed)):
                raise StatsError(f"{name} must be None or a frozenset of {list(allowed)}")

    @property
    def minor(self) -> str:
        """``minor``, ``adult`` or ``unknown``: which side of 18 the age category is on."""
        return next(k for k, ages in MINOR_OF_AGE.items() if self.age_band in ages)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], received_at: datetime) -> StatsRecord:
        """The statistics record of a v1 or v2 ``referral.request`` payload received at ``received_at``.

        The month is the gateway's receipt month, not the identification date: every
        received request has one (``identification.identified_on`` is optional), the
        gateway's own clock sets it (a sender cannot place a person in another month), and
        a month closes for good once it is over, so published months do not change later.
        Ages are banded on the receipt date. A missing or unrecognised value counts as
        ``unknown``: a value outside the enums is never copied into a report. Acts and
        means are kept only when one of the request's purposes may carry them under its
        version's minimal-data table (v1: assistance; v2: criminal_justice_cooperation).
        """
        month = month_of(received_at)
        version = payload_version(payload)
        version = version if version in SCHEMA_VERSIONS else SCHEMA_VERSION
        person = payload.get("person")
        person = person if isinstance(person, Mapping) else {}
        sex = person.get("sex")
        nationality = person.get("nationality")
        items = payload.get("exploitation")
        types = _codes([item.get("type") for item in (items if isinstance(items, list) else ())
                        if isinstance(item, Mapping)], EXPLOITATION_TYPES, V1_EXPLOITATION_TYPES)
        identification = payload.get("identification")
        source = identification.get("referral_source") if isinstance(identification, Mapping) else None
        purposes = payload.get("purposes")
        purposes = {p for p in purposes if isinstance(p, str)} if isinstance(purposes, list) else set()
        restricted: dict[str, frozenset[str] | None] = {}
        for name, allowed in (("acts", ACTS), ("means", MEANS)):
            carried = purposes & carrying_purposes(RESTRICTED_FIELDS[name], version)
            restricted[name] = _codes(payload.get(name), allowed) if carried else None
        return cls(
            month=month,
            sex=sex if sex in SEXES else UNKNOWN,
            age_band=_age_category(person.get("age"), received_at.astimezone(timezone.utc).date()),
            nationality=nationality if isinstance(nationality, str) and _COUNTRY.fullmatch(nationality) else UNKNOWN,
            exploitation_types=types,
            referral_source=source if source in REFERRAL_SOURCES else UNKNOWN,
            acts=restricted["acts"],
            means=restricted["means"],
        )

    def categories(self, dimension: str) -> frozenset[str]:
        """The categories this person counts in for ``dimension`` (several for exploitation,
        acts and means; none when the referral is outside a restricted dimension's population)."""
        if dimension == "exploitation_type":
            return self.exploitation_types or frozenset({NOT_RECORDED})
        if dimension in RESTRICTED:
            value = getattr(self, dimension)
            return frozenset() if value is None else (value or frozenset({NOT_RECORDED}))
        if dimension in SENT_DIMENSIONS:
            raise UnknownDimensionError(f"{dimension} is a dimension of sent referrals")
        return frozenset({getattr(self, dimension)})


@dataclass(frozen=True)
class SentRecord:
    """What statistics keep of one sent ``referral.request``: its outbox metadata only.

    The outbox holds the envelope sealed to the recipient's key: the sender cannot decrypt
    it, so nothing about the person is known here, by design."""

    month: str  # YYYY-MM the referral was submitted (queued in the outbox), UTC
    recipient: str  # the recipient agency id
    outcome: str

    def __post_init__(self) -> None:
        check_month(self.month)
        if not isinstance(self.recipient, str) or not AGENCY_ID.fullmatch(self.recipient):
            raise StatsError("recipient must be an agency id")
        if self.outcome not in OUTCOMES:
            raise StatsError(f"outcome must be one of {list(OUTCOMES)}")

    @classmethod
    def from_outbox(cls, created_at: datetime, recipient: str, status: str) -> SentRecord:
        """The record of an outbox row (a status outside OUTCOME_OF_STATUS is refused)."""
        if status not in OUTCOME_OF_STATUS:
            raise StatsError("status must be an outgoing status other than failed")
        return cls(month_of(created_at), recipient, OUTCOME_OF_STATUS[status])

    def categories(self, dimension: str) -> frozenset[str]:
        """The one category of this referral for ``dimension`` (recipient or outcome)."""
        if dimension not in SENT_DIMENSIONS:
            raise UnknownDimensionError(f"{dimension} is not a dimension of sent referrals")
        return frozenset({getattr(self, dimension)})


AnyRecord = StatsRecord | SentRecord


# --- published tables ---------------------------------------------------------------------

#: A value in the linked tables: ("month", p) a period total (shared by every table; p is a
#: month, quarter or year label), ("total",) the grand total (shared), (dimension, p, c) a
#: cell, (dimension, "*", c) a column total, ("base", b, p) / ("base", b) the period and
#: grand totals of a restricted table's population b. A Line says: the value of its first
#: key is the sum of the others.
Key = tuple[str, ...]
Line = tuple[Key, tuple[Key, ...]]
GRAND: Key = ("total",)


def _month_key(month: str) -> Key:
    return ("month", month)


@dataclass(frozen=True)
class Table:
    """One published table; ``None`` is a suppressed value.

    ``rows_by`` is the interval of the rows (``month``, ``quarter``, ``year``) or, for a
    cross-tab over the whole period, the dimension of the rows (``sex``); then
    ``columns_of`` is the dimension of the columns, the row totals are that row
    dimension's column totals and the column totals the column dimension's, the same
    values as in those tables. For the period table ``columns`` is empty and the counts are
    the row totals. For ``additive_rows=False`` (exploitation type, acts, means) a person
    may count in several columns, so a row's cells do not add up to its total, nor the
    column totals to the grand total; every column still adds up over the periods.
    ``base`` names the population of a restricted table (acts, means: only referrals whose
    purposes carry them): its period totals and grand total are that population's, not
    every record's. ``sums_of`` (minor) says which columns of another dimension's table
    add up to each column: ``(dimension, {column: (its columns...)})``.
    """

    dimension: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], int | None]
    row_totals: Mapping[str, int | None]
    column_totals: Mapping[str, int | None]
    total: int | None
    additive_rows: bool = True
    rows_by: str = "month"
    columns_of: str | None = None
    base: str | None = None
    sums_of: tuple[str, Mapping[str, tuple[str, ...]]] | None = None

    @property
    def is_cross_tab(self) -> bool:
        """True for a cross-tab of two dimensions over the whole period."""
        return self.rows_by not in INTERVALS

    def row_key(self, row: str) -> Key:
        """The key of a row's total."""
        if self.is_cross_tab:
            return (self.rows_by, "*", row)
        return _month_key(row) if self.base is None else ("base", self.base, row)

    def column_key(self, column: str) -> Key:
        """The key of a column's total."""
        return (self.columns_of or self.dimension, "*", column)

    @property
    def total_key(self) -> Key:
        """The key of the table's total."""
        return GRAND if self.base is None else ("base", self.base)

    def values(self) -> Iterator[tuple[Key, int | None]]:
        """Every value of the table under its linked-table key."""
        for row in self.rows:
            yield self.row_key(row), self.row_totals[row]
            for column in self.columns:
                yield (self.dimension, row, column), self.cells[(row, column)]
        for column in self.columns:
            yield self.column_key(column), self.column_totals[column]
        yield self.total_key, self.total

    def lines(self) -> Iterator[Line]:
        """The table's sums: each line's first key is the sum of the others."""
        yield self.total_key, tuple(self.row_key(row) for row in self.rows)
        for column in self.columns:
            yield self.column_key(column), tuple((self.dimension, row, column) for row in self.rows)
        if self.additive_rows and self.columns:
            for row in self.rows:
                yield self.row_key(row), tuple((self.dimension, row, column) for column in self.columns)
            yield self.total_key, tuple(self.column_key(column) for column in self.columns)
        if self.sums_of is not None:
            source, groups = self.sums_of
            for column, parts in groups.items():
                for row in self.rows:
                    yield (self.dimension, row, column), tuple((source, row, part) for part in parts)
                yield self.column_key(column), tuple((source, "*", part) for part in parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dimension": self.dimension, "rows_by": self.rows_by}
        if self.columns_of is not None:
            out["columns_by"] = self.columns_of
        if self.base is not None:
            out["population"] = self.base
        if self.sums_of is not None:
            out["sums_of"] = {"dimension": self.sums_of[0],
                              "categories": {k: list(v) for k, v in self.sums_of[1].items()}}
        if self.columns:
            out["categories"] = list(self.columns)
            out["multi_valued"] = not self.additive_rows
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {self.rows_by: row}
            if self.columns:
                entry["cells"] = {c: _cell_json(self.cells[(row, c)]) for c in self.columns}
            entry["total"] = _cell_json(self.row_totals[row])
            rows.append(entry)
        out["rows"] = rows
        if self.columns:
            out["column_totals"] = {c: _cell_json(self.column_totals[c]) for c in self.columns}
        out["total"] = _cell_json(self.total)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Table:
        """A table back from :meth:`to_json` (what a recipient of the report sees)."""
        columns = tuple(data.get("categories", ()))
        by = data.get("rows_by", "month")
        rows = tuple(r[by] for r in data["rows"])
        sums = data.get("sums_of")
        return cls(
            dimension=data["dimension"],
            rows=rows,
            columns=columns,
            cells={(r[by], c): r["cells"][c]["count"] for r in data["rows"] for c in columns},
            row_totals={r[by]: r["total"]["count"] for r in data["rows"]},
            column_totals={c: data["column_totals"][c]["count"] for c in columns},
            total=data["total"]["count"],
            additive_rows=not data.get("multi_valued", False),
            rows_by=by,
            columns_of=data.get("columns_by"),
            base=data.get("population"),
            sums_of=None if sums is None else (sums["dimension"], {k: tuple(v) for k, v in sums["categories"].items()}),
        )


def _cell_json(value: int | None) -> dict[str, Any]:
    return {"count": value, "suppressed": value is None}


@dataclass(frozen=True)
class StatsReport:
    """Suppressed tables: the period table first, then one per dimension, then the
    cross-tabs. No true counts."""

    threshold: int
    months: tuple[str, ...]
    tables: tuple[Table, ...]
    interval: str = "month"
    periods: tuple[str, ...] = ()

    def table(self, dimension: str) -> Table:
        for table in self.tables:
            if table.dimension == dimension:
                return table
        raise KeyError(dimension)

    @property
    def records(self) -> int | None:
        """The number of records, or None when it is below the threshold (suppressed)."""
        return self.tables[0].total

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "records": _cell_json(self.records),
            "interval": self.interval,
            "months": list(self.months),
            "periods": list(self.periods or self.months),
            "tables": [t.to_json() for t in self.tables],
        }


# --- the attacker -------------------------------------------------------------------------


def _published(tables: Iterable[Table]) -> tuple[dict[Key, int | None], list[Line]]:
    values: dict[Key, int | None] = {}
    lines: dict[Line, None] = {}  # ordered set: the month line is in every table
    for table in tables:
        for key, value in table.values():
            # A value one table publishes is known, whatever another table shows.
            values[key] = value if values.get(key) is None else values[key]
        lines.update(dict.fromkeys(table.lines()))
    return values, list(lines)


def _determined(unknown: Iterable[Key], lines: Iterable[Line]) -> set[Key]:
    """The unknown values the lines pin down exactly, by exact Gaussian elimination.

    A value is determined iff its unit vector is in the row space of the equations
    restricted to the unknowns, i.e. iff the reduced row echelon form has a row with that
    single entry. Only which values are unknown matters, not the published numbers.
    This finds everything the one-unknown-per-line rule finds, and also values pinned down
    only by combining lines (e.g. a cell bridging two blocks of suppressed cells).
    """
    index = {key: i for i, key in enumerate(unknown)}
    pivots: dict[int, dict[int, int]] = {}  # pivot column → row, reduced at every other pivot
    for total, parts in lines:
        row: dict[int, int] = {}
        for key, coefficient in ((total, 1), *((p, -1) for p in parts)):
            if key in index:
                row[index[key]] = row.get(index[key], 0) + coefficient
        for col in [c for c in row if c in pivots]:
            row = _eliminate(row, pivots[col], col)
        if not row:
            continue
        pivot = min(row)
        for col, other in list(pivots.items()):
            if other.get(pivot):
                pivots[col] = _eliminate(other, row, pivot)
        pivots[pivot] = row
    keys = list(index)
    return {keys[col] for col, row in pivots.items() if len(row) == 1}


def _eliminate(row: dict[int, int], by: dict[int, int], col: int) -> dict[int, int]:
    """``row`` with ``col`` cleared by a multiple of ``by``, in integers (no fractions: the
    sums have coefficients ±1 and the rows stay small), divided by the gcd of its entries."""
    a, b = by[col], row.get(col, 0)
    if not b:
        return row
    out = {c: v * a for c, v in row.items()}
    for c, v in by.items():
        out[c] = out.get(c, 0) - b * v
    out = {c: v for c, v in out.items() if v}
    divisor = gcd(*out.values()) if out else 1
    return {c: v // divisor for c, v in out.items()} if divisor > 1 else out


def derivable(tables: Table | Iterable[Table]) -> set[Key]:
    """The suppressed values of these (linked) tables that their published values and sums
    determine exactly; keys as in :meth:`Table.values`."""
    values, lines = _published([tables] if isinstance(tables, Table) else tables)
    return _determined([k for k, v in values.items() if v is None], lines)


def is_protected(tables: Table | Iterable[Table]) -> bool:
    """True if no suppressed value of these tables can be recomputed exactly.

    Pass every table of a report together: they share the month totals and the grand
    total, and a value published in one table is known in all of them.
    """
    return not derivable(tables)


# --- aggregation --------------------------------------------------------------------------


def check_dimensions(dimensions: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dimensions)
    for name in out:
        if name not in DIMENSIONS:
            raise UnknownDimensionError(f"unknown dimension {name!r}; dimensions are {list(DIMENSIONS)}")
    if len(set(out)) != len(out):
        raise UnknownDimensionError("each dimension may be named only once")
    if set(out) & set(SENT_DIMENSIONS) and set(out) & set(RECEIVED_DIMENSIONS):
        raise UnknownDimensionError("dimensions of sent and of received referrals cannot be mixed in one report")
    return out


def check_cross_tabs(cross_tabs: Iterable[str], dimensions: tuple[str, ...]) -> tuple[str, ...]:
    out = tuple(cross_tabs)
    for name in out:
        if name not in CROSS_TABS:
            raise UnknownDimensionError(f"unknown cross-tab {name!r}; cross-tabs are {list(CROSS_TABS)}")
        if not set(CROSS_TABS[name]) <= set(dimensions):
            raise UnknownDimensionError(f"cross-tab {name!r} needs the dimensions {list(CROSS_TABS[name])}")
    if len(set(out)) != len(out):
        raise UnknownDimensionError("each cross-tab may be named only once")
    return out


_FIXED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sex": SEXES, "age_band": AGE_CATEGORIES, "minor": MINOR_CATEGORIES, "exploitation_type": EXPLOITATION_CATEGORIES,
    "referral_source": REFERRAL_SOURCE_CATEGORIES, "acts": ACT_CATEGORIES, "means": MEANS_CATEGORIES,
    "outcome": OUTCOMES,
}


def _columns(dimension: str, seen: Iterable[str]) -> tuple[str, ...]:
    if dimension in _FIXED_COLUMNS:
        return _FIXED_COLUMNS[dimension]
    # Only the nationalities (recipients) that occur: the other ~250 columns would be zeros,
    # and a missing column reads as zero all the same.
    if dimension == "recipient":
        return tuple(sorted(set(seen)))
    return tuple(sorted(set(seen) - {UNKNOWN})) + (UNKNOWN,)


def _skeletons(records: Sequence[AnyRecord], rows: Sequence[str], periods: tuple[str, ...],
               dimensions: tuple[str, ...], cross_tabs: tuple[str, ...], interval: str) -> list[Table]:
    """Tables of true counts (nothing suppressed yet), the period table first.

    ``rows[i]`` is the period label of ``records[i]``."""
    by_period = Counter(rows)
    row_totals = {m: by_period[m] for m in periods}
    tables = [Table(MONTH_TABLE, periods, (), {}, row_totals, {}, len(records), rows_by=interval)]
    # Restricted tables with the same population share its totals: published twice under
    # two names they would still be one number, and the checker must know it.
    bases: dict[tuple[int, ...], str] = {}
    for dimension in dimensions:
        cells: Counter[tuple[str, str]] = Counter()
        members: list[int] = []
        for i, (record, row) in enumerate(zip(records, rows)):
            found = record.categories(dimension)
            if found:
                members.append(i)
            for category in found:
                cells[(row, category)] += 1
        columns = _columns(dimension, (c for _, c in cells))
        base = None
        dim_totals = row_totals
        dim_total = len(records)
        if dimension in RESTRICTED:
            base = bases.setdefault(tuple(members), dimension)
            counted = Counter(rows[i] for i in members)
            dim_totals = {m: counted[m] for m in periods}
            dim_total = len(members)
        tables.append(Table(
            dimension, periods, columns,
            {(m, c): cells[(m, c)] for m in periods for c in columns},
            dim_totals,
            {c: sum(cells[(m, c)] for m in periods) for c in columns},
            dim_total,
            additive_rows=dimension not in MULTI_VALUED,
            rows_by=interval,
            base=base,
            sums_of=("age_band", MINOR_OF_AGE) if dimension == "minor" and "age_band" in dimensions else None,
        ))
    columns_of = {t.dimension: t for t in tables[1:]}
    for name in cross_tabs:
        row_dim, col_dim = CROSS_TABS[name]
        pairs: Counter[tuple[str, str]] = Counter()
        for record in records:
            for r in record.categories(row_dim):
                for c in record.categories(col_dim):
                    pairs[(r, c)] += 1
        row_table, col_table = columns_of[row_dim], columns_of[col_dim]
        tables.append(Table(
            name, row_table.columns, col_table.columns,
            {(r, c): pairs[(r, c)] for r in row_table.columns for c in col_table.columns},
            dict(row_table.column_totals), dict(col_table.column_totals), len(records),
            rows_by=row_dim, columns_of=col_dim,
        ))
    return tables


def _outside(tables: Sequence[Table]) -> tuple[dict[Key, int], list[Line]]:
    """The referrals outside each restricted population, per period and in all: never
    published, but the period total minus the population's total, so a small one must be
    protected like a small cell (12 of 20 referrals carry acts: 8 did not)."""
    period_table = tables[0]
    counts: dict[Key, int] = {}
    lines: list[Line] = []
    for table in tables:
        if table.base is None or ("outside", table.base) in counts:
            continue
        for row in table.rows:
            outside: Key = ("outside", table.base, row)
            counts[outside] = (period_table.row_totals[row] or 0) - (table.row_totals[row] or 0)
            lines.append((_month_key(row), (table.row_key(row), outside)))
        outside = ("outside", table.base)
        counts[outside] = (period_table.total or 0) - (table.total or 0)
        lines.append((GRAND, (table.total_key, outside)))
    return counts, lines


def _complete_lines(counts: Mapping[Key, int], lines: Sequence[Line], suppressed: set[Key],
                    order: Mapping[Key, int], hidden: Mapping[Key, int], protected: set[Key]) -> None:
    """Complementary suppression: until no line has exactly one unknown value that must be
    protected, suppress the smallest other nonzero part of such a line (the line's total if
    there is none). ``hidden`` values are never published (always unknown); those in
    ``protected`` must stay unknown, the others may follow from the published ones."""
    changed = True
    while changed:
        changed = False
        for total, parts in lines:
            unknown = [k for k in (total, *parts) if k in suppressed or k in hidden]
            if len(unknown) != 1 or not (unknown[0] in suppressed or unknown[0] in protected):
                continue
            candidates = [k for k in parts if k not in suppressed and k not in hidden and counts[k] > 0]
            if not candidates and total not in suppressed and total not in hidden and counts[total] > 0:
                candidates = [total]
            if candidates:  # none: the single value is a total whose parts are all 0, so 0
                suppressed.add(min(candidates, key=lambda k: (counts[k], order[k])))
                changed = True


def _suppress(counts: Mapping[Key, int], lines: Sequence[Line], threshold: int,
              base: Iterable[Key], order: Mapping[Key, int], hidden: Mapping[Key, int] | None = None) -> set[Key]:
    hidden = hidden or {}
    # A never-published value below the threshold must not follow from the published ones either.
    protected = {k for k, v in hidden.items() if 0 < v < threshold}
    suppressed = {k for k, v in counts.items() if 0 < v < threshold}
    suppressed.update(k for k in base if counts[k] > 0)
    while True:
        _complete_lines(counts, lines, suppressed, order, hidden, protected)
        unknown = sorted(suppressed | set(hidden), key=order.__getitem__)
        exposed = _determined(unknown, lines) & (suppressed | protected)
        if not exposed:
            return suppressed
        # A value pinned down only by combining lines: open one more value on a line
        # through it, then complete the lines again. Suppression only grows, and with
        # every nonzero value suppressed nothing is determined, so this ends.
        target = min(exposed, key=order.__getitem__)
        through = [line for line in lines if target in (line[0], *line[1])] or list(lines)
        candidates = {k for total, parts in through for k in (total, *parts)
                      if k not in suppressed and k not in hidden and counts[k] > 0}
        if not candidates:
            candidates = {k for k in counts if k not in suppressed and counts[k] > 0}
        suppressed.add(min(candidates, key=lambda k: (counts[k], order[k])))


def _publish(table: Table, suppressed: set[Key]) -> Table:
    def shown(key: Key, value: int | None) -> int | None:
        return None if key in suppressed else value

    return dataclasses.replace(
        table,
        cells={(m, c): shown((table.dimension, m, c), v) for (m, c), v in table.cells.items()},
        row_totals={m: shown(table.row_key(m), v) for m, v in table.row_totals.items()},
        column_totals={c: shown(table.column_key(c), v) for c, v in table.column_totals.items()},
        total=shown(table.total_key, table.total),
    )


def aggregate(records: Iterable[AnyRecord], *, threshold: int = DEFAULT_THRESHOLD,
              dimensions: Iterable[str] | None = None, months: Iterable[str] = (),
              base_threshold: int | None = None, interval: str = "month",
              cross_tabs: Iterable[str] | None = None) -> StatsReport:
    """Count ``records`` into linked period × category tables and suppress small counts.

    Rows are the periods (months, quarters or years, by ``interval``) of the records plus
    those of ``months`` (so an empty period shows as 0). Dimensions default to those of
    received referrals (:data:`RECEIVED_DIMENSIONS`) with the sex × age band cross-tab, or
    to :data:`SENT_DIMENSIONS` when every record is a :class:`SentRecord`.
    Zero counts are published: a zero is about nobody, and suppressing zeros would hide
    most of a sparse table (and every zero would need complements of its own).

    Primary suppression: every value (cell or total) with ``0 < count < threshold``.
    Complementary: every line (a row, a column, the periods, a cross-tab margin, a minor
    column as the sum of its age columns) is a sum; a line with exactly one suppressed
    value would give it away, so the smallest other nonzero value of the line is
    suppressed too, until no line has exactly one; then exact elimination over all lines
    of all tables together (they share the period totals, the grand total and the
    margins) finds values pinned down only by combining lines, and suppresses more until
    none is.

    Exploitation type, acts and means are multi-valued: a person with two types counts in
    two cells, so a row's cells do not add up to the row total and the column totals not
    to the grand total. Those are not equations, and treating them as such would suppress
    for nothing; each column (one type over the periods) is still a true sum, and is
    protected as one. Each cell still counts persons, so primary suppression is the same.

    With ``base_threshold`` every value suppressed at that threshold is suppressed here
    too: reports for several thresholds ≥ base then show nothing beyond the base report,
    so they cannot be combined to undo each other's complements.
    """
    threshold = check_threshold(threshold)
    interval = check_interval(interval)
    rows = list(records)
    sent = bool(rows) and all(isinstance(r, SentRecord) for r in rows)
    if dimensions is None:
        dimensions = SENT_DIMENSIONS if sent else DEFAULT_DIMENSIONS
    dims = check_dimensions(dimensions)
    if cross_tabs is None:
        cross_tabs = [n for n in DEFAULT_CROSS_TABS if set(CROSS_TABS[n]) <= set(dims)]
    crosses = check_cross_tabs(cross_tabs, dims)
    all_months = tuple(sorted({r.month for r in rows} | {check_month(m) for m in months}))
    labels = [period_of(r.month, interval) for r in rows]
    periods = tuple(sorted({period_of(m, interval) for m in all_months}))
    skeletons = _skeletons(rows, labels, periods, dims, crosses, interval)
    counts: dict[Key, int] = {}
    for table in skeletons:
        counts.update((k, v) for k, v in table.values() if v is not None)
    _, lines = _published(skeletons)
    hidden, outside_lines = _outside(skeletons)
    lines += outside_lines
    # A fixed order for ties, so the same data always gives the same report.
    order = {key: i for i, key in enumerate((*counts, *hidden))}
    base: set[Key] = set()
    if base_threshold is not None:
        base_threshold = check_threshold(base_threshold, name="base_threshold")
        if base_threshold > threshold:
            raise InvalidThresholdError("base_threshold must not be above threshold")
        base = _suppress(counts, lines, base_threshold, (), order, hidden)
    suppressed = _suppress(counts, lines, threshold, base, order, hidden)
    return StatsReport(threshold, all_months, tuple(_publish(t, suppressed) for t in skeletons),
                       interval, periods)
