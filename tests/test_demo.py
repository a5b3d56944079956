"""The README's demo command runs (both brokers) and prints no personal data."""

from __future__ import annotations

import pytest

from gateway.cli import main

from testkit.envelope_world import example_payload
from .test_envelope import _strings


def _check_output(text: str) -> None:
    assert "POST /referrals → 202" in text
    assert "status accepted; trail:" in text
    for status in ("queued", "sent", "delivered", "read", "accepted"):
        assert f"  {status}\n" in text
    assert "quarantined at NG-NAPTIP: [bad_signature]" in text
    person = example_payload()["person"]
    needles = {v for v in _strings(person) if len(v) >= 4}
    assert "Testfixture" in needles
    assert [n for n in needles if n in text] == []


def test_demo_on_the_in_process_broker(capsys) -> None:
    assert main(["demo", "--memory"]) == 0
    out = capsys.readouterr()
    assert "Broker: in-process stand-in (--memory given)" in out.out
    _check_output(out.out + out.err)


@pytest.mark.broker
def test_demo_on_rabbitmq(capsys, monkeypatch, amqp_url) -> None:
    monkeypatch.setenv("AMQP_URL", amqp_url)
    assert main(["demo"]) == 0
    out = capsys.readouterr()
    assert "Broker: RabbitMQ at" in out.out
    _check_output(out.out + out.err)


def test_demo_says_when_it_falls_back(capsys, monkeypatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")  # nothing listens on port 1
    assert main(["demo"]) == 0
    assert "in-process stand-in (RabbitMQ not reachable at 127.0.0.1)" in capsys.readouterr().out
