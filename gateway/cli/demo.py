"""``gateway demo``: two agencies' gateways in one process exchange a referral over HTTP.

ANLTP-TIM (Niger) submits a referral through its HTTP API; NAPTIP (Nigeria) lists its
inbox, reads the referral (audited with a purpose) and accepts it; the demo prints the
sender's status trail. RabbitMQ at AMQP_URL is used when reachable, otherwise an
in-process broker stand-in; the demo says which. It prints ids, codes and field names,
never the person's data.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
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

DEMO_KEYS = Path(__file__).resolve().parents[2] / "keys" / "demo"
SENDER, RECIPIENT = "NE-ANLTP-TIM", "NG-NAPTIP"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``demo`` command."""
    parser = sub.add_parser("demo", help="two demo gateways exchange a referral (RabbitMQ if reachable)")
    parser.add_argument("--memory", action="store_true", help="use the in-process broker even if RabbitMQ is reachable")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what happened at each step."""
    configure_logging("error")  # the demo narrates on stdout; JSON errors would go to stderr
    return asyncio.run(_demo(force_memory=args.memory))


async def _broker_reachable(url: str) -> bool:
    parsed = URL(url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parsed.host, parsed.port or 5672), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def _demo(*, force_memory: bool) -> int:
    say = _Printer()
    amqp_url = load_amqp_url()
    use_amqp = not force_memory and await _broker_reachable(amqp_url)
    run_id = uuid.uuid4().hex[:8]
    if use_amqp:
        say.step(f"Broker: RabbitMQ at {URL(amqp_url).host}:{URL(amqp_url).port or 5672} "
                 f"(exchange demo-{run_id}, removed afterwards)")
    else:
        why = "--memory given" if force_memory else f"RabbitMQ not reachable at {URL(amqp_url).host}"
        say.step(f"Broker: in-process stand-in ({why}); same semantics, nothing leaves this process")
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


def _settings(agency: str, tmp: Path, token: str, use_amqp: bool, amqp_url: str, run_id: str) -> Settings:
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
        users=(User(f"demo.{role}.{agency.lower()}", role, hashlib.sha256(token.encode()).hexdigest()),),
    )


async def _serve(stack: AsyncExitStack, gw: Gateway, settings: Settings) -> str:
    from gateway.api import create_app

    runner = web.AppRunner(create_app(gw, settings), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}"


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
