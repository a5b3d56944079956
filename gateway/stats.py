"""Aggregate statistics of received referrals, with small-cell suppression. Pure: no I/O.

A coordination body gets, per month, how many persons were referred by sex, age band,
nationality and exploitation type, and never a count small enough to point at a person.
See docs/stats.md for what is counted and what an attacker can and cannot derive.

How it works:

* :meth:`StatsRecord.from_payload` keeps five coarse fields of a ``referral.request``
  and nothing else (no names, no dates, no places).
* :func:`aggregate` counts them into linked tables (month × category for each dimension,
  plus the one-way month table) and suppresses: **primary**, every count ``0 < n <
  threshold`` (cells and totals); **complementary**, more counts, until no suppressed
  value can be recomputed from the published ones and the tables' sums.
* :func:`is_protected` is the attacker: it solves the published tables' linear equations
  and says whether any suppressed value comes out exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from math import gcd
from typing import Any

from gateway.errors import GatewayError
from gateway.schema_versions import EXPLOITATION_TYPE_V2_TO_V1

DEFAULT_THRESHOLD = 11

# --- categories ---------------------------------------------------------------------------
# The schema's enums (schemas/v1/common.schema.json), copied so this module does no I/O;
# tests/test_stats.py fails if they drift apart.

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
EXPLOITATION_TYPES = (
    "sexual_exploitation", "forced_labour", "domestic_servitude", "forced_begging",
    "slavery_servitude", "forced_criminal_activity", "organ_removal", "forced_marriage",
    "child_soldiering", "other", "undetermined",
)
#: A request without exploitation items (its purposes do not allow them, e.g. a safety
#: assessment): counted here so that every person appears in the table at least once.
NOT_RECORDED = "not_recorded"
EXPLOITATION_CATEGORIES = (*EXPLOITATION_TYPES, NOT_RECORDED)

DIMENSIONS = ("sex", "age_band", "nationality", "exploitation_type")
DEFAULT_DIMENSIONS = DIMENSIONS
#: Dimensions where one person may fall in several categories.
MULTI_VALUED = frozenset({"exploitation_type"})
MONTH_TABLE = "month"

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


def _v1_exploitation_type(kind: object, minor: bool) -> object:
    if kind == "forced_military_by_non_state_actors":
        return "child_soldiering" if minor else "other"
    return EXPLOITATION_TYPE_V2_TO_V1.get(kind, kind) if isinstance(kind, str) else kind


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


@dataclass(frozen=True)
class StatsRecord:
    """The only facts about one referred person that statistics keep."""

    month: str  # YYYY-MM the gateway received the referral, UTC
    sex: str
    age_band: str
    nationality: str  # ISO 3166-1 alpha-2, or "unknown"
    exploitation_types: frozenset[str] = field(default_factory=frozenset)  # empty: not recorded

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

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], received_at: datetime) -> StatsRecord:
        """The statistics record of a ``referral.request`` payload received at ``received_at``.

        The month is the gateway's receipt month, not the identification date: every
        received request has one (``identification.identified_on`` is optional), the
        gateway's own clock sets it (a sender cannot place a person in another month), and
        a month closes for good once it is over, so published months do not change later.
        Ages are banded on the receipt date. A missing or unrecognised value counts as
        ``unknown``: a value outside the enums is never copied into a report.
        """
        month = month_of(received_at)
        person = payload.get("person")
        person = person if isinstance(person, Mapping) else {}
        sex = person.get("sex")
        nationality = person.get("nationality")
        items = payload.get("exploitation")
        # A v2 payload (schema_version "2") spells some types as HTCDS 2.0 does: counted under
        # their v1 category until the report itself moves to the v2 codes.
        v2 = payload.get("schema_version") == "2"
        minor = isinstance(person.get("age"), Mapping) and person["age"].get("minor") is True
        types = frozenset(
            kind for kind in (_v1_exploitation_type(item.get("type"), minor) if v2 else item.get("type")
                              for item in (items if isinstance(items, list) else ()) if isinstance(item, Mapping))
            if kind in EXPLOITATION_TYPES
        )
        return cls(
            month=month,
            sex=sex if sex in SEXES else UNKNOWN,
            age_band=_age_category(person.get("age"), received_at.astimezone(timezone.utc).date()),
            nationality=nationality if isinstance(nationality, str) and _COUNTRY.fullmatch(nationality) else UNKNOWN,
            exploitation_types=types,
        )

    def categories(self, dimension: str) -> frozenset[str]:
        """The categories this person counts in for ``dimension`` (several for exploitation)."""
        if dimension == "exploitation_type":
            return self.exploitation_types or frozenset({NOT_RECORDED})
        return frozenset({getattr(self, dimension)})


# --- published tables ---------------------------------------------------------------------

#: A value in the linked tables: ("month", m) a month total (shared by every table),
#: ("total",) the grand total (shared), (dimension, m, c) a cell, (dimension, "*", c) a
#: column total. A Line says: the value of its first key is the sum of the others.
Key = tuple[str, ...]
Line = tuple[Key, tuple[Key, ...]]
GRAND: Key = ("total",)


def _month_key(month: str) -> Key:
    return ("month", month)


@dataclass(frozen=True)
class Table:
    """One published table; ``None`` is a suppressed value.

    For the month table ``columns`` is empty and the counts are the row totals. For
    ``additive_rows=False`` (exploitation type) a person may count in several columns, so
    a row's cells do not add up to its total, nor the column totals to the grand total;
    every column still adds up over the months.
    """

    dimension: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], int | None]
    row_totals: Mapping[str, int | None]
    column_totals: Mapping[str, int | None]
    total: int | None
    additive_rows: bool = True

    def values(self) -> Iterator[tuple[Key, int | None]]:
        """Every value of the table under its linked-table key."""
        for row in self.rows:
            yield _month_key(row), self.row_totals[row]
            for column in self.columns:
                yield (self.dimension, row, column), self.cells[(row, column)]
        for column in self.columns:
            yield (self.dimension, "*", column), self.column_totals[column]
        yield GRAND, self.total

    def lines(self) -> Iterator[Line]:
        """The table's sums: each line's first key is the sum of the others."""
        yield GRAND, tuple(_month_key(row) for row in self.rows)
        for column in self.columns:
            yield (self.dimension, "*", column), tuple((self.dimension, row, column) for row in self.rows)
        if self.additive_rows and self.columns:
            for row in self.rows:
                yield _month_key(row), tuple((self.dimension, row, column) for column in self.columns)
            yield GRAND, tuple((self.dimension, "*", column) for column in self.columns)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dimension": self.dimension}
        if self.columns:
            out["categories"] = list(self.columns)
            out["multi_valued"] = not self.additive_rows
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {"month": row}
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
        rows = tuple(r["month"] for r in data["rows"])
        return cls(
            dimension=data["dimension"],
            rows=rows,
            columns=columns,
            cells={(r["month"], c): r["cells"][c]["count"] for r in data["rows"] for c in columns},
            row_totals={r["month"]: r["total"]["count"] for r in data["rows"]},
            column_totals={c: data["column_totals"][c]["count"] for c in columns},
            total=data["total"]["count"],
            additive_rows=not data.get("multi_valued", False),
        )


def _cell_json(value: int | None) -> dict[str, Any]:
    return {"count": value, "suppressed": value is None}


@dataclass(frozen=True)
class StatsReport:
    """Suppressed tables: the month table first, then one per dimension. No true counts."""

    threshold: int
    months: tuple[str, ...]
    tables: tuple[Table, ...]

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
            "months": list(self.months),
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
    return out


def _columns(dimension: str, seen: Iterable[str]) -> tuple[str, ...]:
    if dimension == "sex":
        return SEXES
    if dimension == "age_band":
        return AGE_CATEGORIES
    if dimension == "exploitation_type":
        return EXPLOITATION_CATEGORIES
    # Only nationalities that occur: the other ~250 columns would be zeros, and a missing
    # column reads as zero all the same.
    return tuple(sorted(set(seen) - {UNKNOWN})) + (UNKNOWN,)


def _skeletons(records: Sequence[StatsRecord], months: tuple[str, ...],
               dimensions: tuple[str, ...]) -> list[Table]:
    """Tables of true counts (nothing suppressed yet), the month table first."""
    by_month = Counter(r.month for r in records)
    row_totals = {m: by_month[m] for m in months}
    tables = [Table(MONTH_TABLE, months, (), {}, row_totals, {}, len(records))]
    for dimension in dimensions:
        cells: Counter[tuple[str, str]] = Counter()
        for record in records:
            for category in record.categories(dimension):
                cells[(record.month, category)] += 1
        columns = _columns(dimension, (c for _, c in cells))
        tables.append(Table(
            dimension, months, columns,
            {(m, c): cells[(m, c)] for m in months for c in columns},
            row_totals,
            {c: sum(cells[(m, c)] for m in months) for c in columns},
            len(records),
            additive_rows=dimension not in MULTI_VALUED,
        ))
    return tables


def _complete_lines(counts: Mapping[Key, int], lines: Sequence[Line], suppressed: set[Key],
                    order: Mapping[Key, int]) -> None:
    """Complementary suppression: until no line has exactly one suppressed value, suppress
    the smallest other nonzero part of such a line (the line's total if there is none)."""
    changed = True
    while changed:
        changed = False
        for total, parts in lines:
            if sum(k in suppressed for k in (total, *parts)) != 1:
                continue
            candidates = [k for k in parts if k not in suppressed and counts[k] > 0]
            if not candidates and total not in suppressed and counts[total] > 0:
                candidates = [total]
            if candidates:  # none: the single value is a total whose parts are all 0, so 0
                suppressed.add(min(candidates, key=lambda k: (counts[k], order[k])))
                changed = True


def _suppress(counts: Mapping[Key, int], lines: Sequence[Line], threshold: int,
              base: Iterable[Key], order: Mapping[Key, int]) -> set[Key]:
    suppressed = {k for k, v in counts.items() if 0 < v < threshold}
    suppressed.update(k for k in base if counts[k] > 0)
    while True:
        _complete_lines(counts, lines, suppressed, order)
        exposed = _determined(sorted(suppressed, key=order.__getitem__), lines)
        if not exposed:
            return suppressed
        # A value pinned down only by combining lines: open one more value on a line
        # through it, then complete the lines again. Suppression only grows, and with
        # every nonzero value suppressed nothing is determined, so this ends.
        target = min(exposed, key=order.__getitem__)
        through = [line for line in lines if target in (line[0], *line[1])] or list(lines)
        candidates = {k for total, parts in through for k in (total, *parts)
                      if k not in suppressed and counts[k] > 0}
        if not candidates:
            candidates = {k for k in counts if k not in suppressed and counts[k] > 0}
        suppressed.add(min(candidates, key=lambda k: (counts[k], order[k])))


def _publish(table: Table, suppressed: set[Key]) -> Table:
    def shown(key: Key, value: int | None) -> int | None:
        return None if key in suppressed else value

    return Table(
        table.dimension, table.rows, table.columns,
        {(m, c): shown((table.dimension, m, c), v) for (m, c), v in table.cells.items()},
        {m: shown(_month_key(m), v) for m, v in table.row_totals.items()},
        {c: shown((table.dimension, "*", c), v) for c, v in table.column_totals.items()},
        shown(GRAND, table.total),
        table.additive_rows,
    )


def aggregate(records: Iterable[StatsRecord], *, threshold: int = DEFAULT_THRESHOLD,
              dimensions: Iterable[str] = DEFAULT_DIMENSIONS, months: Iterable[str] = (),
              base_threshold: int | None = None) -> StatsReport:
    """Count ``records`` into linked month × category tables and suppress small counts.

    Rows are the months of the records plus ``months`` (so an empty month shows as 0).
    Zero counts are published: a zero is about nobody, and suppressing zeros would hide
    most of a sparse table (and every zero would need complements of its own).

    Primary suppression: every value (cell or total) with ``0 < count < threshold``.
    Complementary: every line (a row, a column, the months) is a sum; a line with exactly
    one suppressed value would give it away, so the smallest other nonzero value of the
    line is suppressed too, until no line has exactly one; then exact elimination over all
    lines of all tables together (they share the month totals and the grand total) finds
    values pinned down only by combining lines, and suppresses more until none is.

    Exploitation type is multi-valued: a person with two types counts in two cells, so a
    row's cells do not add up to the row total and the column totals not to the grand
    total. Those are not equations, and treating them as such would suppress for nothing;
    each column (one type over the months) is still a true sum, and is protected as one.
    Each cell still counts persons, so primary suppression is the same.

    With ``base_threshold`` every value suppressed at that threshold is suppressed here
    too: reports for several thresholds ≥ base then show nothing beyond the base report,
    so they cannot be combined to undo each other's complements.
    """
    threshold = check_threshold(threshold)
    dims = check_dimensions(dimensions)
    rows = list(records)
    all_months = tuple(sorted({r.month for r in rows} | {check_month(m) for m in months}))
    skeletons = _skeletons(rows, all_months, dims)
    counts: dict[Key, int] = {}
    for table in skeletons:
        counts.update((k, v) for k, v in table.values() if v is not None)
    _, lines = _published(skeletons)
    # A fixed order for ties, so the same data always gives the same report.
    order = {key: i for i, key in enumerate(counts)}
    base: set[Key] = set()
    if base_threshold is not None:
        base_threshold = check_threshold(base_threshold, name="base_threshold")
        if base_threshold > threshold:
            raise InvalidThresholdError("base_threshold must not be above threshold")
        base = _suppress(counts, lines, base_threshold, (), order)
    suppressed = _suppress(counts, lines, threshold, base, order)
    return StatsReport(threshold, all_months, tuple(_publish(t, suppressed) for t in skeletons))
