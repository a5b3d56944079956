"""``gateway demo``: two demo agencies exchange a referral, offline, step by step.

Until the gateway service lands this runs the cryptographic round trip in one process:
build → validate → sign/encrypt at ANLTP-TIM (Niger) → relay check → verify/decrypt/
validate at NAPTIP (Nigeria) → signed response and receipt back. It prints ids, types,
sizes and check results, never the person's data.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

from gateway import errors
from gateway.b64 import b64url_decode
from gateway.clock import format_ts, utcnow
from gateway.demo_identities import demo_identity
from gateway.directory import Directory, load_directory
from gateway.envelope import MemoryReplayGuard, open_sealed, seal, verify_origin
from gateway.pseudonym import case_pseudonym
from gateway.schema import load_example

DEMO_KEYS = Path(__file__).resolve().parents[2] / "keys" / "demo"
SENDER, RECIPIENT = "NE-ANLTP-TIM", "NG-NAPTIP"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` command."""
    parser = sub.add_parser("demo", help="run the two-agency demo (offline round trip)")
    parser.add_argument("--keys-dir", type=Path, default=DEMO_KEYS, help="folder with directory.json and authority.pub.json")
    parser.set_defaults(func=run)


def load_demo_directory(keys_dir: Path) -> Directory:
    """Load the demo directory, verifying its signature with the demo authority key."""
    authority = json.loads((keys_dir / "authority.pub.json").read_text(encoding="utf-8"))
    return load_directory((keys_dir / "directory.json").read_bytes(), [b64url_decode(authority["public_key"])])


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what happened at each step."""
    say = _Printer()
    directory = load_demo_directory(args.keys_dir)
    say.step(f"Directory {directory.authority} serial {directory.serial} verified: "
             f"{len(directory.agencies)} agencies ({', '.join(sorted(directory.agencies))})")
    niger, nigeria = demo_identity(SENDER), demo_identity(RECIPIENT)
    now = utcnow()
    # Demo-only secret: a real agency keeps its pseudonym secret in its key store.
    case_ref = case_pseudonym(b"demo pseudonym secret for NE-ANLTP-TIM only!", "NE-ZINDER-2026-0142", "NE", "NG")

    referral = load_example("referral.request")
    header, wire = seal(referral, message_type="referral.request", sender=niger, recipient=RECIPIENT,
                        directory=directory, case_ref=case_ref, now=now)
    say.step(f"{SENDER} sealed {header.type} {header.id} for {RECIPIENT}: purposes {referral['purposes']}, "
             f"case {header.case}, {len(wire)} bytes on the wire, expires {format_ts(header.expires)}")
    say.detail(f"signed with key {header.sig_kid}, encrypted to key {header.enc_kid}")

    relayed = verify_origin(wire, directory, now=now)
    say.step(f"Relay checked origin without decrypting: sender {relayed.sender}, outer signature valid")

    naptip_guard = MemoryReplayGuard()
    opened = open_sealed(wire, recipient=nigeria, directory=directory, replay_guard=naptip_guard, now=now)
    say.step(f"{RECIPIENT} opened {opened.header.id}: signatures, keys, times, replay and schema checks passed; "
             f"{len(opened.payload)} top-level fields, {len(opened.payload_bytes)} payload bytes")

    for label, attempt in (
        ("replayed copy", lambda: open_sealed(wire, recipient=nigeria, directory=directory,
                                              replay_guard=naptip_guard, now=now)),
        ("tampered copy", lambda: open_sealed(_tamper(wire), recipient=nigeria, directory=directory,
                                              replay_guard=MemoryReplayGuard(), now=now)),
        ("copy opened by ML-DNPEF", lambda: open_sealed(wire, recipient=demo_identity("ML-DNPEF"),
                                                        directory=directory, replay_guard=None, now=now)),
    ):
        try:
            attempt()
        except errors.EnvelopeError as exc:
            say.step(f"{label} rejected: [{exc.code}] {exc}")
        else:  # pragma: no cover - would be a security bug
            raise SystemExit(f"demo failure: {label} was accepted")

    later = now + timedelta(seconds=1)
    receipt = dict(load_example("receipt"), message_id=header.id)
    _, receipt_wire = seal(receipt, message_type="receipt", sender=nigeria, recipient=SENDER, directory=directory,
                           case_ref=case_ref, now=later, in_reply_to=header.id)
    response = dict(load_example("referral.response"), request_message_id=header.id)
    _, response_wire = seal(response, message_type="referral.response", sender=nigeria, recipient=SENDER,
                            directory=directory, case_ref=case_ref, now=later, in_reply_to=header.id)
    niger_guard = MemoryReplayGuard()
    for wire_back in (receipt_wire, response_wire):
        back = open_sealed(wire_back, recipient=niger, directory=directory, replay_guard=niger_guard, now=later)
        state = back.payload.get("status") or back.payload.get("decision")
        say.step(f"{SENDER} received {back.header.type} from {back.header.sender} "
                 f"in reply to {back.header.in_reply_to}: {state}")
    say.step("Done: referral delivered, verified, answered; no personal data was printed or put in a header.")
    return 0


def _tamper(wire: bytes) -> bytes:
    doc = json.loads(wire)
    doc["header"]["recipient"] = "NG-IOM"
    return json.dumps(doc).encode()


class _Printer:
    def __init__(self) -> None:
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        print(f"[{self.n:2d}] {text}", flush=True)

    def detail(self, text: str) -> None:
        print(f"     {text}", flush=True)
