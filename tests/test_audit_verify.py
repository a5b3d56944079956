"""Exports and offline verification: every tampering at every position is caught and located."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import merkle
from gateway.audit.checkpoint import sign_checkpoint
from gateway.audit.export import (
    COLUMNS,
    ExportedEntry,
    ExportFormatError,
    csv_rows,
    jsonl_lines,
    parse_jsonl,
    write_csv,
)
from gateway.audit.leaf import leaf_hash
from gateway.audit.verify import VerifyReport, verify_export
from gateway.demo_identities import demo_authority_key, demo_directory_document, demo_identity
from gateway.directory import Directory, load_directory, sign_directory
from gateway.store import AuditEntry, AuditRecord

NIGER = "NE-ANLTP-TIM"
NIGERIA = "NG-NAPTIP"
T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=timezone.utc)
SIGNED = datetime(2026, 3, 2, 0, 0, 0, tzinfo=timezone.utc)
N = 60
SIZES = (1, 10, 25, 40, 55)  # entries 56..60 are not yet covered
EVENTS = ("message.sent", "message.status", "message.read", "data.shredded", "consent.withdrawn")  # declared types


def make_records(n: int = N) -> list[AuditRecord]:
    records = []
    for i in range(n):
        entry = AuditEntry(
            at=T0 + timedelta(seconds=i, microseconds=i),
            event_type=EVENTS[i % len(EVENTS)],
            actor=f"caseworker-{i % 7}" if i % 3 else "system",
            case_ref=f"ne-ng-case{i:010d}" if i % 4 else None,
            message_id=f"00000000-0000-4000-8000-{i:012d}" if i % 2 else None,
            detail_json=json.dumps({"n": i, "purpose": "assistance", "nested": {"ok": i % 2 == 0}}),
            agency=NIGERIA if i % 5 else None,
        )
        records.append(AuditRecord(i + 1, entry.at, entry.event_type, entry.actor, entry.case_ref,
                                   entry.message_id, entry.detail_json, entry.entry_hash, entry.agency))
    return records


@pytest.fixture(scope="module")
def directory() -> Directory:
    authority = demo_authority_key()
    return load_directory(sign_directory(demo_directory_document(), authority), [bytes(authority.verify_key)])


@pytest.fixture(scope="module")
def records() -> list[AuditRecord]:
    return make_records()


@pytest.fixture(scope="module")
def entries(records) -> list[ExportedEntry]:
    return parse_jsonl(jsonl_lines(records))


@pytest.fixture(scope="module")
def notes(records) -> list[bytes]:
    hashes = [r.entry_hash for r in records]
    identity = demo_identity(NIGER)
    return [sign_checkpoint(identity, size, merkle.root(hashes[:size]), SIGNED + timedelta(minutes=size))
            for size in SIZES]


def check(entries, notes, directory) -> VerifyReport:
    return verify_export(entries, notes, directory, origin=NIGER, now=SIGNED + timedelta(days=1))


def renumber(entries: list[ExportedEntry]) -> list[ExportedEntry]:
    return [replace(e, seq=i + 1) for i, e in enumerate(entries)]


def rehash(entry: ExportedEntry) -> ExportedEntry:
    return replace(entry, entry_hash=leaf_hash(entry))


def expected_range(seq: int, sizes=SIZES) -> tuple[int, int] | None:
    """Where a root-only detection must place the first bad entry ``seq``; None if uncovered."""
    above = [s for s in sizes if s >= seq]
    if not above:
        return None
    below = [s for s in sizes if s < seq]
    return (max(below, default=0) + 1, min(above))


# --- exports -------------------------------------------------------------------------------


def test_jsonl_round_trip(records, entries) -> None:
    lines = list(jsonl_lines(records))
    assert len(lines) == N and all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    first = json.loads(lines[1])
    assert list(first) == sorted(first)  # canonical member order
    assert set(first) == set(COLUMNS)
    assert first["at"] == "2026-03-01T09:00:01.123457Z"
    assert first["entry_hash"] == records[1].entry_hash.hex()
    assert first["detail"] == {"n": 1, "nested": {"ok": False}, "purpose": "assistance"}
    for record, entry in zip(records, entries):
        assert entry.seq == record.seq and entry.at == record.at and entry.entry_hash == record.entry_hash
        assert leaf_hash(entry) == record.entry_hash
    # Lines without their newline parse too (e.g. str.splitlines()).
    assert parse_jsonl("".join(lines).splitlines()) == entries


def test_csv_export_and_formula_guard(records) -> None:
    tricky = replace(records[0], actor="=HYPERLINK(\"http://x\")", case_ref="+1", message_id=None,
                     detail_json='{"a":"-b"}', agency="@SUM")
    rows = list(csv_rows([tricky, records[1]]))
    assert rows[0] == list(COLUMNS)
    row = dict(zip(COLUMNS, rows[1]))
    assert row["actor"] == "'=HYPERLINK(\"http://x\")"
    assert row["case_ref"] == "'+1" and row["agency"] == "'@SUM" and row["message_id"] == ""
    assert row["detail"] == '{"a":"-b"}'  # starts with "{": left alone
    assert row["seq"] == "1" and row["entry_hash"] == records[0].entry_hash.hex()
    buffer = io.StringIO(newline="")
    assert write_csv(records, buffer) == N
    parsed = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert len(parsed) == N + 1 and parsed[5][0] == "5"
    assert buffer.getvalue().count("\r\n") == N + 1


@pytest.mark.parametrize(
    "change, line, field",
    [
        (lambda o: o.update(seq=0), 3, "seq"),
        (lambda o: o.update(seq="3"), 3, "seq"),
        (lambda o: o.update(seq=True), 3, "seq"),
        (lambda o: o.update(at="2026-03-01T09:00:00Z"), 3, "at"),
        (lambda o: o.update(at="2026-02-30T09:00:00.000000Z"), 3, "at"),
        (lambda o: o.update(event_type=""), 3, "event_type"),
        (lambda o: o.update(actor=None), 3, "actor"),
        (lambda o: o.update(agency=5), 3, "agency"),
        (lambda o: o.update(detail="{}"), 3, "detail"),
        (lambda o: o.update(entry_hash="AB" * 32), 3, "entry_hash"),
        (lambda o: o.update(entry_hash="ab"), 3, "entry_hash"),
        (lambda o: o.pop("case_ref"), 3, "case_ref"),
        (lambda o: o.update(extra=1), 3, "extra"),
    ],
)
def test_parse_errors_name_line_and_field(records, change, line: int, field: str) -> None:
    lines = list(jsonl_lines(records[:5]))
    obj = json.loads(lines[line - 1])
    change(obj)
    lines[line - 1] = json.dumps(obj) + "\n"
    with pytest.raises(ExportFormatError) as exc:
        parse_jsonl(lines)
    assert (exc.value.line, exc.value.field) == (line, field)
    assert exc.value.code == "audit_export_malformed"


def test_parse_errors_without_field_and_without_content(records) -> None:
    lines = list(jsonl_lines(records[:3]))
    for bad in ('{"secret name": ', "[1]", "", '{"a":1,"a":2}'):
        with pytest.raises(ExportFormatError) as exc:
            parse_jsonl(lines[:1] + [bad + "\n"] + lines[1:])
        assert exc.value.line == 2 and "secret" not in str(exc.value)


# --- verification: untouched ------------------------------------------------------------


def test_untouched_export_verifies(entries, notes, directory) -> None:
    report = check(entries, notes, directory)
    assert report.ok and report.first_bad is None and report.findings == ()
    assert (report.entries, report.checkpoints, report.covered) == (N, len(SIZES), 55)
    assert report.warnings == ("entries 56..60 are not yet covered by a checkpoint "
                               "(checked only for numbering and recorded hashes)",)
    assert report.lines()[-1] == "verification OK"
    # Notes in any order, and a fully covered export: no warning.
    assert check(entries[:55], notes[::-1], directory).warnings == ()


def test_no_checkpoints_is_a_warning(entries, directory) -> None:
    report = check(entries, [], directory)
    assert report.ok and report.covered == 0
    assert any("no valid checkpoint" in w for w in report.warnings)


# --- verification: every position, every kind of tampering ------------------------------


def _assert_precise(report: VerifyReport, seq: int, check_name: str) -> None:
    assert not report.ok
    bad = report.first_bad
    assert bad is not None and bad.precise, report.lines()
    assert (bad.first_seq, bad.check) == (seq, check_name), report.lines()


def _assert_range(report: VerifyReport, seq: int) -> None:
    rng = expected_range(seq)
    if rng is None:
        assert report.ok, report.lines()  # beyond the last checkpoint: undetectable by design
        assert any("not yet covered" in w for w in report.warnings)
        return
    assert not report.ok
    bad = report.first_bad
    assert bad is not None and (bad.first_seq, bad.last_seq) == rng, report.lines()
    assert bad.first_seq <= seq <= bad.last_seq


@pytest.mark.parametrize("position", range(N))
def test_tampering_at_every_position(position: int, entries, notes, directory) -> None:
    seq = position + 1
    original = entries[position]

    # 1. naive modification: a field changed, entry_hash left as it was.
    for changed in (replace(original, actor="someone-else"), replace(original, detail={"n": -1}),
                    replace(original, at=original.at + timedelta(microseconds=1)),
                    replace(original, case_ref=None if original.case_ref else "ne-ng-x")):
        report = check(entries[:position] + [changed] + entries[position + 1:], notes, directory)
        _assert_precise(report, seq, "entry_hash")
        assert report.first_bad.event_type == original.event_type
    # the recorded hash itself altered: precise too
    report = check(entries[:position] + [replace(original, entry_hash=b"\x00" * 32)] + entries[position + 1:],
                   notes, directory)
    _assert_precise(report, seq, "entry_hash")

    # 2. naive deletion (numbers kept): a gap at this seq; the last entry leaves no gap.
    deleted = entries[:position] + entries[position + 1:]
    report = check(deleted, notes, directory)
    if position < N - 1:
        _assert_precise(report, seq, "seq")
    else:
        _assert_range(report, seq)

    # 3. naive swap with the next entry (numbers kept).
    if position < N - 1:
        swapped = entries[:position] + [entries[position + 1], original] + entries[position + 2:]
        _assert_precise(check(swapped, notes, directory), seq, "seq")

    # 4. clever modification: entry_hash recomputed. Only a signed root can tell.
    clever = rehash(replace(original, actor="someone-else"))
    _assert_range(check(entries[:position] + [clever] + entries[position + 1:], notes, directory), seq)

    # 5. clever deletion: later entries renumbered.
    _assert_range(check(renumber(deleted), notes, directory), seq)

    # 6. clever swap: renumbered.
    if position < N - 1:
        _assert_range(check(renumber(swapped), notes, directory), seq)

    # 7. clever insertion of a forged entry before this one, renumbered.
    forged = rehash(replace(original, event_type="referral.forged"))
    _assert_range(check(renumber(entries[:position] + [forged] + entries[position:]), notes, directory), seq)


def test_precise_finding_after_an_earlier_range_reports_the_range(entries, notes, directory) -> None:
    """A clever edit at seq 5 and a naive one at seq 30: the first bad entry is within 2..10."""
    tampered = list(entries)
    tampered[4] = rehash(replace(entries[4], actor="x"))
    tampered[29] = replace(entries[29], actor="y")
    report = check(tampered, notes, directory)
    assert (report.first_bad.first_seq, report.first_bad.last_seq) == (2, 10)
    assert {f.check for f in report.findings} == {"root_mismatch", "entry_hash"}
    assert "FIRST BAD ENTRY is within seq 2..10 (root_mismatch)" in report.lines()


def test_truncation(records, entries, directory) -> None:
    hashes = [r.entry_hash for r in records]
    full = [sign_checkpoint(demo_identity(NIGER), size, merkle.root(hashes[:size]), SIGNED) for size in (40, 60)]
    report = check(entries[:57], full, directory)
    assert not report.ok
    assert (report.first_bad.check, report.first_bad.first_seq, report.first_bad.last_seq) == ("truncated", 41, 58)
    report = check(entries[:59], full, directory)
    assert (report.first_bad.first_seq, report.first_bad.last_seq) == (41, 60)
    # Cut exactly at the proven prefix: the first missing entry is known.
    _assert_precise(check(entries[:40], full, directory), 41, "truncated")
    report = check(entries[:30], full, directory)
    assert {f.check for f in report.findings} == {"truncated"}
    assert (report.first_bad.first_seq, report.first_bad.last_seq) == (1, 31)


def test_bad_checkpoints_fail(records, entries, notes, directory) -> None:
    other = sign_checkpoint(demo_identity(NIGERIA), 10, merkle.root([r.entry_hash for r in records[:10]]), SIGNED)
    flipped = bytearray(notes[2])
    flipped[-5] ^= 1
    report = check(entries, [*notes, other, bytes(flipped), b"not json"], directory)
    assert not report.ok and report.checkpoints == len(SIZES)
    checks = [f.message for f in report.findings if f.check == "checkpoint_invalid"]
    assert len(checks) == 3
    assert "checkpoint_wrong_origin" in checks[0]
    assert "#7" in checks[1] and "#8" in checks[2]
    assert report.first_bad is None  # no entry is blamed
    assert report.lines()[-1] == "verification FAILED"


def test_forked_checkpoints(records, entries, notes, directory) -> None:
    """The origin signed another history for size 10; size 25 (matching) proves the export."""
    hashes = [r.entry_hash for r in records]
    forked = list(hashes)
    forked[3] = merkle.node_hash(forked[3], forked[3])
    fork_note = sign_checkpoint(demo_identity(NIGER), 10, merkle.root(forked[:10]), SIGNED + timedelta(hours=5))
    report = check(entries, [*notes, fork_note], directory)
    kinds = [f.check for f in report.findings]
    assert kinds.count("checkpoint_inconsistent") == 1 and kinds.count("checkpoint_fork") == 1
    assert report.first_bad is None and report.covered == 55


def test_report_never_carries_entry_contents(entries, notes, directory) -> None:
    tampered = list(entries)
    tampered[12] = replace(entries[12], actor="Jane Victim-Name")
    tampered[40] = rehash(replace(entries[40], detail={"name": "Jane Victim-Name"}))
    report = check(renumber(tampered[:20] + tampered[21:]), notes, directory)
    text = "\n".join(report.lines()) + repr(report)
    assert "Jane" not in text and "caseworker" not in text and "ne-ng-case" not in text


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    from gateway.demo_identities import demo_directory_files

    out = tmp_path / "keys"
    out.mkdir()
    for name, data in demo_directory_files().items():
        (out / name).write_bytes(data)
    return out


def _verify(capsys, log: Path, notes: Path, keys: Path, origin: str = NIGER) -> tuple[int, str, str]:
    from gateway.cli import main

    code = main(["audit", "verify", "--log", str(log), "--checkpoints", str(notes), "--origin", origin,
                 "--directory", str(keys / "directory.json"), "--authority", str(keys / "authority.pub.json")])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_verify(tmp_path, capsys, keys_dir, records, notes) -> None:
    log = tmp_path / "export.jsonl"
    log.write_text("".join(jsonl_lines(records)), encoding="utf-8")
    notes_file = tmp_path / "notes.jsonl"
    notes_file.write_bytes(b"".join(n + b"\n" for n in notes))

    code, out, _ = _verify(capsys, log, notes_file, keys_dir)
    assert code == 0 and "verification OK" in out and "entries 56..60 are not yet covered" in out

    lines = log.read_text(encoding="utf-8").split("\n")
    obj = json.loads(lines[16])
    obj["actor"] = "tampered"
    lines[16] = json.dumps(obj)
    log.write_text("\n".join(lines), encoding="utf-8")
    code, out, _ = _verify(capsys, log, notes_file, keys_dir)
    assert code == 1
    assert "FIRST BAD ENTRY: seq 17 (entry_hash)" in out and "tampered" not in out

    code, _, err = _verify(capsys, log, notes_file, keys_dir, origin=NIGERIA)  # notes are Niger's
    assert code == 1

    log.write_text('{"seq": 1}\n', encoding="utf-8")
    code, _, err = _verify(capsys, log, notes_file, keys_dir)
    assert code == 2 and "line 1" in err and "audit_export_malformed" in err
    code, _, err = _verify(capsys, tmp_path / "missing.jsonl", notes_file, keys_dir)
    assert code == 2 and "cannot read" in err
    (keys_dir / "directory.json").write_bytes(b"{}")
    code, _, err = _verify(capsys, log, notes_file, keys_dir)
    assert code == 2 and "directory_malformed" in err


def test_cli_verify_keeps_line_separators_inside_strings(tmp_path, capsys, keys_dir) -> None:
    entry = AuditEntry(at=T0, event_type="note", actor="a\u2028b", detail_json='{"x":"y\\u2029z"}')
    record = AuditRecord(1, entry.at, entry.event_type, entry.actor, None, None, entry.detail_json, entry.entry_hash)
    log = tmp_path / "export.jsonl"
    log.write_text("".join(jsonl_lines([record])), encoding="utf-8")
    assert "\u2028" in log.read_text(encoding="utf-8")
    notes_file = tmp_path / "notes.jsonl"
    notes_file.write_bytes(sign_checkpoint(demo_identity(NIGER), 1, entry.entry_hash, SIGNED) + b"\n")
    code, out, _ = _verify(capsys, log, notes_file, keys_dir)
    assert code == 0, out


async def _seed_store(url: str, records: list[AuditRecord], notes: list[bytes]) -> None:
    from gateway.audit.checkpoint import parse_checkpoint, to_record
    from gateway.store import open_store

    store = await open_store(url)
    try:
        for r in records:
            await store.append_audit(AuditEntry(at=r.at, event_type=r.event_type, actor=r.actor, case_ref=r.case_ref,
                                                message_id=r.message_id, detail_json=r.detail_json, agency=r.agency))
        for note in notes:
            await store.add_checkpoint(to_record(parse_checkpoint(note), note, SIGNED))
    finally:
        await store.close()


def test_cli_export_and_checkpoints_round_trip(tmp_path, capsys, keys_dir, records, notes) -> None:
    import asyncio

    from gateway.cli import main

    url = f"sqlite:///{tmp_path / 'g.db'}"
    asyncio.run(_seed_store(url, records, list(reversed(notes))))
    log, notes_file, table = tmp_path / "export.jsonl", tmp_path / "notes.jsonl", tmp_path / "export.csv"
    assert main(["audit", "export", "--store-url", url, "--out", str(log)]) == 0
    assert main(["audit", "checkpoints", "--store-url", url, "--origin", NIGER, "--out", str(notes_file)]) == 0
    assert main(["audit", "export", "--store-url", url, "--format", "csv", "--out", str(table)]) == 0
    err = capsys.readouterr().err
    assert f"exported {N} audit entries (jsonl)" in err and f"wrote {len(SIZES)} checkpoint(s)" in err
    assert log.read_text(encoding="utf-8") == "".join(jsonl_lines(records))
    assert notes_file.read_bytes() == b"".join(n + b"\n" for n in notes)  # smallest tree first
    assert (log.stat().st_mode & 0o777) == 0o600
    assert len(list(csv.reader(table.open(newline="", encoding="utf-8")))) == N + 1

    code, out, _ = _verify(capsys, log, notes_file, keys_dir)
    assert code == 0, out

    # to standard output
    assert main(["audit", "checkpoints", "--store-url", url, "--origin", NIGERIA]) == 0
    out = capsys.readouterr().out
    assert out == ""
    assert main(["audit", "export", "--store-url", url]) == 0
    assert capsys.readouterr().out == "".join(jsonl_lines(records))


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(timezone.utc)))
def test_leaf_time_format_matches_the_documented_strftime(moment) -> None:
    from gateway.audit.leaf import AT_FORMAT, format_at

    assert format_at(moment) == moment.strftime(AT_FORMAT)
