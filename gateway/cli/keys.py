"""``gateway keys ...``: agency key files, the directory draft, signing and verifying it.

Operator tooling: reads and writes files, never prompts (passphrases come from an
environment variable or a file, so it runs unattended in CI). See docs/keys.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from gateway import keyfile
from gateway.canonical import strict_loads
from gateway.clock import format_ts, parse_ts, utcnow
from gateway.directory import (
    ACCEPTABLE_PURPOSES,
    AGENCY_ID,
    FORMAT,
    IMPLIED_TYPES,
    KID,
    MAX_SERIAL,
    ORG_TYPES,
    ROLES,
    Directory,
    directory_digest,
    load_directory,
    parse_document,
    sign_directory,
)
from gateway.errors import DirectoryError, KeyFileError, MalformedDirectoryError, UnknownAgencyError
from gateway.keyfile import KeyPair

DEFAULT_VALID_DAYS = 365
DEFAULT_AUTHORITY_VALID_DAYS = 5 * 365
DEFAULT_OVERLAP_DAYS = 30
DEFAULT_ENC_PERIOD_DAYS = 7
DEFAULT_ENC_PERIODS_AHEAD = 4


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``keys`` command group."""
    keys = sub.add_parser(
        "keys", help="key files and directory tooling",
        description="Agency key files, the directory draft, signing and verifying it (see docs/keys.md).",
    )
    cmds = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("generate", help="generate a signing and an encryption key for an agency")
    p.add_argument("--agency", required=True, help="agency id, e.g. NE-ANLTP-TIM")
    p.add_argument("--out", required=True, type=Path, help="key directory to create or fill (must hold no keys)")
    p.add_argument("--valid-days", type=_positive, default=DEFAULT_VALID_DAYS, help="days the new keys are valid")
    _passphrase_options(p)
    p.set_defaults(func=cmd_generate)

    p = cmds.add_parser("rotate", help="add new key(s) valid from now; cut the old ones to end after the overlap")
    p.add_argument("--key-dir", required=True, type=Path, help="the agency's key directory")
    p.add_argument("--use", required=True, choices=("sig", "enc", "both"),
                   help="rotate the signing key, the encryption key, or both")
    p.add_argument("--overlap-days", type=_non_negative, default=DEFAULT_OVERLAP_DAYS,
                   help="days the old key stays valid next to the new one")
    p.add_argument("--valid-days", type=_positive, default=DEFAULT_VALID_DAYS, help="days the new keys are valid")
    _passphrase_options(p)
    p.set_defaults(func=cmd_rotate)

    p = cmds.add_parser("enc-ahead", help="generate short-lived encryption keys ahead; print their public entries")
    p.add_argument("--key-dir", required=True, type=Path, help="the agency's key directory")
    p.add_argument("--period-days", type=_positive, default=DEFAULT_ENC_PERIOD_DAYS,
                   help="days each encryption key is valid (the gateway's enc_key_period_days)")
    p.add_argument("--periods", type=_positive, default=DEFAULT_ENC_PERIODS_AHEAD,
                   help="make sure this many encryption keys (the current one included) end later than now")
    p.add_argument("--shorten-current", action="store_true",
                   help="cut a long-lived current encryption key to end one period from now (switching to "
                        "short-lived keys)")
    _passphrase_options(p)
    p.set_defaults(func=cmd_enc_ahead)

    p = cmds.add_parser("export", help="print the public entries of a key directory as JSON")
    p.add_argument("--key-dir", required=True, type=Path, help="the agency's key directory")
    _passphrase_options(p)
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser("draft-init", help="write a new, empty directory draft (serial 0: never signed)")
    p.add_argument("--out", required=True, type=Path, help="draft file to create (refused if it exists)")
    p.add_argument("--authority", required=True, help="authority name, as in authority.pub.json")
    p.add_argument("--demo", action="store_true", help="mark the directory as a demo directory (never in production)")
    p.set_defaults(func=cmd_draft_init)

    p = cmds.add_parser("add-agency", help="add an agency entry (no keys yet) to a directory draft")
    p.add_argument("--draft", required=True, type=Path, help="unsigned directory draft to change in place")
    p.add_argument("--agency", required=True, help="agency id, e.g. NG-NAPTIP (country code first)")
    p.add_argument("--name", required=True, help="the agency's full name")
    p.add_argument("--org-type", required=True, help=f"one of: {', '.join(sorted(ORG_TYPES))}")
    p.add_argument("--role", required=True, action="append", dest="roles",
                   help=f"repeat for each role; one of: {', '.join(sorted(ROLES))}")
    p.add_argument("--accepts", required=True, action="append", dest="message_types",
                   help="repeat for each message type it receives (receipt, consent.withdrawal.ack and "
                        "audit.checkpoint are implied)")
    p.add_argument("--purpose", action="append", dest="purposes", default=[],
                   help=f"repeat for each referral purpose it accepts; one of: {', '.join(sorted(ACCEPTABLE_PURPOSES))}")
    p.set_defaults(func=cmd_add_agency)

    p = cmds.add_parser("revoke", help="add a revocation to an unsigned directory draft")
    p.add_argument("--draft", required=True, type=Path, help="unsigned directory draft to change in place")
    p.add_argument("--kid", required=True, help="key id to revoke")
    p.add_argument("--reason", required=True, help="why, e.g. compromised or superseded (recorded in the directory)")
    p.add_argument("--at", type=_timestamp, help="revocation time (default: now)")
    p.set_defaults(func=cmd_revoke)

    p = cmds.add_parser("add-keys", help="merge an agency's public.json into a directory draft")
    p.add_argument("--draft", required=True, type=Path, help="unsigned directory draft to change in place")
    p.add_argument("--agency", required=True, help="agency id the keys belong to")
    p.add_argument("--public", required=True, type=Path, help="public.json written by generate/rotate")
    p.set_defaults(func=cmd_add_keys)

    p = cmds.add_parser("sign-directory",
                        help="sign a directory draft with the authority key, with the next serial")
    p.add_argument("--draft", required=True, type=Path,
                   help="unsigned directory draft (its serial and issued are set to the signed ones)")
    p.add_argument("--authority-key", required=True, type=Path, help="the authority's private key file")
    p.add_argument("--out", required=True, type=Path,
                   help="signed directory to write (directory.json); if it exists it is the previous publication")
    p.add_argument("--previous", type=Path,
                   help="the last published signed directory, if not --out (the new serial is above its serial)")
    _passphrase_options(p)
    p.set_defaults(func=cmd_sign_directory)

    p = cmds.add_parser("publish-directory", help="publish a signed directory to every gateway over the broker")
    p.add_argument("--directory", required=True, type=Path, help="signed directory (directory.json)")
    p.add_argument("--authority-pub", required=True, type=Path,
                   help="pinned authority key (authority.pub.json): refuse to publish what gateways would refuse")
    p.add_argument("--amqp-url-env", default="AMQP_URL", metavar="VAR",
                   help="environment variable holding the broker URL with the authority's broker user "
                        "(default AMQP_URL)")
    p.add_argument("--exchange", default="referrals.directory", help="the directory fanout exchange")
    p.set_defaults(func=cmd_publish_directory)

    p = cmds.add_parser("verify-directory", help="verify a signed directory and list key status")
    p.add_argument("--directory", required=True, type=Path, help="signed directory (directory.json)")
    p.add_argument("--authority-pub", required=True, type=Path, help="pinned authority key (authority.pub.json)")
    p.add_argument("--at", type=_timestamp, help="time to evaluate key status at (default: now)")
    p.set_defaults(func=cmd_verify_directory)

    p = cmds.add_parser("authority-generate", help="generate a directory authority signing key")
    p.add_argument("--out", required=True, type=Path, help="folder for the authority key and authority.pub.json")
    p.add_argument("--name", default="DIRECTORY-AUTHORITY", help="authority name as written in the directory")
    p.add_argument("--valid-days", type=_positive, default=DEFAULT_AUTHORITY_VALID_DAYS,
                   help="days the authority key is valid")
    _passphrase_options(p)
    p.set_defaults(func=cmd_authority_generate)

    p = cmds.add_parser("demo-directory", help="DEMO ONLY: write the demo directory from public demo keys")
    p.add_argument("--out", required=True, type=Path, help="folder to write the demo directory and its authority key to")
    p.set_defaults(func=cmd_demo_directory)


# --- agency key directories -------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate one sig and one enc key; write ``<kid>.key`` files and ``public.json``."""
    if not AGENCY_ID.fullmatch(args.agency):
        raise MalformedDirectoryError(f"--agency: {args.agency!r} is not an agency id like NE-ANLTP-TIM")
    passphrase = _passphrase(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob(f"*{keyfile.KEY_SUFFIX}")):
        raise KeyFileError(f"{out} already holds key files; use 'gateway keys rotate' to add keys")
    pairs = list(keyfile.generate_agency_keys(args.agency, not_before=utcnow(), valid_days=args.valid_days))
    for pair in pairs:
        keyfile.write_key_file(keyfile.key_path(out, pair), pair, passphrase, limits=keyfile.DEFAULT_LIMITS)
    _write_public(out, args.agency, pairs)
    for pair in pairs:
        print(f"{pair.use} {pair.kid} {args.agency} valid {_period(pair)}")
    print(f"wrote {len(pairs)} key files and {out / keyfile.PUBLIC_FILE}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    """New key(s) valid from now; current keys of that use are cut to end at now + overlap."""
    passphrase = _passphrase(args)
    pairs = keyfile.read_key_dir(args.key_dir, passphrase)
    agency_id = _single_agency(pairs, args.key_dir)
    now = utcnow()
    cut = now + timedelta(days=args.overlap_days)
    uses: tuple[keyfile.KeyUse, ...] = ("sig", "enc") if args.use == "both" else (args.use,)
    new = [
        keyfile.generate_key(agency_id, use, not_before=now, not_after=now + timedelta(days=args.valid_days))
        for use in uses
    ]
    shortened = [
        keyfile.shorten(p, cut) for p in pairs if p.use in uses and p.valid_at(now) and p.not_after > cut
    ]
    # New keys first: if anything fails later the old keys are still intact.
    for pair in new + shortened:
        keyfile.write_key_file(keyfile.key_path(args.key_dir, pair), pair, passphrase, limits=keyfile.DEFAULT_LIMITS)
    by_kid = {p.kid: p for p in pairs} | {p.kid: p for p in shortened} | {p.kid: p for p in new}
    _write_public(args.key_dir, agency_id, list(by_kid.values()))
    for pair in new:
        print(f"new {pair.use} {pair.kid} valid {_period(pair)}")
    for pair in shortened:
        print(f"old {pair.use} {pair.kid} now ends {format_ts(pair.not_after)}")
    print(f"updated {args.key_dir / keyfile.PUBLIC_FILE}; add it to the directory draft with 'gateway keys add-keys'")
    return 0


def cmd_enc_ahead(args: argparse.Namespace) -> int:
    """Generate the encryption keys of the coming periods; print the entries the authority adds."""
    passphrase = _passphrase(args)
    pairs = keyfile.read_key_dir(args.key_dir, passphrase)
    agency_id = _single_agency(pairs, args.key_dir)
    now = utcnow()
    period = timedelta(days=args.period_days)
    changed = []
    if args.shorten_current:
        changed = [keyfile.shorten(p, now + period) for p in pairs
                   if p.use == "enc" and p.valid_at(now) and p.not_after > now + period]
    new = plan_enc_keys([*changed, *pairs], agency_id, now=now, period=period, periods=args.periods)
    for pair in new + changed:  # new keys first: if anything fails the old ones are intact
        keyfile.write_key_file(keyfile.key_path(args.key_dir, pair), pair, passphrase, limits=keyfile.DEFAULT_LIMITS)
    by_kid = {p.kid: p for p in pairs} | {p.kid: p for p in changed} | {p.kid: p for p in new}
    _write_public(args.key_dir, agency_id, list(by_kid.values()))
    # stdout: exactly the records to hand to the authority ('gateway keys add-keys --public FILE').
    print(json.dumps(keyfile.public_document(agency_id, changed + new), indent=2))
    for pair in new:
        print(f"new enc {pair.kid} valid {_period(pair)}", file=sys.stderr)
    for pair in changed:
        print(f"current enc {pair.kid} now ends {format_ts(pair.not_after)}", file=sys.stderr)
    if not new and not changed:
        print(f"{args.periods} encryption key(s) already end later than now; nothing to add", file=sys.stderr)
    return 0


def plan_enc_keys(pairs: list[KeyPair], agency_id: str, *, now: datetime, period: timedelta,
                  periods: int) -> list[KeyPair]:
    """New encryption keys, back to back after the last one, so that ``periods`` keys (the
    current one included) end later than ``now``. Counting keys, not time, keeps a re-run a
    few seconds later from adding a key.

    Each new key starts when the latest-ending key ends (or now), so at every moment one key
    is valid and senders, who seal to the newest valid key, switch at the boundary."""
    latest: dict[str, KeyPair] = {}
    for pair in pairs:  # the first version of a kid wins (a shortened copy comes first in pairs)
        latest.setdefault(pair.kid, pair)
    live = [p for p in latest.values() if p.use == "enc" and p.not_after > now]
    start = max((p.not_after for p in live), default=now)
    new = []
    for _ in range(periods - len(live)):
        pair = keyfile.generate_key(agency_id, "enc", not_before=start, not_after=start + period)
        new.append(pair)
        start = pair.not_after
    return new


def cmd_export(args: argparse.Namespace) -> int:
    """Print the public entries of every key in the directory."""
    pairs = keyfile.read_key_dir(args.key_dir, _passphrase(args))
    agency_id = _single_agency(pairs, args.key_dir)
    print(json.dumps(keyfile.public_document(agency_id, pairs), indent=2))
    return 0


def _write_public(key_dir: Path, agency_id: str, pairs: list[KeyPair]) -> None:
    _write_text(key_dir / keyfile.PUBLIC_FILE, json.dumps(keyfile.public_document(agency_id, pairs), indent=2) + "\n")


def _single_agency(pairs: list[KeyPair], key_dir: Path) -> str:
    agencies = sorted({p.agency_id for p in pairs})
    if len(agencies) != 1:
        raise KeyFileError(f"{key_dir} holds keys of several agencies ({', '.join(agencies)}); keep one per directory")
    return agencies[0]


# --- the directory draft ----------------------------------------------------------------


def cmd_draft_init(args: argparse.Namespace) -> int:
    """Write an empty draft: no agencies, no revocations, serial 0 (the first signature makes it 1)."""
    if not str(args.authority).strip():
        raise MalformedDirectoryError("--authority: must be a non-empty name")
    if Path(args.out).exists():
        raise DirectoryError(f"{args.out} already exists; edit it, or choose another --out")
    draft = {"format": FORMAT, "authority": args.authority, "serial": 0, "issued": format_ts(utcnow()),
             "demo": bool(args.demo), "agencies": [], "revocations": []}
    _write_draft(args.out, draft)
    print(f"wrote {args.out}: add agencies with 'gateway keys add-agency', their keys with 'add-keys', "
          f"then 'sign-directory'")
    return 0


def cmd_add_agency(args: argparse.Namespace) -> int:
    """Add one agency entry (checked against the vocabularies) with no keys yet."""
    draft = _read_draft(args.draft)
    if any(a.get("id") == args.agency for a in draft["agencies"]):
        raise DirectoryError(f"agency {args.agency!r} is already in {args.draft}")
    entry = {"id": args.agency, "country": args.agency[:2], "name": args.name, "org_type": args.org_type,
             "roles": list(dict.fromkeys(args.roles)),
             "accepts": {"message_types": list(dict.fromkeys(args.message_types)),
                         "purposes": list(dict.fromkeys(args.purposes))},
             "keys": []}
    # Checked on its own first so the error names the option, not a position in the draft.
    try:
        parse_document({**draft, "agencies": [entry], "revocations": []}, draft=True)
    except MalformedDirectoryError as exc:
        raise MalformedDirectoryError(_option_error(str(exc))) from None
    draft["agencies"].append(entry)
    _write_draft(args.draft, draft)
    implied = sorted(IMPLIED_TYPES - set(args.message_types))
    print(f"added {args.agency} (no keys yet: 'gateway keys add-keys'); also accepted, always: {', '.join(implied)}")
    return 0


def _option_error(text: str) -> str:
    """Name the CLI option for an error about the single agency entry being added."""
    for path, option in ((".accepts.message_types", "--accepts"), (".accepts.purposes", "--purpose"),
                         (".roles", "--role"), (".org_type", "--org-type"), (".id", "--agency"), (".name", "--name"),
                         (".country", "--agency")):
        marker = "$.agencies[0]" + path
        if text.startswith(marker):
            rest = text[len(marker):]
            if rest.startswith("["):  # "[2]: ..." -> "--accepts #3: ..."
                index, _, rest = rest[1:].partition("]")
                return f"{option} #{int(index) + 1}{rest}"
            return f"{option}{rest}"
    return text


def cmd_revoke(args: argparse.Namespace) -> int:
    """Add a revocation for a key listed in the draft (the serial is set when it is signed)."""
    draft = _read_draft(args.draft)
    kid = args.kid
    if not KID.fullmatch(kid):
        raise MalformedDirectoryError(f"--kid: {kid!r} is not a key id (32 lowercase hex digits)")
    owners = [a["id"] for a in draft["agencies"] for k in a["keys"] if k.get("kid") == kid]
    if not owners:
        raise DirectoryError(f"key {kid} is not listed under any agency in {args.draft}")
    if any(r.get("kid") == kid for r in draft["revocations"]):
        raise DirectoryError(f"key {kid} is already revoked in {args.draft}")
    now = utcnow()
    draft["revocations"].append({"kid": kid, "revoked_at": format_ts(args.at or now), "reason": args.reason})
    _write_draft(args.draft, draft)
    print(f"revoked {kid} of {owners[0]} in the draft; sign and publish it now")
    return 0


def cmd_add_keys(args: argparse.Namespace) -> int:
    """Merge exported public entries into an agency's keys (same kid: replaced)."""
    draft = _read_draft(args.draft)
    public = _read_json(args.public, DirectoryError)
    if not isinstance(public, dict) or set(public) != {"format", "agency", "keys"} or public["format"] != keyfile.PUBLIC_FORMAT:
        raise MalformedDirectoryError(f"{args.public}: not a {keyfile.PUBLIC_FORMAT} document (write it with 'gateway keys export')")
    if public["agency"] != args.agency:
        # Guards against merging one agency's keys into another agency's entry.
        raise DirectoryError(f"{args.public} holds keys of {public['agency']!r}, not of {args.agency!r}")
    agency = next((a for a in draft["agencies"] if a.get("id") == args.agency), None)
    if agency is None:
        raise UnknownAgencyError(f"agency {args.agency!r} is not in {args.draft}; add its entry to the draft first")
    entries = public["keys"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MalformedDirectoryError(f"{args.public}: keys must be an array of objects")
    others = {k.get("kid"): a["id"] for a in draft["agencies"] if a is not agency for k in a["keys"]}
    for entry in entries:
        if entry.get("kid") in others:
            raise DirectoryError(f"key {entry.get('kid')} already belongs to {others[entry.get('kid')]}")
    incoming = {e.get("kid") for e in entries}
    agency["keys"] = [k for k in agency["keys"] if k.get("kid") not in incoming] + entries
    _write_draft(args.draft, draft)
    print(f"merged {len(entries)} key(s) into {args.agency} in the draft; sign and publish it")
    return 0


def _read_draft(path: Path) -> dict[str, Any]:
    draft = _read_json(path, DirectoryError)
    if isinstance(draft, dict) and set(draft) == {"directory", "signature"}:
        raise MalformedDirectoryError(f"{path} is a signed directory; pass the draft (its inner 'directory' object)")
    parse_document(draft, draft=True)  # refuse to edit something we could not sign
    return draft


def _write_draft(path: Path, draft: dict[str, Any]) -> None:
    parse_document(draft, draft=True)  # never leave an unsignable draft behind
    _write_text(path, json.dumps(draft, indent=2, ensure_ascii=False) + "\n")


# --- signing and verifying --------------------------------------------------------------


def cmd_sign_directory(args: argparse.Namespace) -> int:
    """Sign a draft with the next serial and issued = now; write the signed directory and the
    signed serial back into the draft."""
    draft = _read_draft(args.draft)
    authority = keyfile.read_key_file(args.authority_key, _passphrase(args))
    now = utcnow()
    if not authority.valid_at(now):
        raise KeyFileError(f"authority key {authority.kid} is not valid now (valid {_period(authority)})")
    if authority.agency_id != draft["authority"]:
        raise KeyFileError(f"authority key belongs to {authority.agency_id!r} but the draft names {draft['authority']!r}")
    previous = _previous_serial(args.previous or args.out, bytes(authority.signing_key().verify_key),
                                explicit=args.previous is not None)
    serial = max(draft["serial"], previous) + 1
    if serial > MAX_SERIAL:
        raise DirectoryError("the serial would exceed 2^53 - 1")
    draft["serial"], draft["issued"] = serial, format_ts(now)
    signed = sign_directory(draft, authority.signing_key())
    # The draft first: if writing the signed file fails, the next signature still gets a new serial.
    _write_draft(args.draft, draft)
    _write_bytes(args.out, signed)
    print(f"signed directory serial {serial} (previous publication: {previous or 'none'}) with authority key "
          f"{authority.kid} -> {args.out}; publish it with 'gateway keys publish-directory'")
    return 0


def _previous_serial(path: Path, authority_public: bytes, *, explicit: bool) -> int:
    """The serial of the last publication (0 if there is none yet); it must verify."""
    if not Path(path).exists():
        if explicit:
            raise DirectoryError(f"--previous {path} does not exist")
        return 0
    try:
        return load_directory(_read_bytes(path, DirectoryError), [authority_public]).serial
    except DirectoryError as exc:
        raise DirectoryError(f"the previous publication {path} does not verify with this authority key "
                             f"({exc.code}); pass the last published directory with --previous") from None


def cmd_publish_directory(args: argparse.Namespace) -> int:
    """Verify a signed directory against the pinned authority key and publish it to the broker."""
    from gateway.transport.directory_feed import publish_directory_amqp

    _, public_key = keyfile.parse_authority_public(
        _read_bytes(args.authority_pub, KeyFileError), source=str(args.authority_pub))
    signed = _read_bytes(args.directory, DirectoryError)
    directory = load_directory(signed, [public_key])
    url = os.environ.get(args.amqp_url_env, "")
    if not url:
        raise DirectoryError(f"environment variable {args.amqp_url_env} is not set: it holds the broker URL of the "
                             f"authority's broker user")
    asyncio.run(publish_directory_amqp(url, args.exchange, signed))
    print(f"published directory serial {directory.serial} (sha256 {directory_digest(signed)}) to {args.exchange}")
    return 0


def cmd_verify_directory(args: argparse.Namespace) -> int:
    """Verify a signed directory against a pinned authority key; print each key's status."""
    name, public_key = keyfile.parse_authority_public(
        _read_bytes(args.authority_pub, KeyFileError), source=str(args.authority_pub)
    )
    directory = load_directory(_read_bytes(args.directory, DirectoryError), [public_key])
    at = args.at or utcnow()
    demo = " DEMO (keys are public, never use for real referrals)" if directory.demo else ""
    print(f"directory {args.directory}: authority {directory.authority}, serial {directory.serial}, "
          f"issued {format_ts(directory.issued)}{demo}")
    print(f"signature OK (authority {name}); key status at {format_ts(at)}:")
    for line in status_lines(directory, at):
        print(line)
    return 0


def status_lines(directory: Directory, at: datetime) -> list[str]:
    """Agencies, their key ids and each key's status at ``at``, one line each."""
    lines = []
    listed = set()
    for agency in directory.agencies.values():
        lines.append(f"{agency.id}  {agency.name}")
        for record in agency.keys:
            listed.add(record.kid)
            status = directory.key_status(record.kid, at=at)
            if status == "expired" and at < record.not_before:
                status = "not_yet_valid"
            lines.append(f"  {record.use} {record.kid} {status:<13} "
                         f"{format_ts(record.not_before)} .. {format_ts(record.not_after)}")
    for kid, revocation in directory.revocations.items():
        if kid not in listed:
            lines.append(f"revoked (not listed under an agency): {kid} since {format_ts(revocation.revoked_at)}")
    return lines


def cmd_authority_generate(args: argparse.Namespace) -> int:
    """Generate the authority's Ed25519 key file and ``authority.pub.json``."""
    passphrase = _passphrase(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    pair = keyfile.generate_key(args.name, "sig", not_before=now, not_after=now + timedelta(days=args.valid_days))
    path = keyfile.key_path(out, pair)
    keyfile.write_key_file(path, pair, passphrase, limits=keyfile.DEFAULT_LIMITS)
    pub = out / "authority.pub.json"
    _write_text(pub, json.dumps(keyfile.authority_public_document(args.name, pair.public_key), indent=2) + "\n")
    print(f"authority {args.name} key {pair.kid} valid {_period(pair)}")
    print(f"private key: {path} (keep offline); trust anchor for gateways: {pub}")
    return 0


def cmd_demo_directory(args: argparse.Namespace) -> int:
    """DEMO ONLY: write the signed demo directory and its authority key (both from public seeds)."""
    from gateway.demo_identities import demo_directory_files

    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in demo_directory_files().items():
        _write_bytes(args.out / name, data)
        print(f"wrote {args.out / name}")
    return 0


# --- small helpers ----------------------------------------------------------------------


def _passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-env", metavar="VAR", help="read the key-file passphrase from this environment variable")
    group.add_argument("--passphrase-file", metavar="FILE", type=Path, help="read the key-file passphrase from this file (mode 0600)")


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_env:
        text = os.environ.get(args.passphrase_env, "")
        if not text:
            raise KeyFileError(f"environment variable {args.passphrase_env} is not set or empty")
        return text.encode("utf-8")
    if args.passphrase_file:
        value = keyfile.read_private_file(args.passphrase_file).rstrip(b"\r\n")
        if not value:
            raise KeyFileError(f"passphrase file {args.passphrase_file} is empty")
        return value
    return None


def _read_bytes(path: Path, error: Callable[[str], Exception]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def _read_json(path: Path, error: Callable[[str], Exception]) -> Any:
    try:
        return strict_loads(_read_bytes(path, error))
    except ValueError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a public (non-secret) file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DirectoryError(f"cannot write {path}: {exc.strerror}") from None


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _period(pair: KeyPair) -> str:
    return f"{format_ts(pair.not_before)} .. {format_ts(pair.not_after)}"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _timestamp(text: str) -> datetime:
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
