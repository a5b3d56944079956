"""gateway/workspace/fields.py as the pages use it: what the compose preview lists (one row
per value, labelled as on the read page), dates in the reader's language, and the one table
of status labels the inbox, read, sent and trail pages share."""

from __future__ import annotations

from gateway.schema import load_example
from gateway.workspace.fields import STATUS_LABELS, describe, leaves, status_label
from gateway.store.base import INCOMING_STATUSES, OUTGOING_STATUSES


def _by_path(lang: str) -> dict[str, tuple[str, str, str]]:
    payload = load_example("referral.request", version="2")
    return {leaf.path: (leaf.label, leaf.text, leaf.raw) for leaf in leaves(payload, "referral.request", "2", lang)}


def test_preview_rows_carry_translated_labels_the_path_and_readable_values() -> None:
    fr, en = _by_path("fr"), _by_path("en")
    assert fr["person.names.given"] == ("Personne › Noms › Prénom", "Amaka", "")
    assert en["person.names.given"][0] == "Person › Names › Given name"
    # A list position goes with its list; a coded value reads as its label, with the code sent.
    assert fr["person.family_contacts[0].relationship"] == ("Personne › Contacts familiaux 1 › Lien de parenté",
                                                            "Mère", "mother")
    assert fr["purposes[1]"] == ("Finalités 2", "Recherche familiale", "family_tracing")
    assert fr["person.nationality"][1:] == ("Nigeria", "NG")
    assert fr["person.languages[0]"][1:] == ("anglais", "eng")
    assert fr["person.age.minor"][1:] == ("Non", "false")
    # Dates and timestamps in the reader's language, the wire value beside them.
    assert fr["identification.identified_on"][1:] == ("4 mars 2026", "2026-03-04")
    assert fr["consent.given_at"][1:] == ("6 mars 2026, 10:15:00 UTC", "2026-03-06T10:15:00Z")
    assert en["consent.given_at"][1] == "Mar 6, 2026, 10:15:00\u202fAM UTC"
    # Every value of the payload has its row, none twice.
    assert len(fr) == len(list(leaves(load_example("referral.request", version="2"), "referral.request", "2", "fr")))


def test_read_page_rows_show_consent_dates_localised() -> None:
    payload = load_example("referral.request", version="2")
    consent = describe({"consent": payload["consent"]}, "referral.request", "2", "fr")[0].rows
    given = next(r for r in consent if r.name == "given_at")
    assert given.value == "6 mars 2026, 10:15:00 UTC"


def test_one_status_table_for_received_and_sent_messages() -> None:
    assert INCOMING_STATUSES | OUTGOING_STATUSES | {"erased"} == set(STATUS_LABELS)
    assert status_label("accepted", "fr") == "Acceptée" and status_label("accepted", "en") == "Accepted"
    assert status_label("received", "fr") == "Nouvelle" and status_label("read", "en") == "Read"
    assert status_label("unknown_status", "fr") == "unknown_status"
