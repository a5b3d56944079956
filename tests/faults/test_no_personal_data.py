"""No personal data anywhere but inside the encrypted envelope.

A referral for a person with a unique name and phone number goes through two gateways on
the real RabbitMQ (stored, read, answered, forged copy quarantined, an invalid submit
refused). Then every place the system writes to is searched for that name and number, in
plain text and in base64/hex: the gateways' log output (structlog and stdlib, rendered as
in production), stdout/stderr, metrics, every broker message body, header and property
(a tap queue bound with ``#`` to the exchange and the dead-letter exchange), the quarantine
listing, both audit logs, exception texts, and the raw bytes of the SQLite files.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import secrets

import aio_pika
import pytest
import structlog

from gateway.envelope import seal
from gateway.errors import SchemaInvalidError
from gateway.schema import load_example
from gateway.service import Actor
from gateway.transport.base import H_RECIPIENT, H_SENDER

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

from testkit.harness import WORKER

pytestmark = pytest.mark.broker

OFFICER = Actor("officer.ng", "caseworker")
GIVEN, FAMILY = "Zyxwvuta", "Qwertyfixture"


def _person_referral(phone: str) -> dict:
    payload = copy.deepcopy(load_example("referral.request"))
    person = payload["person"]
    person["names"] = {"given": GIVEN, "family": FAMILY, "aliases": [f"{GIVEN}{FAMILY}"]}
    person["family_contacts"][0]["names"] = {"given": "Plmokn", "family": FAMILY}
    person["family_contacts"][0]["phone"] = phone
    return payload


def _encoded_forms(needle: str) -> set[bytes]:
    """The needle as it could appear encoded: hex, and base64 / base64url at each of the
    three byte alignments (complete 4-character groups only). Matched case-sensitively."""
    raw = needle.encode()
    forms = {raw.hex().encode()}
    for shift in range(3):
        part = raw[shift:]
        part = part[: len(part) // 3 * 3]
        if len(part) >= 6:
            forms |= {base64.b64encode(part), base64.urlsafe_b64encode(part)}
    return forms


def _leaks(where: str, data: bytes | str, needles: list[str]) -> list[str]:
    blob = data.encode() if isinstance(data, str) else bytes(data)
    lowered = blob.lower()
    found = []
    for needle in needles:
        if needle.lower().encode() in lowered:  # plain text, any case
            found.append(f"{needle!r} in {where}")
        elif any(form in blob for form in _encoded_forms(needle)):
            found.append(f"{needle!r} (base64/hex) in {where}")
    return found


class _ProductionLikeLogs:
    """Render structlog and stdlib logging as gateway.logs does, but into a buffer, at
    DEBUG; restore the previous configuration afterwards."""

    def __enter__(self) -> io.StringIO:
        self.buffer = io.StringIO()
        self.saved = structlog.get_config()
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            logger_factory=structlog.PrintLoggerFactory(file=self.buffer),
            cache_logger_on_first_use=False,
        )
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        return self.buffer

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        structlog.configure(**self.saved)


async def test_unique_name_and_phone_appear_nowhere_outside_the_envelope(tmp_path, amqp_url, capfd) -> None:
    phone = "+2348" + "".join(secrets.choice("0123456789") for _ in range(9))
    needles = [GIVEN, FAMILY, phone, phone[1:], f"{GIVEN} {FAMILY}"]
    payload = _person_referral(phone)
    captured: dict[str, bytes | str] = {}

    with _ProductionLikeLogs() as log_buffer:
        async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                tap = await channel.declare_queue(exclusive=True, auto_delete=True)
                for exchange in (ne.settings.exchange, ne.settings.exchange + ".dlx"):
                    await tap.bind(exchange, routing_key="#")

                # The referral, read, answered: every receipt flows back.
                header = await ne.submit("referral.request", payload, recipient=NIGERIA,
                                         case_ref="ne-ng-privacy0001", actor=WORKER)

                async def status_is(wanted: str):
                    async def check() -> bool:
                        return (await ne.store.get_outgoing(header.id)).status == wanted
                    return check

                await eventually(await status_is("delivered"), 30)
                opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
                assert opened.payload["person"]["names"]["given"] == GIVEN  # the data did travel
                await ng.respond(header.id, {"decision": "accepted", "accepted_purposes": ["assistance"]},
                                 actor=OFFICER)
                await eventually(await status_is("accepted"), 30)

                # A forged copy of a referral about the same person: quarantined.
                forged_header, envelope = seal(payload, message_type="referral.request", sender=ne.identity,
                                               recipient=NIGERIA, directory=ne.directory,
                                               case_ref="ne-ng-privacy0002", now=ne.clock())
                doc = json.loads(envelope)
                doc["header"]["case"] = "ne-ng-privacy0003"
                await channel.default_exchange.publish(
                    aio_pika.Message(json.dumps(doc).encode(), message_id=forged_header.id,
                                     headers={H_SENDER: NIGER, H_RECIPIENT: NIGERIA}),
                    routing_key=ng.transport.config.inbox(NIGERIA),
                )

                async def quarantined() -> bool:
                    return bool(await ng.transport.list_quarantine(10))

                await eventually(quarantined, 30)
                captured["quarantine listing"] = repr(await ng.transport.list_quarantine(10))

                # An invalid submit whose bad value is personal data: refused without echoing it.
                bad = copy.deepcopy(payload)
                bad["person"]["family_contacts"][0]["phone"] = f"{GIVEN} {FAMILY} {phone} (mobile)"
                bad["person"]["names"]["given"] = 12345
                with pytest.raises(SchemaInvalidError) as refused:
                    await ne.submit("referral.request", bad, recipient=NIGERIA, case_ref="ne-ng-privacy0004",
                                    actor=WORKER)
                captured["schema error"] = f"{refused.value}\n{refused.value!r}\n{refused.value.violations!r}"

                # Settle, then read every message the broker carried in this run.
                async def outboxes_drained() -> bool:
                    return not (await ne.store.due_outgoing(ne.clock(), 1) or
                                await ng.store.due_outgoing(ng.clock(), 1))

                await eventually(outboxes_drained, 30)
                tapped = []
                while (message := await tap.get(no_ack=True, fail=False, timeout=5)) is not None:
                    tapped.append(message)
                # request, response, 3 receipts at least (delivered, read, delivered-of-response), quarantine copy
                assert len(tapped) >= 6
                captured["broker bodies"] = b"\n".join(m.body for m in tapped)
                captured["broker headers and properties"] = repr([m.info() for m in tapped])

            captured["metrics NE"] = ne.metrics.render()
            captured["metrics NG"] = ng.metrics.render()
            for gw, name in ((ne, "NE"), (ng, "NG")):
                entries = await gw.store.read_audit(1, 10_000)
                assert entries
                captured[f"audit {name}"] = repr(entries)
            live_files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if ".db" in p.name}
            assert any(name.endswith(".db-wal") for name in live_files)

        captured["logs"] = log_buffer.getvalue()
    out, err = capfd.readouterr()
    captured["stdout"], captured["stderr"] = out, err
    for name, data in live_files.items():
        captured[f"sqlite file while running: {name}"] = data
    for path in tmp_path.iterdir():  # after close: checkpointed into the main file
        if ".db" in path.name:
            captured[f"sqlite file after close: {path.name}"] = path.read_bytes()

    assert "message.received" in captured["logs"] and "transport.quarantined" in captured["logs"]
    assert '"event": "message.queued"' in captured["logs"]  # the JSON renderer really ran
    sizes = {where: len(data) for where, data in captured.items()}
    assert all(n for where, n in sizes.items() if not where.startswith("std")), sizes  # really captured
    leaks = [leak for where, data in captured.items() for leak in _leaks(where, data, needles)]
    assert leaks == []
    # Control: the same search does find the person in the decrypted payload.
    assert len(_leaks("payload", json.dumps(opened.payload), needles)) == len(needles) - 1  # all but "given family"
    assert _leaks("b64", base64.b64encode(b"x" + GIVEN.encode()), [GIVEN])
    print("\ncaptured bytes per source:", sizes)
