"""The README's demo command runs and prints no personal data."""

from __future__ import annotations

from gateway.cli import main

from .envelope_world import example_payload
from .test_envelope import _strings


def test_demo_runs_and_prints_no_personal_data(capsys) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "referral.request" in text and "rejected: [replayed_message]" in text
    assert "rejected: [bad_signature]" in text and "rejected: [wrong_recipient]" in text
    assert "referral.response from NG-NAPTIP" in text and "accepted" in text
    person = example_payload()["person"]
    needles = {v for v in _strings(person) if len(v) >= 4}
    assert "Testfixture" in needles
    assert [n for n in needles if n in text] == []
