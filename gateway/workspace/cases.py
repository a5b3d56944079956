"""What the workspace pages need to know about received messages and cases, without showing
a payload: whether a message was erased, a referral's purposes (codes), the other agency
of a case, the messages of a case that a follow-up may refer to."""

from __future__ import annotations

from gateway.at_rest import PayloadShreddedError
from gateway.service import Gateway
from gateway.store import InboxRecord


async def is_erased(gateway: Gateway, record: InboxRecord) -> bool:
    """True when the message's data keys (its own or its case's) were destroyed: consent
    withdrawn or retention over. Reads key rows only, decrypts nothing."""
    key = await gateway.store.get_data_key(record.message_id)
    if key is None:  # stored before keys per message existed: not shreddable this way
        return False
    if key.wrapped is None:
        return True
    case_key = await gateway.store.get_data_key(key.parent_key_id or "")
    return case_key is not None and case_key.wrapped is None


async def referral_purposes(gateway: Gateway, record: InboxRecord) -> list[str]:
    """The purpose codes of a received referral.request ([] for other types or once erased).

    Opens the payload to take the codes only (like the API's answer check): nobody is shown
    it, so no read is audited."""
    if record.message_type != "referral.request":
        return []
    try:
        opened = gateway.open_stored(await gateway.at_rest.open(record), record.received_at)
    except PayloadShreddedError:
        return []
    purposes = opened.payload.get("purposes")
    return [p for p in purposes if isinstance(p, str)] if isinstance(purposes, list) else []


async def counterpart(gateway: Gateway, case_ref: str) -> str | None:
    """The other agency of a case: from the case row, else from its messages; None if unknown."""
    case = await gateway.store.get_case(case_ref)
    if case is not None:
        return case.counterpart_agency
    for record in await gateway.store.list_incoming_for_case(case_ref):
        return record.sender
    for sent in await gateway.store.list_outgoing_for_case(case_ref):
        return sent.recipient
    return None


async def case_messages(gateway: Gateway, case_ref: str, message_type: str) -> list[tuple[str, str]]:
    """(message id, when) of the case's messages of one type, received and sent, oldest first."""
    found = [(r.received_at, r.message_id) for r in await gateway.store.list_incoming_for_case(case_ref)
             if r.message_type == message_type]
    found += [(s.created_at, s.message_id) for s in await gateway.store.list_outgoing_for_case(case_ref)
              if s.message_type == message_type]
    return [(mid, at.strftime("%Y-%m-%d %H:%M UTC")) for at, mid in sorted(found)]
