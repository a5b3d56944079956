"""The audit event registry (gateway/audit/events.py): declared once, documented from it,
and nothing undeclared can be written."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.audit import events
from gateway.audit.events import EVENTS, docs_table, render_page
from gateway.store import AuditEntry, DataKey, OutgoingMessage, SQLiteStore, StoreArgumentError

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 5, 3, 9, 0, tzinfo=timezone.utc)
#: How the code names an event type it writes: audit helpers' first argument or event_type=.
WRITE_CALL = re.compile(r'(?:_audit|entry|audit_event)\((?:request, )?"([a-z_]+\.[a-z_]+)"|event_type="([a-z_]+\.[a-z_]+)"')


def _written_in_code() -> set[str]:
    found: set[str] = set()
    for folder in ("gateway", "adapters"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in WRITE_CALL.finditer(path.read_text(encoding="utf-8")):
                found.add(match.group(1) or match.group(2))
    return found


def test_docs_table_is_generated_from_the_registry() -> None:
    page = (ROOT / "docs" / "audit.md").read_text(encoding="utf-8")
    assert render_page(page) == page, "run: python -m gateway.audit.events --write"
    for name in EVENTS:
        assert f"| `{name}` |" in page


def test_check_mode_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "audit.md"
    stale.write_text(f"intro\n{events.BEGIN}\n| old |\n{events.END}\nend\n", encoding="utf-8")
    monkeypatch.setattr(events, "DOCS_PAGE", stale)
    assert events.main(["--check"]) == 1
    assert events.main(["--write"]) == 0
    assert events.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == f"intro\n{events.BEGIN}\n{docs_table()}{events.END}\nend\n"


def test_the_five_once_undocumented_events_are_declared() -> None:
    assert {"message.sent", "message.dropped", "consent.withdrawal_ack_failed", "key.rotated", "keys.in_use"} <= set(EVENTS)


def test_every_event_type_written_in_code_is_declared_and_every_declared_one_is_written() -> None:
    written = _written_in_code()
    assert len(written) > 20, "the pattern no longer finds the gateway's audit calls"
    assert written - set(EVENTS) == set(), "declare these in gateway/audit/events.py"
    assert set(EVENTS) - written == set(), "declared but never written: remove or write them"


def test_every_declaration_has_a_meaning_and_named_fields() -> None:
    for name, event in EVENTS.items():
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name) and event.name == name
        assert event.meaning and "|" not in event.meaning
        assert event.fields and all(re.fullmatch(r"[a-z_]+", f) for f in event.fields)


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = await SQLiteStore.open(tmp_path / "gateway.db")
    yield store
    await store.close()


def _entry(event_type: str) -> AuditEntry:
    return AuditEntry(at=T0, event_type=event_type, actor="system", detail_json="{}")


async def test_the_store_refuses_an_undeclared_event_type(store: SQLiteStore) -> None:
    message = OutgoingMessage("5b0e2c1a-7d4f-4e8a-9c3b-2f1d0e6a8b7c", "case-1", "NG-NAPTIP", "referral.request",
                              b"sealed", T0)
    await store.add_data_key(DataKey("k1", "case-1", "case", b"wrapped", T0))
    for write in (
        lambda: store.append_audit(_entry("late.entry")),
        lambda: store.add_outgoing(message, audit=_entry("message.queued")),
        lambda: store.shred_data_keys(["k1"], "retention", T0, audit=[_entry("data.destroyed")]),
    ):
        with pytest.raises(StoreArgumentError, match="not declared") as info:
            await write()
        assert info.value.code == "store_argument_invalid"
    # Nothing was written by the refused calls.
    assert await store.audit_size() == 0
    assert await store.get_outgoing(message.message_id) is None
    assert (await store.get_data_key("k1")).wrapped is not None  # type: ignore[union-attr]
    assert await store.append_audit(_entry("message.sent")) == 1
