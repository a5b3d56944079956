"""``gateway demo``: two agencies' gateways in one process exchange a referral over HTTP.

ANLTP-TIM (Niger) submits a referral through its HTTP API; NAPTIP (Nigeria) lists its
inbox, reads the referral (audited with a purpose) and accepts it; the demo prints the
sender's status trail. RabbitMQ at AMQP_URL is used when reachable, otherwise an
in-process broker stand-in; the demo says which. It prints ids, codes and field names,
never the person's data.

``gateway demo --serve`` instead keeps both gateways (API and workspace) running on fixed
local ports until Ctrl-C, with a caseworker and an auditor at each agency whose generated
passwords it prints once (the settings hold only their argon2 hashes).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import signal
import tempfile
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from yarl import URL

from gateway.bootstrap import open_gateway
from gateway.clock import format_ts, utcnow
from gateway.logs import configure_logging
from gateway.schema import load_example
from gateway.service import Gateway
from gateway.settings import Settings, User, load_amqp_url
from gateway.transport import MemoryBroker, WireMessage, delete_topology
from gateway.workspace.passwords import hash_password

DEMO_KEYS = Path(__file__).resolve().parents[2] / "keys" / "demo"
SENDER, RECIPIENT = "NE-ANLTP-TIM", "NG-NAPTIP"
#: ``--serve``: the workspace users of each agency (role, the start of the user name).
SERVE_USERS = (("caseworker", "caseworker"), ("auditor", "auditor"))
#: ``--serve``: the short suffix of each agency's user names (``caseworker.ne``).
SHORT = {SENDER: "ne", RECIPIENT: "ng"}


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` command."""
    parser = sub.add_parser("demo", help="two demo gateways exchange a referral (RabbitMQ if reachable)")
    parser.add_argument("--memory", action="store_true", help="use the in-process broker even if RabbitMQ is reachable")
    parser.add_argument("--serve", action="store_true",
                        help="keep both gateways and their workspaces running until Ctrl-C, with demo logins")
    parser.add_argument("--host", default="127.0.0.1", help="--serve: address to listen on (default 127.0.0.1)")
    parser.add_argument("--ne-port", type=_port, default=8081,
                        help=f"--serve: port of {SENDER}'s gateway (default 8081; 0: any free port)")
    parser.add_argument("--ng-port", type=_port, default=8082,
                        help=f"--serve: port of {RECIPIENT}'s gateway (default 8082; 0: any free port)")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is between 0 and 65535")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what happened at each step (or, with --serve, serve until Ctrl-C)."""
    configure_logging("error")  # the demo narrates on stdout; JSON errors would go to stderr
    if args.serve:
        ports = {SENDER: args.ne_port, RECIPIENT: args.ng_port}
        return asyncio.run(_serve_until_stopped(force_memory=args.memory, host=args.host, ports=ports))
    return asyncio.run(_demo(force_memory=args.memory))


async def _broker_reachable(url: str) -> bool:
    parsed = URL(url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parsed.host, parsed.port or 5672), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def _choose_broker(say: "_Printer", force_memory: bool) -> tuple[str, bool, str]:
    """The AMQP URL, whether to use it (else the in-process stand-in), and this run's id; says which."""
    amqp_url = load_amqp_url()
    use_amqp = not force_memory and await _broker_reachable(amqp_url)
    run_id = uuid.uuid4().hex[:8]
    if use_amqp:
        say.step(f"Broker: RabbitMQ at {URL(amqp_url).host}:{URL(amqp_url).port or 5672} "
                 f"(exchange demo-{run_id}, removed afterwards)")
    else:
        why = "--memory given" if force_memory else f"RabbitMQ not reachable at {URL(amqp_url).host}"
        say.step(f"Broker: in-process stand-in ({why}); same semantics, nothing leaves this process")
    return amqp_url, use_amqp, run_id


async def _demo(*, force_memory: bool) -> int:
    say = _Printer()
    amqp_url, use_amqp, run_id = await _choose_broker(say, force_memory)
    broker = None if use_amqp else MemoryBroker()
    tokens = {agency: secrets.token_urlsafe(24) for agency in (SENDER, RECIPIENT)}

    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        async with AsyncExitStack() as stack:
            gateways: dict[str, Gateway] = {}
            urls: dict[str, str] = {}
            if use_amqp:  # registered first so it runs last, after the gateways stopped
                stack.push_async_callback(_cleanup_amqp, amqp_url, gateways)
            for agency in (SENDER, RECIPIENT):
                settings = _settings(agency, Path(tmp), tokens[agency], use_amqp, amqp_url, run_id)
                gw = await open_gateway(settings, broker=broker)
                stack.push_async_callback(gw.store.close)
                await gw.start()
                stack.push_async_callback(gw.stop)
                await gw.wait_ready(30)
                urls[agency] = await _serve(stack, gw, settings)
                gateways[agency] = gw
                say.step(f"Gateway {agency} running: API {urls[agency]}, store {Path(tmp).name}/{agency}.db")
            session = await stack.enter_async_context(ClientSession())
            await _exchange(say, session, urls, tokens, gateways)
    say.step("Done. The referral crossed the border signed and encrypted; no personal data was printed, "
             "logged or put in a header.")
    return 0


async def _serve_until_stopped(*, force_memory: bool, host: str, ports: dict[str, int]) -> int:
    """Both gateways with their workspaces on ``host``:``ports`` until SIGINT or SIGTERM."""
    say = _Printer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    amqp_url, use_amqp, run_id = await _choose_broker(say, force_memory)
    broker = None if use_amqp else MemoryBroker()
    # Generated at each start and printed once: a demo must not ship a known password.
    logins = {agency: [(role, f"{prefix}.{SHORT[agency]}", secrets.token_urlsafe(12)) for role, prefix in SERVE_USERS]
              for agency in (SENDER, RECIPIENT)}
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        async with AsyncExitStack() as stack:
            gateways: dict[str, Gateway] = {}
            if use_amqp:  # registered first so it runs last, after the gateways stopped
                stack.push_async_callback(_cleanup_amqp, amqp_url, gateways)
            urls: dict[str, str] = {}
            for agency in (SENDER, RECIPIENT):
                hashed = await asyncio.to_thread(_workspace_users, logins[agency])
                settings = _settings(agency, Path(tmp), "", use_amqp, amqp_url, run_id, users=hashed)
                gw = await open_gateway(settings, broker=broker)
                stack.push_async_callback(gw.store.close)
                await gw.start()
                stack.push_async_callback(gw.stop)
                await gw.wait_ready(30)
                gateways[agency] = gw
                try:
                    urls[agency] = await _serve(stack, gw, settings, host=host, port=ports[agency])
                except OSError as exc:
                    why = os.strerror(exc.errno) if exc.errno else "refused"
                    print(f"demo: cannot listen on {host}:{ports[agency]} ({why}); "
                          f"choose another port with --{SHORT[agency]}-port", flush=True)
                    return 1
            if host == "127.0.0.1":
                # Cookies are per host, not per port: the same browser signed in at both
                # agencies under one host name would have one session cookie overwrite the
                # other. "localhost" is another host name for the same address.
                urls[RECIPIENT] = urls[RECIPIENT].replace("//127.0.0.1:", "//localhost:", 1)
            for agency in (SENDER, RECIPIENT):
                say.step(f"{agency} workspace: {urls[agency]}/workspace/  (API: {urls[agency]}/)")
                for role, name, password in logins[agency]:
                    say.detail(f"{role + ':':<12} name {name:<16} password {password}")
            say.step("The passwords above are shown only now. Sign in at NE-ANLTP-TIM to compose a referral, "
                     "at NG-NAPTIP to read and answer it. Stores are temporary. Press Ctrl-C to stop.")
            await stop.wait()
            say.step("Stopping: both gateways shut down, their temporary stores are deleted.")
    return 0


def _workspace_users(logins: list[tuple[str, str, str]]) -> tuple[User, ...]:
    """Workspace users (role, name, password) with only the argon2 hash of each password kept."""
    return tuple(User(name, role, password_argon2=hash_password(password)) for role, name, password in logins)


def _settings(agency: str, tmp: Path, token: str, use_amqp: bool, amqp_url: str, run_id: str,
              users: tuple[User, ...] | None = None) -> Settings:
    role = "caseworker"
    return Settings(
        agency_id=agency,
        demo_keys=True,
        directory_path=DEMO_KEYS / "directory.json",
        authority_key_path=DEMO_KEYS / "authority.pub.json",
        allow_demo_directory=True,
        transport="amqp" if use_amqp else "memory",
        amqp_url=amqp_url,
        exchange=f"demo-{run_id}",
        queue_prefix=f"demo-{run_id}.",
        store_url=f"sqlite:///{tmp / (agency + '.db')}",
        http_port=0,
        # Demo-only secret: a real agency keeps its pseudonym secret with its keys.
        pseudonym_secret_hex=hashlib.sha256(f"demo pseudonym secret {agency}".encode()).hexdigest(),
        retry_initial_seconds=0.2,
        outbox_poll_seconds=0.2,
        checkpoint_interval_seconds=0,  # the demo checkpoints explicitly, at the end
        audit_partners=(RECIPIENT,) if agency == SENDER else (SENDER,),
        users=users if users is not None else (
            User(f"demo.{role}.{agency.lower()}", role, hashlib.sha256(token.encode()).hexdigest()),),
    )


async def _serve(stack: AsyncExitStack, gw: Gateway, settings: Settings, *, host: str = "127.0.0.1",
                 port: int = 0) -> str:
    from gateway.api import create_app

    runner = web.AppRunner(create_app(gw, settings), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _exchange(say: "_Printer", session: ClientSession, urls: dict[str, str], tokens: dict[str, str],
                    gateways: dict[str, Gateway]) -> None:
    def auth(agency: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[agency]}"}

    referral = load_example("referral.request")
    body = {"recipient": RECIPIENT, "local_case_id": "NE-ZINDER-2026-0142", "payload": referral}
    async with session.post(f"{urls[SENDER]}/referrals", json=body, headers=auth(SENDER)) as resp:
        submitted = await _json(resp, 202)
    message_id = submitted["message_id"]
    say.step(f"{SENDER} caseworker POST /referrals → {resp.status}: {message_id}, purposes "
             f"{referral['purposes']}, case pseudonym {submitted['case_ref']} (the local case id stays in Niger)")

    inbox = await _poll(session, f"{urls[RECIPIENT]}/inbox", auth(RECIPIENT),
                        lambda items: any(i["message_id"] == message_id for i in _items(items)))
    entry = next(i for i in _items(inbox) if i["message_id"] == message_id)
    say.step(f"{RECIPIENT} GET /inbox: {entry['type']} from {entry['sender']}, case {entry['case_ref']} "
             "(verified, stored still encrypted)")

    async with session.get(f"{urls[RECIPIENT]}/inbox/{message_id}", params={"purpose": "safety_assessment"},
                           headers=auth(RECIPIENT)) as resp:
        opened = await _json(resp, 200)
    person_fields = sorted(opened["payload"].get("person", {}))
    say.step(f"{RECIPIENT} GET /inbox/{{id}}?purpose=safety_assessment → decrypted for an audited read; "
             f"person fields present: {', '.join(person_fields)}")

    answer = {"decision": "accepted", "accepted_purposes": referral["purposes"]}
    async with session.post(f"{urls[RECIPIENT]}/inbox/{message_id}/response", json=answer,
                            headers=auth(RECIPIENT)) as resp:
        await _json(resp, 202)
    say.step(f"{RECIPIENT} POST /inbox/{{id}}/response → {resp.status}: accepted {referral['purposes']}")

    status = await _poll(session, f"{urls[SENDER]}/messages/{message_id}", auth(SENDER),
                         lambda s: s.get("status") == "accepted")
    say.step(f"{SENDER} GET /messages/{{id}}: status {status['status']}; trail:")
    for step in status["trail"]:
        say.detail(f"{step['at']}  {step['status']}")

    await _tampered_copy(say, gateways, message_id)
    await _withdraw(say, session, urls, auth, submitted["case_ref"], message_id)
    await _audit(say, gateways)


async def _withdraw(say: "_Printer", session: ClientSession, urls: dict[str, str], auth: Any, case_ref: str,
                    message_id: str) -> None:
    withdrawal = {"withdrawn_at": format_ts(utcnow()), "decision_maker": "self", "scope": "all_purposes",
                  "erasure_requested": True}
    async with session.post(f"{urls[SENDER]}/cases/{case_ref}/withdrawal", json=withdrawal,
                            headers=auth(SENDER)) as resp:
        await _json(resp, 202)
    say.step(f"{SENDER} POST /cases/{{case}}/withdrawal → {resp.status}: the person withdrew consent")
    await _poll(session, f"{urls[SENDER]}/cases/{case_ref}/withdrawals", auth(SENDER),
                lambda s: s.get("all_acknowledged") is True)
    say.step(f"{SENDER} GET /cases/{{case}}/withdrawals: {RECIPIENT} acknowledged (signed consent.withdrawal.ack)")
    async with session.get(f"{urls[RECIPIENT]}/inbox/{message_id}", params={"purpose": "case_followup"},
                           headers=auth(RECIPIENT)) as resp:
        refused = await _json(resp, 410)
    say.step(f"{RECIPIENT} GET /inbox/{{id}} → {resp.status} [{refused['error']}]: the case key was destroyed, "
             "the referral can no longer be read by anyone")


async def _audit(say: "_Printer", gateways: dict[str, Gateway]) -> None:
    from gateway.audit.export import jsonl_lines, parse_jsonl
    from gateway.audit.verify import verify_export

    sender, recipient = gateways[SENDER], gateways[RECIPIENT]
    shared = await sender.checkpoint_and_share()
    assert shared is not None
    for _ in range(200):
        if await recipient.store.latest_checkpoint(SENDER) is not None:
            break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("demo failure: the checkpoint did not reach the partner")
    say.step(f"{SENDER} signed its audit log (RFC 9162 tree of {shared.tree_size} entries) and sent the "
             f"checkpoint to {RECIPIENT}, which keeps it")
    records = await sender.store.read_audit(1, shared.tree_size)
    report = verify_export(parse_jsonl(jsonl_lines(records)), [shared.note], sender.directory, origin=SENDER)
    verdict = "verified" if report.ok else f"FAILED: {report.first_bad}"
    say.step(f"An auditor's offline check of {SENDER}'s exported log against that signed checkpoint: {verdict}")
    if not report.ok:
        raise SystemExit("demo failure: the audit log did not verify")
    for agency, gw in gateways.items():
        entries = await gw.store.read_audit(1, 10_000)
        kinds = sorted({e.event_type for e in entries})
        say.step(f"{agency} audit log: {len(entries)} entries ({', '.join(kinds)})")


async def _tampered_copy(say: "_Printer", gateways: dict[str, Gateway], message_id: str) -> None:
    sender, recipient = gateways[SENDER], gateways[RECIPIENT]
    # The sender deleted its sealed copy once the receipt came; the copy "on the wire" is the
    # one the recipient stored.
    record = await recipient.store.get_incoming(message_id)
    assert record is not None
    doc = json.loads((await recipient.at_rest.open(record)).envelope)
    doc["header"]["id"] = str(uuid.uuid4())
    doc["header"]["case"] = "ne-ng-tamperedcase01"
    await sender.transport.publish(WireMessage(doc["header"]["id"], SENDER, RECIPIENT,
                                                   json.dumps(doc).encode(), {}))
    for _ in range(200):
        found = [q for q in await recipient.transport.list_quarantine(50) if q.message_id == doc["header"]["id"]]
        if found:
            say.step(f"A tampered copy (header edited after signing) was quarantined at {RECIPIENT}: "
                     f"[{found[0].reason_code}]")
            return
        await asyncio.sleep(0.05)
    raise SystemExit("demo failure: the tampered copy was not quarantined")


def _items(data: Any) -> list[dict[str, Any]]:
    return data["items"] if isinstance(data, dict) else data


async def _json(resp: Any, expected: int) -> Any:
    data = await resp.json()
    if resp.status != expected:
        raise SystemExit(f"demo failure: {resp.method} {resp.url.path} answered {resp.status}: {data}")
    return data


async def _poll(session: ClientSession, url: str, headers: dict[str, str], done, timeout: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with session.get(url, headers=headers) as resp:
            data = await _json(resp, 200)
        if done(data):
            return data
        if loop.time() > deadline:
            raise SystemExit(f"demo failure: {url} did not reach the expected state in {timeout}s")
        await asyncio.sleep(0.1)


async def _cleanup_amqp(amqp_url: str, gateways: dict[str, Gateway]) -> None:
    for gw in gateways.values():
        await delete_topology(amqp_url, gw.transport.config)  # type: ignore[attr-defined]


class _Printer:
    def __init__(self) -> None:
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        print(f"[{self.n:2d}] {text}", flush=True)

    def detail(self, text: str) -> None:
        print(f"       {text}", flush=True)
