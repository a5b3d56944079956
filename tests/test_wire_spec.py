"""docs/wire-format.md states the code's rules: each statement here is checked against the code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import envelope, errors
from gateway.api.parse import _json_problem
from gateway.audit.export import ExportFormatError, parse_line
from gateway.canonical import MAX_JSON_DEPTH, canonical_bytes, json_depth, strict_loads
from gateway.directory import ORG_TYPES, ROLES, check_serial_advance
from gateway.envelope import DEFAULT_POLICY
from gateway.errors import DirectoryRollbackError, NestingTooDeepError, SchemaInvalidError
from gateway.pseudonym import case_pseudonym
from gateway.schema import MESSAGE_TYPES, PURPOSES, SCHEMA_DIR, validate_payload

DOC = (Path(__file__).resolve().parent.parent / "docs" / "wire-format.md").read_text(encoding="utf-8")


def _row(first_cell: str) -> str:
    (line,) = [line for line in DOC.splitlines() if line.startswith(f"| {first_cell} |")]
    return line


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([a-z_.]+)`", cell)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- message types -------------------------------------------------------------------------


def test_the_header_type_rule_lists_exactly_the_twelve_message_types() -> None:
    row = _row("`type` | yes")
    listed = [name for name in _codes(row.split("|")[3]) if name in MESSAGE_TYPES or "." in name]
    assert listed == list(MESSAGE_TYPES) and len(MESSAGE_TYPES) == 12


def test_every_message_type_has_a_row_in_the_message_types_table() -> None:
    section = DOC.split("## Message types", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `") and not line.startswith("| `type`")]
    first_cells = [line.split("|")[1] for line in rows]
    assert sorted(name for cell in first_cells for name in _codes(cell)) == sorted(MESSAGE_TYPES)


# --- JSON rules ------------------------------------------------------------------------------


def test_nesting_limit_is_the_documented_constant() -> None:
    assert MAX_JSON_DEPTH == 32
    assert "**Nesting depth ≤ 32** (`MAX_JSON_DEPTH`)" in DOC


@pytest.mark.parametrize(("text", "depth"), [(b"1", 0), (b"{}", 1), (b"[]", 1), (b'{"a":[1]}', 2),
                                             (b'[[],[[{}]]]', 4), (_nested(32), 32)])
def test_depth_is_counted_as_documented(text: bytes, depth: int) -> None:
    assert json_depth(strict_loads(text)) == depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_deeper_than_the_limit_is_refused_whatever_the_stack(depth: int) -> None:
    # 100,000 levels overflow the parser's recursion: the refusal must be the same error.
    with pytest.raises(NestingTooDeepError) as info:
        strict_loads(_nested(depth))
    assert info.value.code == "json_too_deep"
    assert isinstance(info.value, ValueError)  # callers catch every JSON failure as one
    assert str(MAX_JSON_DEPTH) in str(info.value)


def test_nesting_error_texts_name_the_rule() -> None:
    try:
        strict_loads(_nested(40))
    except NestingTooDeepError as exc:
        assert _json_problem(exc) == "arrays and objects nest deeper than 32 levels"
    with pytest.raises(ExportFormatError, match="nested too deeply"):
        parse_line("[" * 40 + "]" * 40)


@pytest.mark.parametrize("n", [2**53 - 1, -(2**53 - 1), 0])
def test_integers_inside_the_safe_range_are_encoded(n: int) -> None:
    assert canonical_bytes({"n": n}) == f'{{"n":{n}}}'.encode()
    assert "±(2^53−1) (−9007199254740991 … 9007199254740991)" in DOC


@pytest.mark.parametrize("n", [2**53, -(2**53), 10**30])
def test_integers_outside_the_safe_range_are_refused(n: int) -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"n": n})


def test_non_canonical_numbers_differ_from_their_canonical_form() -> None:
    for written, canonical in ((b'{"n":22.0}', b'{"n":22}'), (b'{"n":2.2e1}', b'{"n":22}'), (b'{"n":-0}', b'{"n":0}')):
        assert canonical_bytes(strict_loads(written)) == canonical


@pytest.mark.parametrize("text", [b'{"a":1,"a":1}', b'\xef\xbb\xbf{}', b'{"a":NaN}', b'[-Infinity]', b'{"a":"\xff"}'])
def test_strict_parser_refusals(text: bytes) -> None:
    with pytest.raises(ValueError):
        strict_loads(text)


def test_lone_surrogates_parse_but_cannot_be_canonicalised() -> None:
    with pytest.raises(ValueError):
        canonical_bytes(strict_loads(b'{"a":"\\udc00"}'))


# --- schema formats --------------------------------------------------------------------------


def test_the_schemas_use_exactly_the_documented_formats() -> None:
    used = set()
    for path in (SCHEMA_DIR / "v1").glob("*.schema.json"):
        used |= set(re.findall(r'"format": "([a-z-]+)"', path.read_text(encoding="utf-8")))
    assert used == {"date", "date-time", "uuid"}


@pytest.mark.parametrize(("status_at", "valid"), [("2028-02-29T10:00:00Z", True), ("2026-02-29T10:00:00Z", False),
                                                  ("2026-04-31T10:00:00Z", False), ("2026-04-30T23:59:59Z", True)])
def test_date_time_format_means_the_day_exists(status_at: str, valid: bool) -> None:
    receipt = {"message_id": "00000000-0000-4000-8000-000000000001", "status": "delivered", "status_at": status_at}
    if valid:
        validate_payload("receipt", receipt)
    else:
        with pytest.raises(SchemaInvalidError):
            validate_payload("receipt", receipt)


def test_uuid_format_adds_nothing_to_the_pattern() -> None:
    # Version nibble 0 is no RFC 9562 UUID, but the payload pattern takes it: only the pattern is the rule.
    validate_payload("receipt", {"message_id": "00000000-0000-0000-0000-000000000000", "status": "delivered",
                                 "status_at": "2026-04-30T23:59:59Z"})


# --- directory -------------------------------------------------------------------------------


def test_directory_vocabularies_are_the_documented_ones() -> None:
    assert set(_codes(_row("`org_type`").split("|")[2])) == ORG_TYPES
    assert set(_codes(_row("`roles`").split("|")[2])) == ROLES
    assert [p for p in _codes(_row("`accepts`").split("|")[2]) if p in PURPOSES] == list(PURPOSES)


@pytest.mark.parametrize(("held", "new"), [(None, 1), (None, 7), (1, 2), (6, 100)])
def test_a_greater_serial_advances(held: int | None, new: int) -> None:
    check_serial_advance(held, new)


@pytest.mark.parametrize(("held", "new"), [(1, 1), (2, 1), (100, 99)])
def test_a_serial_not_greater_than_the_held_one_is_refused(held: int, new: int) -> None:
    with pytest.raises(DirectoryRollbackError) as info:
        check_serial_advance(held, new)
    assert info.value.code == "directory_rollback"
    assert isinstance(info.value, errors.DirectoryError)
    assert f"serial {new} " in str(info.value) and f"serial {held} " in str(info.value)


# --- pseudonyms ------------------------------------------------------------------------------


def test_the_worked_pseudonym_example_follows_the_documented_steps() -> None:
    secret = bytes(range(32))
    message = "rgw-case-v1|NE|NG|NE-ZINDER-2026-0142".encode("utf-8")
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    tag = base64.b32encode(mac[:15]).decode().lower()
    assert len(tag) == 24 and "=" not in tag
    expected = "ne-ng-" + tag
    assert case_pseudonym(secret, "NE-ZINDER-2026-0142", "NE", "NG") == expected
    assert f"`{expected}`" in DOC and f"`mac` starts `{mac[:8].hex()}`" in DOC
    assert envelope.CASE_REF.fullmatch(expected) and len(expected) == 30


# --- public functions ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seal", "open_sealed", "verify_origin", "parse_envelope"])
def test_documented_signatures_match_the_code(name: str) -> None:
    match = re.search(r"\*\*`" + name + r"\(([^`]*?)\)\s*->", DOC)
    assert match, f"{name} is not documented"
    documented = [part.strip().split("=")[0] for part in match.group(1).replace("\n", " ").split(",")]
    documented = [p for p in documented if p not in ("*", "")]
    params = list(inspect.signature(getattr(envelope, name)).parameters)
    assert documented == params


def test_documented_seal_and_open_arguments_have_rows() -> None:
    for name in ("seal", "open_sealed"):
        for param in inspect.signature(getattr(envelope, name)).parameters:
            assert f"| `{param}` |" in DOC, f"{name}({param}) has no row"


def test_policy_defaults_are_the_documented_numbers() -> None:
    assert DEFAULT_POLICY.max_envelope_bytes == 262144 and DEFAULT_POLICY.max_payload_bytes == 65536
    assert DEFAULT_POLICY.max_clock_skew == timedelta(minutes=5) and DEFAULT_POLICY.max_lifetime == timedelta(days=30)
    assert ("`max_envelope_bytes` 262144, `max_payload_bytes` 65536, `max_clock_skew` 5 min, "
            "`max_lifetime` 30 days") in DOC


def test_every_code_in_the_check_table_is_an_envelope_error_code() -> None:
    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.EnvelopeError)}
    rows = [line for line in DOC.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 15
    table_codes = {c for row in rows for c in re.findall(r"\(`([a-z_]+)`", row)}
    assert table_codes == codes - {"envelope_rejected", "key_not_valid"}


def test_vector_file_fields_named_in_the_doc_exist() -> None:
    vector = json.loads((Path(__file__).parent / "vectors" / "envelope-v1.json").read_text(encoding="utf-8"))
    for field in ("sealed_box", "acceptances", "pseudonyms", "directory_rollback", "rejections"):
        assert f"`{field}`" in DOC and field in vector
