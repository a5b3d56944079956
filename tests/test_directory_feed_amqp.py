"""Directory distribution through the real RabbitMQ: the authority publishes to the fanout
exchange, both running gateways swap the directory within seconds, and a message signed
with the revoked key is quarantined from then on."""

from __future__ import annotations

import statistics
import time

import aio_pika
import pytest

from gateway.demo_identities import demo_identity
from gateway.envelope import seal
from gateway.schema import load_example
from gateway.transport import WireMessage
from gateway.transport.directory_feed import publish_directory_amqp

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair
from tests.test_directory_updates import audited, signed_directory

pytestmark = pytest.mark.broker


async def _delete_feed(amqp_url: str, gateways) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for gw in gateways:
            await channel.queue_delete(gw.directory_feed.names.queue)
        await channel.exchange_delete(gateways[0].directory_feed.names.exchange)
    finally:
        await connection.close()


async def test_a_revocation_published_on_the_broker_reaches_both_gateways_within_seconds(
        tmp_path, amqp_url: str) -> None:
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        try:
            exchange = ng.directory_feed.names.exchange

            async def feeds_bound() -> bool:  # the feeds connect in the background
                connection = await aio_pika.connect(amqp_url)
                try:
                    for gw in (ne, ng):
                        channel = await connection.channel()
                        queue = await channel.declare_queue(gw.directory_feed.names.queue, passive=True)
                        if (await channel.declare_queue(queue.name, passive=True)).declaration_result.consumer_count < 1:
                            return False
                except aio_pika.exceptions.AMQPError:
                    return False
                finally:
                    await connection.close()
                return True

            await eventually(feeds_bound, timeout=30)
            await publish_directory_amqp(amqp_url, exchange, signed_directory(2))
            await eventually(lambda: _both_at(ne, ng, 2), timeout=10)

            # Latency from publish to "in force" on both gateways, a few rounds.
            latencies = []
            for serial in range(3, 8):
                started = time.perf_counter()
                await publish_directory_amqp(amqp_url, exchange, signed_directory(serial))
                await eventually(lambda: _both_at(ne, ng, serial), timeout=10, interval=0.005)
                latencies.append(time.perf_counter() - started)
            old_directory = ng.directory

            ne_sig = demo_identity(NIGER).signing_kid
            started = time.perf_counter()
            await publish_directory_amqp(amqp_url, exchange, signed_directory(8, revoke=(ne_sig,)))
            await eventually(lambda: _both_at(ne, ng, 8), timeout=10, interval=0.005)
            revocation_latency = time.perf_counter() - started
            print(f"\ndirectory publish -> in force on both gateways: median {statistics.median(latencies) * 1000:.0f} ms,"
                  f" max {max(latencies) * 1000:.0f} ms; revocation {revocation_latency * 1000:.0f} ms")
            assert revocation_latency < 5

            # A sender that still trusts the old directory signs with the revoked key: quarantined.
            header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                                    sender=ne.identity, recipient=NIGERIA, directory=old_directory,
                                    case_ref="ne-ng-feedcase0001", now=ne.clock())
            await ne.transport.publish(WireMessage(header.id, NIGER, NIGERIA, envelope,
                                                   {"type": "referral.request", "schema": header.schema}))

            async def quarantined() -> bool:
                return any(q.message_id == header.id and q.reason_code == "key_revoked"
                           for q in await ng.transport.list_quarantine(10))

            await eventually(quarantined, timeout=20)
            assert await ng.store.get_incoming(header.id) is None
            assert [u["serial"] for u in await audited(ng, "directory.updated")] == [1, 2, 3, 4, 5, 6, 7, 8]

            # Rollback over the broker: refused, audited, acked (not redelivered forever).
            await publish_directory_amqp(amqp_url, exchange, signed_directory(5))
            await eventually(lambda: _refused(ng), timeout=10)
            assert ng.directory.serial == 8
        finally:
            await _delete_feed(amqp_url, (ne, ng))


async def _both_at(ne, ng, serial: int) -> bool:
    return ne.directory.serial == ng.directory.serial == serial


async def _refused(gw) -> bool:
    return any(r["reason"] == "rollback" for r in await audited(gw, "directory.refused"))


def test_publish_directory_cli_reaches_a_bound_queue_and_says_when_none_is(
        tmp_path, amqp_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import uuid

    from gateway.cli import main
    from gateway.demo_identities import demo_directory_files

    run = uuid.uuid4().hex[:8]
    exchange, queue_name = f"test-{run}.directory", f"test-{run}.directory.NG-NAPTIP"
    for name, data in demo_directory_files().items():
        (tmp_path / name).write_bytes(data)
    signed = tmp_path / "directory-2.json"
    signed.write_bytes(signed_directory(2))
    monkeypatch.setenv("AUTHORITY_AMQP_URL", amqp_url)
    argv = ["keys", "publish-directory", "--directory", str(signed), "--authority-pub",
            str(tmp_path / "authority.pub.json"), "--amqp-url-env", "AUTHORITY_AMQP_URL", "--exchange", exchange]

    async def declare(bind: bool) -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            feed = await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT, durable=True)
            if bind:
                queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
                await queue.bind(feed)
        finally:
            await connection.close()

    async def take() -> bytes | None:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, passive=True)
            message = await queue.get(fail=False, timeout=5)
            if message is None:
                return None
            await message.ack()
            return message.body
        finally:
            await connection.close()

    async def clean() -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            await channel.queue_delete(queue_name)
            await channel.exchange_delete(exchange)
        finally:
            await connection.close()

    try:
        asyncio.run(declare(bind=False))
        assert main(argv) == 1
        assert "[unroutable]" in capsys.readouterr().err  # nobody would have received it
        asyncio.run(declare(bind=True))
        assert main(argv) == 0
        assert "published directory serial 2" in capsys.readouterr().out
        assert asyncio.run(take()) == signed.read_bytes()
    finally:
        asyncio.run(clean())


async def test_deleting_the_topology_removes_the_directory_feed_too(tmp_path, amqp_url: str) -> None:
    # `gateway demo` and the test harness clean up with delete_topology: the feed's queues and
    # exchange used to be left on the broker after every run.
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        names = [gw.directory_feed.names for gw in (ne, ng)]
    connection = await aio_pika.connect(amqp_url)
    try:
        for queue in [n.queue for n in names]:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(queue, passive=True)
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.get_exchange(names[0].exchange, ensure=True)
    finally:
        await connection.close()
