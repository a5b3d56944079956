"""``GET /stats`` latency over many stored referrals (SQLite), received and sent.

    .venv/bin/python bench/stats_bench.py [--n 10000] [--repeat 3] [--json out.json] [--code DIR]

Fills NG-NAPTIP's store with ``--n`` received ``referral.request`` messages (real envelopes
from NE-ANLTP-TIM, encrypted at rest under per-message keys, spread over the 11 retained
complete months, with varied sex, age, nationality, referral source and purposes) and
NE-ANLTP-TIM's outbox with ``--n`` sent ones, then times ``GET /stats`` through the HTTP
app: the default answer (months), ``interval=quarter``, and ``direction=sent`` when the
code under test has it. Every answer decrypts and opens every stored payload, so the
cost grows with the store, not with the period asked.

``--code DIR`` runs against another checkout's ``gateway`` package (e.g. an export of an
older commit, to compare before and after a change); the payloads are v1 so that every
version can open them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import platform
import random
import secrets
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any


def _code_dir() -> Path:
    # Chosen before the gateway is imported, so --code decides which one.
    if "--code" in sys.argv:
        return Path(sys.argv[sys.argv.index("--code") + 1]).resolve()
    return Path(__file__).resolve().parents[1]


CODE = _code_dir()
sys.path.insert(0, str(CODE))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from gateway.api import create_app  # noqa: E402
from gateway.envelope import seal  # noqa: E402
from gateway.schema import load_example  # noqa: E402
from gateway.settings import User  # noqa: E402
from gateway.store import IncomingMessage, OutboxEntry  # noqa: E402
from testkit.gateway_pair import NIGERIA, gateway_pair  # noqa: E402

SEXES = ("female", "female", "male", "male", "unknown", "other")
NATIONALITIES = ("NG", "NG", "NG", "NE", "ML", "GN", "BF", "TD", "GH", "CM")
SOURCES = ("law_enforcement", "ngo", "iom", "state_social_services", "self_referral", "third_person")
VARIANTS = (None, "all_purposes", "minor_guardian", "safety_assessment_only")


def payload(rng: random.Random) -> dict[str, Any]:
    """A v1 referral.request with varied coarse attributes (schema-valid)."""
    body = load_example("referral.request", rng.choice(VARIANTS))
    person = dict(body["person"])
    years = rng.choice((rng.randint(3, 17), rng.randint(18, 60)))
    person.update(sex=rng.choice(SEXES), nationality=rng.choice(NATIONALITIES),
                  age={"minor": years < 18, "years": years})
    body["person"] = person
    body["identification"] = dict(body["identification"], referral_source=rng.choice(SOURCES))
    if years < 18:
        body["consent"] = dict(body["consent"], decision_maker="parent_guardian")
    return body


async def fill(ne: Any, ng: Any, n: int, rng: random.Random) -> None:
    """n received referrals in NG's inbox and n sent ones in NE's outbox, over 11 months."""
    now = datetime.now(timezone.utc)
    first = (now.replace(day=1) - timedelta(days=330)).replace(day=1)
    span = (now.replace(day=1) - first).total_seconds()
    for i in range(n):
        at = first + timedelta(seconds=rng.random() * span)
        case = f"ne-ng-bench{i:08d}"
        try:
            header, envelope = seal(payload(rng), message_type="referral.request", sender=ne.identity,
                                    recipient=NIGERIA, directory=ne.directory, case_ref=case, now=at,
                                    lifetime=timedelta(days=30))
        except Exception:  # noqa: BLE001 - a variant this combination makes invalid: draw again
            continue
        blob = await ng.at_rest.seal(header.id, case, "referral.request", envelope, at)
        await ng.store.add_incoming(IncomingMessage(header.id, ne.agency_id, "referral.request", case, blob, at))
        await ne.store.add_outgoing(OutboxEntry(header.id, case, NIGERIA, "referral.request", envelope, at))
        # As if published long ago (the publisher is idle: outbox_poll_seconds is an hour).
        await ne.store.mark_sent(header.id, at + timedelta(seconds=1))


async def timed(client: TestClient, token: str, query: str, repeat: int) -> dict[str, Any]:
    times = []
    status = 0
    body: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        async with client.get("/stats" + query, headers={"Authorization": f"Bearer {token}"}) as resp:
            status = resp.status
            body = await resp.json()
        times.append(time.perf_counter() - started)
    return {"query": query or "(default)", "status": status, "records": (body or {}).get("records"),
            "best_s": round(min(times), 3), "median_s": round(sorted(times)[len(times) // 2], 3)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        async with gateway_pair(Path(tmp), outbox_poll_seconds=3600) as (ne, ng):
            started = time.perf_counter()
            await fill(ne, ng, args.n, rng)
            fill_s = time.perf_counter() - started
            stored = len(await ng.store.list_incoming(args.n + 1))
            results = []
            for gw, queries in ((ng, ("", "?interval=quarter")), (ne, ("?direction=sent", "?direction=sent&interval=quarter"))):
                token = secrets.token_urlsafe(16)
                users = (User("supervisor.bench", "supervisor", hashlib.sha256(token.encode()).hexdigest()),)
                client = TestClient(TestServer(create_app(gw, dataclasses.replace(gw.settings, users=users))))
                await client.start_server()
                try:
                    for query in queries:
                        results.append({"gateway": gw.agency_id, **await timed(client, token, query, args.repeat)})
                finally:
                    await client.close()
    return {"code": str(CODE), "n": args.n, "stored": stored, "fill_s": round(fill_s, 1), "python": platform.python_version(),
            "machine": platform.machine(), "results": results, "run_id": uuid.uuid4().hex[:8]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--code", type=Path, help="root of the checkout whose gateway package to run")
    out = asyncio.run(main(parser.parse_args()))
    text = json.dumps(out, indent=2)
    print(text)
    if parser.parse_args().json:
        parser.parse_args().json.write_text(text + "\n")
