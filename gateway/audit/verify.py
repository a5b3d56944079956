"""Offline verification of a JSONL audit export against the origin's signed checkpoints.

What each check catches:

* ``seq``: entries must be numbered 1, 2, 3, ... in file order. A deleted, inserted or
  moved entry that kept its number shows up at the exact position.
* ``entry_hash``: the recorded hash must equal the leaf hash recomputed from the fields.
  An edited entry whose hash was not recomputed shows up exactly.
* ``root_mismatch``/``truncated``: the root of the first ``tree_size`` recomputed leaves
  must equal each checkpoint's signed root, and the export must be at least that long. An
  attacker who recomputes hashes and renumbers passes the two checks above; only a signed
  root catches them, so we can only say "the first bad entry is within seq a..b", where
  ``a - 1`` is the largest checkpoint that still matches and ``b`` the next one.
* ``checkpoint_*``: every checkpoint must verify (directory key of the origin), and
  checkpoints must agree with each other: two signed roots that cannot both be prefixes
  of one log are a fork, whatever the export says.

Entries after the last checkpoint are only as good as the two per-entry checks: reported
as a warning, not a failure. Findings name seq numbers, event types and checkpoint
positions only, never entry contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

from gateway.audit.checkpoint import Checkpoint, CheckpointError, verify_checkpoint
from gateway.audit.export import ExportedEntry
from gateway.audit.leaf import leaf_hash
from gateway.audit.merkle import MerkleFrontier
from gateway.clock import format_ts
from gateway.directory import Directory


@dataclass(frozen=True)
class Finding:
    """One failed check. ``first_seq..last_seq`` is where the first bad entry is (equal when
    pinpointed, None when the problem is not about entries, e.g. a bad signature)."""

    check: str
    message: str
    first_seq: int | None = None
    last_seq: int | None = None
    event_type: str | None = None

    @property
    def precise(self) -> bool:
        """True if the finding names one entry."""
        return self.first_seq is not None and self.first_seq == self.last_seq

    def __str__(self) -> str:
        if self.first_seq is None:
            where = ""
        elif self.precise:
            kind = f" ({self.event_type})" if self.event_type else ""
            where = f"seq {self.first_seq}{kind}: "
        else:
            where = f"seq {self.first_seq}..{self.last_seq}: "
        return f"[{self.check}] {where}{self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_export`: ok, or the first bad entry and every finding."""

    origin: str
    entries: int
    checkpoints: int  # verified checkpoints
    covered: int  # entries 1..covered are proven by a checkpoint that matches the export
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()
    first_bad: Finding | None = field(default=None)

    @property
    def ok(self) -> bool:
        """True if no check failed (warnings allowed)."""
        return not self.findings

    def lines(self) -> list[str]:
        """A human-readable summary, first bad entry first."""
        out = [f"origin {self.origin}: {self.entries} entries, {self.checkpoints} valid checkpoint(s), "
               f"entries 1..{self.covered} proven by a signed checkpoint"]
        if self.first_bad is not None:
            if self.first_bad.precise:
                out.append(f"FIRST BAD ENTRY: seq {self.first_bad.first_seq} ({self.first_bad.check})")
            elif self.first_bad.first_seq is not None:
                out.append(f"FIRST BAD ENTRY is within seq {self.first_bad.first_seq}..{self.first_bad.last_seq} "
                           f"({self.first_bad.check})")
        out += [f"FAIL {f}" for f in self.findings]
        out += [f"warning: {w}" for w in self.warnings]
        out.append("verification OK" if self.ok else "verification FAILED")
        return out


def verify_export(
    entries: Sequence[ExportedEntry],
    checkpoint_notes: Iterable[bytes],
    directory: Directory,
    *,
    origin: str,
    now: datetime | None = None,
) -> VerifyReport:
    """Check an export (file order) against ``origin``'s checkpoint notes; see the module docstring."""
    findings: list[Finding] = []
    warnings: list[str] = []
    n = len(entries)

    checkpoints: list[tuple[int, Checkpoint]] = []  # (position in the notes, checkpoint)
    for number, note in enumerate(checkpoint_notes, start=1):
        try:
            checkpoints.append((number, verify_checkpoint(note, directory, expected_origin=origin, now=now)))
        except CheckpointError as exc:
            findings.append(Finding("checkpoint_invalid", f"checkpoint #{number} rejected: [{exc.code}] {exc}"))
    checkpoints.sort(key=lambda item: (item[1].tree_size, item[1].signed_at, item[0]))

    # Per-entry checks: the first place each one breaks is exact.
    leaves: list[bytes] = []
    seq_finding: Finding | None = None
    hash_bad: list[ExportedEntry] = []
    for position, entry in enumerate(entries):
        expected = position + 1
        if seq_finding is None and entry.seq != expected:
            what = "missing (deleted?)" if entry.seq > expected else "out of order or duplicated"
            seq_finding = Finding("seq", f"expected seq {expected} at entry #{expected} of the file, found seq "
                                  f"{entry.seq}: entry {expected} is {what}", expected, expected)
        recomputed = leaf_hash(entry)
        leaves.append(recomputed)
        if entry.entry_hash != recomputed:
            hash_bad.append(entry)
    if seq_finding is not None:
        findings.append(seq_finding)
    if hash_bad:
        first = hash_bad[0]
        what = "is missing" if first.entry_hash is None else "does not match the entry's fields (modified)"
        more = f"; {len(hash_bad)} entries in all" if len(hash_bad) > 1 else ""
        findings.append(Finding("entry_hash", f"recorded entry_hash {what}{more}", first.seq, first.seq, first.event_type))

    # Roots: one pass of a frontier over the recomputed leaves, snapshot at each checkpoint size.
    frontier = MerkleFrontier()
    matched: list[tuple[int, Checkpoint, bool]] = []  # (note number, checkpoint, matches the export)
    for number, cp in checkpoints:
        if cp.tree_size > n:
            matched.append((number, cp, False))
            continue
        while frontier.size < cp.tree_size:
            frontier.append(leaves[frontier.size])
        matched.append((number, cp, frontier.root() == cp.root_hash))

    covered = max((cp.tree_size for _, cp, ok in matched if ok), default=0)
    range_finding: Finding | None = None
    for number, cp, ok in matched:
        if ok:
            continue
        if cp.tree_size <= covered:
            # A larger checkpoint that matches pins entries 1..covered; this one signed
            # something else for a prefix of them: the origin signed two histories.
            findings.append(Finding("checkpoint_inconsistent", f"checkpoint #{number} ({cp.describe()}) contradicts "
                                    f"the checkpoint that covers entries 1..{covered}: the log was forked"))
        elif range_finding is None:  # the smallest failing checkpoint above the proven prefix
            if cp.tree_size > n:
                last = min(cp.tree_size, n + 1)
                range_finding = Finding("truncated", f"checkpoint #{number} ({cp.describe()}) covers "
                                        f"{cp.tree_size} entries but the export has {n}", covered + 1, last)
            else:
                range_finding = Finding("root_mismatch", f"checkpoint #{number} ({cp.describe()}) does not match "
                                        f"the root of entries 1..{cp.tree_size}", covered + 1, cp.tree_size)
            findings.append(range_finding)
        else:
            findings.append(Finding("root_mismatch" if cp.tree_size <= n else "truncated",
                                    f"checkpoint #{number} ({cp.describe()}) does not match the export either"))
    findings.extend(_forks(checkpoints))

    if not checkpoints:
        warnings.append("no valid checkpoint: nothing proves the export is complete or unaltered")
    if n > covered:
        warnings.append(f"entries {covered + 1}..{n} are not yet covered by a checkpoint "
                        "(checked only for numbering and recorded hashes)")

    return VerifyReport(
        origin=origin,
        entries=n,
        checkpoints=len(checkpoints),
        covered=covered,
        findings=tuple(findings),
        warnings=tuple(warnings),
        first_bad=_first_bad(findings, range_finding),
    )


def _forks(checkpoints: list[tuple[int, Checkpoint]]) -> list[Finding]:
    """Two valid checkpoints with one tree size and different roots, regardless of the export."""
    found = []
    for (a_num, a), (b_num, b) in zip(checkpoints, checkpoints[1:]):
        if a.tree_size == b.tree_size and a.root_hash != b.root_hash:
            found.append(Finding("checkpoint_fork", f"checkpoints #{a_num} and #{b_num} sign different roots for "
                                 f"tree size {a.tree_size} (signed {format_ts(a.signed_at)} and {format_ts(b.signed_at)})"))
    return found


def _first_bad(findings: list[Finding], range_finding: Finding | None) -> Finding | None:
    """The earliest entry finding; an exact one wins over a range that contains or follows it."""
    exact = [f for f in findings if f.precise]
    first_exact = min(exact, key=lambda f: f.first_seq or 0) if exact else None
    if range_finding is None:
        return first_exact
    if first_exact is not None and first_exact.first_seq <= range_finding.last_seq:  # type: ignore[operator]
        return first_exact
    return range_finding
