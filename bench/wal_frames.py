"""Store writes per referral: commits and WAL frames (4 KiB pages) each gateway's SQLite
store appends for one referral, one in flight, and which tables those pages belong to.

    .venv/bin/python bench/wal_frames.py [--n 40] [--json out.json]

Two gateways (NE, NG) in this process on the in-memory transport, each with its SQLite
store, exchange ``--n`` referrals one at a time (submit, wait until NE sees the receipt).
Autocheckpoint is off during the run, so the ``-wal`` file holds every frame written: its
frame headers give the page number and mark each commit's last frame. After a checkpoint,
SQLite's ``dbstat`` table maps page numbers to tables and indexes. Every commit writes
each page it touched once, so commits not shared with other messages (low load) cost
about this many page writes; at saturation the group commit shares pages between messages.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sqlite3
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.schema import load_example  # noqa: E402
from gateway.service import Gateway  # noqa: E402
from gateway.store import SQLiteStore  # noqa: E402
from testkit.gateway_pair import NIGER, NIGERIA, gateway_pair  # noqa: E402
from testkit.harness import WORKER  # noqa: E402

WAL_HEADER, FRAME_HEADER = 32, 24


def wal_frames(db: Path) -> tuple[list[int], int]:
    """Page number of each frame in ``db``'s WAL, and how many commits the WAL holds."""
    data = Path(f"{db}-wal").read_bytes()
    (page_size,) = struct.unpack(">I", data[8:12])
    pages, commits, offset = [], 0, WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(data):
        page, commit_size = struct.unpack(">II", data[offset:offset + 8])
        pages.append(page)
        commits += commit_size != 0  # non-zero only in a commit's last frame
        offset += FRAME_HEADER + page_size
    return pages, commits


async def _pragma(gateway: Gateway, statement: str) -> None:
    store = gateway.store
    assert isinstance(store, SQLiteStore)
    await store._call(lambda conn: conn.execute(statement).fetchall())  # a bench may look inside


async def _referral(ne: Gateway, case: str) -> None:
    header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                             case_ref=case, actor=WORKER)
    while (record := await ne.store.get_outgoing(header.id)) is None or record.status != "delivered":
        await asyncio.sleep(0.005)


async def measure(n: int) -> dict[str, dict[str, object]]:
    """Commits, frames and frames by table per referral, for NE and NG."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        async with gateway_pair(tmp) as (ne, ng):
            for i in range(3):  # warm-up: tables and indexes exist beyond their first page
                await _referral(ne, f"ne-ng-walwarm{i:04d}")
            await asyncio.sleep(0.5)
            for gateway in (ne, ng):
                await _pragma(gateway, "PRAGMA wal_autocheckpoint = 0")
                await _pragma(gateway, "PRAGMA wal_checkpoint(TRUNCATE)")
            for i in range(n):
                await _referral(ne, f"ne-ng-walframes{i:05d}")
                await asyncio.sleep(0.05)  # the receipt's "sent" write lands before the next referral
            dbs = {agency: tmp / f"{agency}.db" for agency in (NIGER, NIGERIA)}
            frames = {agency: wal_frames(db) for agency, db in dbs.items()}
            for gateway in (ne, ng):
                await _pragma(gateway, "PRAGMA wal_checkpoint(TRUNCATE)")
            result: dict[str, dict[str, object]] = {}
            for agency, db in dbs.items():
                with sqlite3.connect(db) as conn:
                    owner = dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
                pages, commits = frames[agency]
                by_table = collections.Counter(owner.get(page, "(freelist)") for page in pages)
                result[agency] = {"commits": commits / n, "frames": len(pages) / n,
                                  "by_table": {name: count / n for name, count in by_table.most_common()}}
            return result


def main() -> None:
    """Run and print the per-referral figures (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(measure(args.n))
    for agency, figures in result.items():
        print(f"{agency}: {figures['commits']:.1f} commits, {figures['frames']:.1f} WAL frames per referral")
        for name, per in figures["by_table"].items():  # type: ignore[union-attr]
            print(f"    {per:5.2f}  {name}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
