"""Convert payloads between schema versions: v1 → v2 (upgrade) and v2 → v1 (downgrade).

Pure functions on valid payloads (validate first; an input value outside its version's
enumerations passes through unchanged and the output then fails validation).

* :func:`upgrade_to_v2` keeps everything v2 can hold (renamed codes are mapped, see
  ``*_V1_TO_V2``) and drops what v2 no longer allows for the request's purposes (acts,
  means, methods of control and the narrative travel only with criminal_justice_cooperation
  in v2), reporting each dropped field as a (path, reason) pair.
* :func:`downgrade_to_v1` maps v2 codes to their v1 counterparts (a v2 code with no v1
  counterpart becomes v1 ``other`` where v1 has one) and raises :class:`DowngradeError`
  listing every field v1 cannot carry (v2-only purposes, also a response's accepted ones,
  child_protection, criminal_justice,
  the needs v1 has no place for, an uncoded language...); :func:`convert` also reports
  what the downgrade carries only coarsely (children's details, codes sent as ``other``).

Paths and reasons name fields and codes only, never a value of the payload.
docs/schema.md has the same mapping as a table.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from gateway.errors import GatewayError
from gateway.languages import to_iso_639_3, to_v1_code
from gateway.schema import PURPOSES_BY_VERSION, allowed_person_fields, json_path, minimal_data_table, payload_version

# --- code tables (v1 value → v2 value; values not listed are spelled the same) -----------

IDENTIFICATION_STATUS_V1_TO_V2: dict[str, str] = {
    "presumed": "possible_victim_of_trafficking",
    "confirmed": "actual_victim_of_trafficking",
    "self_denies": "self_denies",
}
ORGANISATION_TYPE_V1_TO_V2: dict[str, str] = {
    "health_service": "health_service_organisation",
    "central_government": "central_government_organisation",
    "local_government": "local_government_organisation",
}
EXPLOITATION_TYPE_V1_TO_V2: dict[str, str] = {
    "slavery_servitude": "servitude",
    "child_soldiering": "forced_military_by_non_state_actors",
}
LABOUR_SECTOR_V1_TO_V2: dict[str, str] = {
    "agriculture": "agriculture_forestry_and_fishing",
    "aquafarming": "agriculture_forestry_and_fishing",
    "construction": "construction",
    "domestic_work": "activities_of_households_as_employers",
    "hospitality": "accommodation_and_food_service_activities",
    "manufacturing": "manufacturing",
    "mining_drilling": "mining_and_quarrying",
    "transportation": "transportation_and_storage",
}
METHOD_OF_CONTROL_V1_TO_V2: dict[str, str] = {
    "threats": "physical_threats",
    "threat_of_law_enforcement": "threats_law_enforcement",
    "psychoactive_substances": "psychoactive_substance",
}

# v2 value → v1 value, for the downgrade. Built from the tables above where the mapping is
# one to one; the rest are the v2 codes v1 only has a coarser word for.
IDENTIFICATION_STATUS_V2_TO_V1: dict[str, str] = {v: k for k, v in IDENTIFICATION_STATUS_V1_TO_V2.items()}
ORGANISATION_TYPE_V2_TO_V1: dict[str, str] = {v: k for k, v in ORGANISATION_TYPE_V1_TO_V2.items()}
EXPLOITATION_TYPE_V2_TO_V1: dict[str, str] = {
    "servitude": "slavery_servitude",
    "child_labour": "other",
    "forced_adoption": "other",
    "surrogacy": "other",
    # forced_military_by_non_state_actors: child_soldiering for a child, other for an adult
}
LABOUR_SECTOR_V2_TO_V1: dict[str, str] = {
    "agriculture_forestry_and_fishing": "agriculture",
    "construction": "construction",
    "activities_of_households_as_employers": "domestic_work",
    "accommodation_and_food_service_activities": "hospitality",
    "manufacturing": "manufacturing",
    "mining_and_quarrying": "mining_drilling",
    "transportation_and_storage": "transportation",
    "begging": "begging",
    "peddling": "peddling",
    "illicit_activities": "illicit_activities",
    "other": "other",
}  # every other ISIC section: other
METHOD_OF_CONTROL_V2_TO_V1: dict[str, str] = {
    **{v: k for k, v in METHOD_OF_CONTROL_V1_TO_V2.items()},
    "threatens_children_family": "threats",
}
DECISION_MAKER_V2_TO_V1: dict[str, str] = {"appointed_guardian": "parent_guardian"}

#: v1 codes with no v2 counterpart: none. v2 codes v1 cannot carry (downgrade refuses them).
V2_ONLY_REFERRAL_SOURCES = frozenset({"juvenile_judge", "prosecutor", "court", "faith_based_organisation", "community_leader"})
V2_ONLY_ORGANISATION_TYPES = frozenset({"corporate_business", "school_or_college", "court_or_prosecution"})
V2_ONLY_PURPOSES = frozenset(PURPOSES_BY_VERSION["2"]) - frozenset(PURPOSES_BY_VERSION["1"])

#: Escort is the default for a child whose details v1 did not record.
_V1_CHILD = {"age_band": "unknown", "documents": "unknown", "needs_escort": True, "relationship": "child"}


class Dropped(NamedTuple):
    """A field left out by a conversion: its JSON path and why."""

    path: str
    reason: str


class Upgraded(NamedTuple):
    """A converted payload and what it does not carry (or carries only coarsely), path and reason."""

    payload: dict[str, Any]
    dropped: tuple[Dropped, ...]


class DowngradeError(GatewayError):
    """A v2 payload holds fields version 1 cannot carry; ``fields`` lists them."""

    code = "not_representable_in_v1"

    def __init__(self, message_type: str, fields: Iterable[Dropped]) -> None:
        self.message_type = message_type
        self.fields = tuple(sorted(set(fields)))
        listed = "; ".join(f"{f.path}: {f.reason}" for f in self.fields)
        super().__init__(f"{message_type} cannot be carried in schema version 1: {listed}")


_IMMUTABLE = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value: dicts and lists rebuilt, scalars shared (they are
    immutable); anything else goes through ``copy.deepcopy``. Several times faster than
    ``copy.deepcopy`` on the payloads converted for every message sent or read."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


# --- v1 → v2 --------------------------------------------------------------------------


def upgrade_to_v2(
    payload: Mapping[str, Any], message_type: str, *, recipient: str | None = None, recipient_country: str | None = None
) -> Upgraded:
    """Convert a v1 payload to v2 (a v2 payload is returned as is, nothing dropped).

    ``recipient`` (and its country) is the agency the message goes to or came to: a v1
    consent that covers it (by agency or by country) becomes a v2 consent entry for it.
    """
    if payload_version(payload) == "2":
        return Upgraded(copy_json(dict(payload)), ())
    body = copy_json(dict(payload))
    dropped: list[Dropped] = []
    if message_type == "referral.request":
        _upgrade_request(body, dropped, recipient, recipient_country)
    elif message_type == "safety_assessment.result":
        _map_member(body, "assessed_by", ORGANISATION_TYPE_V1_TO_V2)
    elif message_type == "return.plan":
        _map_member(body.get("hold"), "authority", ORGANISATION_TYPE_V1_TO_V2)
    return Upgraded({"schema_version": "2", **body}, tuple(dropped))


def normalise_to_v2(payload: Mapping[str, Any], message_type: str, *, recipient: str | None = None,
                    recipient_country: str | None = None) -> dict[str, Any]:
    """The v2 form of a stored payload of either version, for readers (stats, exports, views).

    Give the recipient's country with the recipient: a v1 consent that covered it by country
    becomes a consent entry for it (without, such a consent names no agency in v2)."""
    return upgrade_to_v2(payload, message_type, recipient=recipient, recipient_country=recipient_country).payload


def _upgrade_request(body: dict[str, Any], dropped: list[Dropped], recipient: str | None, country: str | None) -> None:
    identification = body.get("identification")
    _map_member(identification, "status", IDENTIFICATION_STATUS_V1_TO_V2)
    _map_member(identification, "identified_by", ORGANISATION_TYPE_V1_TO_V2)
    person = body.get("person")
    if isinstance(person, dict):
        if isinstance(person.get("languages"), list):
            languages = []
            for index, code in enumerate(person["languages"]):
                three = to_iso_639_3(code) if isinstance(code, str) else None
                if three is None:
                    dropped.append(Dropped(f"$.person.languages[{index}]", "not an ISO 639 language code"))
                elif three not in languages:
                    languages.append(three)
            _set_or_drop(person, "languages", languages)
        count = person.get("accompanying_children")
        if isinstance(count, int) and not isinstance(count, bool):
            _set_or_drop(person, "accompanying_children", [dict(_V1_CHILD) for _ in range(count)])
    for item in body.get("exploitation") or []:
        if isinstance(item, dict):
            _map_member(item, "type", EXPLOITATION_TYPE_V1_TO_V2)
            if isinstance(item.get("labour_sectors"), list):
                item["labour_sectors"] = _mapped(item["labour_sectors"], LABOUR_SECTOR_V1_TO_V2)
    if isinstance(body.get("methods_of_control"), list):
        body["methods_of_control"] = _mapped(body["methods_of_control"], METHOD_OF_CONTROL_V1_TO_V2)
    if isinstance(body.get("needs"), list):
        body["needs"] = {"services": body["needs"]}
    consent = body.get("consent")
    if isinstance(consent, dict):
        body["consent"] = _upgrade_consent(consent, dropped, recipient, country)
    _drop_not_allowed(body, dropped)


def _upgrade_consent(
    consent: dict[str, Any], dropped: list[Dropped], recipient: str | None, country: str | None
) -> dict[str, Any]:
    purposes = list(consent.get("purposes") or [])
    agencies = list(consent.get("recipient_agencies") or [])
    countries = list(consent.get("recipient_countries") or [])
    if recipient is not None and recipient not in agencies and country is not None and country in countries:
        agencies.append(recipient)
    if countries:
        dropped.append(Dropped("$.consent.recipient_countries",
                               "v2 consent names recipient agencies, not countries (kept for the recipient only)"))
    out: dict[str, Any] = {k: consent[k] for k in ("decision_maker", "given_at", "expires_at") if k in consent}
    if agencies:
        out["recipients"] = [{"agency": agency, "purposes": list(purposes)} for agency in agencies]
    if "form" in consent:
        out["form"] = consent["form"]
    explained = consent.get("explained_in")
    if isinstance(explained, str):
        three = to_iso_639_3(explained)
        if three is None:
            dropped.append(Dropped("$.consent.explained_in", "not an ISO 639 language code"))
        else:
            out["explained_in"] = three
    return out


def _drop_not_allowed(body: dict[str, Any], dropped: list[Dropped]) -> None:
    # What v1 allowed for these purposes and v2 does not (acts, means, methods of control
    # and the narrative with assistance or reintegration_handover).
    purposes = [p for p in body.get("purposes") or [] if p in PURPOSES_BY_VERSION["2"]]
    allowed = allowed_person_fields(purposes, "2")
    table = minimal_data_table("2")
    restricted = sorted({f for fields in table["allowed_by_purpose"].values() for f in fields} - allowed)
    for field in restricted:
        *parents, last = field.split(".")
        node: Any = body
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            del node[last]
            allowing = [p for p, fields in table["allowed_by_purpose"].items() if field in fields]
            dropped.append(Dropped(json_path(field.split(".")),
                                   f"v2 allows {field} only with the purposes: {', '.join(allowing)}"))


# --- v2 → v1 --------------------------------------------------------------------------


def downgrade_to_v1(payload: Mapping[str, Any], message_type: str, *, recipient: str | None = None) -> dict[str, Any]:
    """Convert a v2 payload to v1, or raise DowngradeError listing the fields v1 cannot carry.

    ``recipient``: the agency the message goes to; the v1 consent then covers that agency
    with the purposes the v2 consent grants it (never more). A v1 payload is returned as is.
    """
    return _downgrade(payload, message_type, recipient).payload


def _downgrade(payload: Mapping[str, Any], message_type: str, recipient: str | None) -> Upgraded:
    # The v1 payload, and what it carries only coarsely (reported like an upgrade's drops).
    if payload_version(payload) != "2":
        return Upgraded(copy_json(dict(payload)), ())
    body = copy_json(dict(payload))
    del body["schema_version"]
    refused: list[Dropped] = []
    lost: list[Dropped] = []
    if message_type == "referral.request":
        _downgrade_request(body, refused, recipient, lost)
    elif message_type == "referral.response":
        _refuse_member(body, "best_interests", "$.best_interests", refused)
        _refuse_purposes(body.get("accepted_purposes"), "$.accepted_purposes", refused)
    elif message_type == "safety_assessment.result":
        _downgrade_organisation(body, "assessed_by", "$.assessed_by", refused)
    elif message_type == "return.plan":
        _refuse_member(body, "child_protection", "$.child_protection", refused)
        _refuse_member(body, "accompanying_children", "$.accompanying_children", refused)
        _downgrade_organisation(body.get("hold"), "authority", "$.hold.authority", refused)
        _downgrade_decision_maker(body.get("return_decision"))
    elif message_type == "consent.withdrawal":
        _refuse_purposes(body.get("purposes"), "$.purposes", refused)
        _downgrade_decision_maker(body)
    if refused:
        raise DowngradeError(message_type, refused)
    return Upgraded(body, tuple(lost))


def _downgrade_request(body: dict[str, Any], refused: list[Dropped], recipient: str | None,
                       lost: list[Dropped]) -> None:
    _refuse_purposes(body.get("purposes"), "$.purposes", refused)
    _refuse_member(body, "child_protection", "$.child_protection", refused)
    _refuse_member(body, "criminal_justice", "$.criminal_justice", refused)
    identification = body.get("identification")
    if isinstance(identification, dict):
        status = identification.get("status")
        if status in IDENTIFICATION_STATUS_V2_TO_V1:
            identification["status"] = IDENTIFICATION_STATUS_V2_TO_V1[status]
        elif status is not None:
            refused.append(Dropped("$.identification.status", f"v1 has no code for {status}"))
        if identification.get("referral_source") in V2_ONLY_REFERRAL_SOURCES:
            refused.append(Dropped("$.identification.referral_source",
                                   f"v1 has no code for {identification['referral_source']}"))
        _downgrade_organisation(identification, "identified_by", "$.identification.identified_by", refused)
    person = body.get("person")
    minor = False
    if isinstance(person, dict):
        minor = (person.get("age") or {}).get("minor") is True
        if isinstance(person.get("languages"), list):
            person["languages"] = _downgrade_languages(person["languages"], "$.person.languages", refused)
        children = person.get("accompanying_children")
        if isinstance(children, list):
            # v1 counts the children; their details (age band, documents, escort) stay behind,
            # and the recipient reads each as v1's default child: say so unless each is one.
            person["accompanying_children"] = len(children)
            if any(child != _V1_CHILD for child in children):
                lost.append(Dropped("$.person.accompanying_children",
                                    "v1 carries the number of children only; their age band, documents, escort need "
                                    "and relationship are left out"))
    for index, item in enumerate(body.get("exploitation") or []):
        if isinstance(item, dict):
            kind = item.get("type")
            if kind == "forced_military_by_non_state_actors":
                item["type"] = "child_soldiering" if minor else "other"
            elif isinstance(kind, str):
                item["type"] = EXPLOITATION_TYPE_V2_TO_V1.get(kind, kind)
            if item.get("type") == "other" and kind != "other":
                lost.append(Dropped(f"$.exploitation[{index}].type", f"v1 has no code for {kind}; sent as other"))
            sectors = item.get("labour_sectors")
            if isinstance(sectors, list):
                item["labour_sectors"] = _mapped(sectors, LABOUR_SECTOR_V2_TO_V1, default="other")
                coarse = sorted(s for s in sectors if isinstance(s, str) and s not in LABOUR_SECTOR_V2_TO_V1)
                if coarse:
                    lost.append(Dropped(f"$.exploitation[{index}].labour_sectors",
                                        f"v1 has no code for {', '.join(coarse)}; sent as other"))
    if isinstance(body.get("methods_of_control"), list):
        if "threatens_children_family" in body["methods_of_control"]:
            lost.append(Dropped("$.methods_of_control",
                                "v1 has no code for threatens_children_family; sent as threats"))
        body["methods_of_control"] = _mapped(body["methods_of_control"], METHOD_OF_CONTROL_V2_TO_V1)
    needs = body.get("needs")
    if isinstance(needs, dict):
        for member in sorted(set(needs) - {"services"}):
            refused.append(Dropped(f"$.needs.{member}", "v1 needs are a list of services only"))
        if "services" in needs:
            body["needs"] = needs["services"]
        else:
            del body["needs"]
    consent = body.get("consent")
    if isinstance(consent, dict):
        body["consent"] = _downgrade_consent(consent, body.get("purposes") or [], refused, recipient)


def _downgrade_consent(
    consent: dict[str, Any], purposes: list[str], refused: list[Dropped], recipient: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {k: consent[k] for k in ("decision_maker", "given_at", "expires_at") if k in consent}
    _downgrade_decision_maker(out)
    # Several entries for one agency add up (as the consent policy reads them): one grant per agency.
    by_agency: dict[str, list[str]] = {}
    for entry in consent.get("recipients") or []:
        if isinstance(entry, dict) and (recipient is None or entry.get("agency") == recipient):
            granted_to = by_agency.setdefault(entry.get("agency"), [])  # type: ignore[arg-type]
            granted_to.extend(p for p in entry.get("purposes") or [] if p not in granted_to)
    grants = {tuple(sorted(purposes)) for purposes in by_agency.values()}
    if len(grants) > 1:
        refused.append(Dropped("$.consent.recipients",
                               "purposes differ by recipient agency; a v1 consent grants the same purposes to all "
                               "(convert for one recipient)"))
    elif by_agency:
        # Narrowing a consent is safe: v2-only purposes granted but not requested are left out.
        granted = [p for p in next(iter(by_agency.values())) if p not in V2_ONLY_PURPOSES]
        if granted:
            out["purposes"] = granted
        out["recipient_agencies"] = list(by_agency)
    # else: the consent does not cover the recipient; v1 validation and the consent check say so.
    if "form" in consent:
        out["form"] = consent["form"]
    if "explained_in" in consent:
        codes = _downgrade_languages([consent["explained_in"]], "$.consent.explained_in", refused, indexed=False)
        if codes:
            out["explained_in"] = codes[0]
    return out


def _downgrade_languages(values: list[Any], path: str, refused: list[Dropped], *, indexed: bool = True) -> list[str]:
    out: list[str] = []
    for index, value in enumerate(values):
        if isinstance(value, str):
            code = to_v1_code(value)
            if code not in out:
                out.append(code)
        else:
            where = f"{path}[{index}]" if indexed else path
            refused.append(Dropped(where, "a language without an ISO 639 code has no v1 form"))
    return out


def _downgrade_organisation(node: Any, member: str, path: str, refused: list[Dropped]) -> None:
    if not isinstance(node, dict) or member not in node:
        return
    value = node[member]
    if value in V2_ONLY_ORGANISATION_TYPES:
        refused.append(Dropped(path, f"v1 has no organisation type {value}"))
    else:
        node[member] = ORGANISATION_TYPE_V2_TO_V1.get(value, value)


def _downgrade_decision_maker(node: Any) -> None:
    if isinstance(node, dict):
        _map_member(node, "decision_maker", DECISION_MAKER_V2_TO_V1)


def _refuse_purposes(purposes: Any, path: str, refused: list[Dropped]) -> None:
    for purpose in sorted(set(purposes or []) & V2_ONLY_PURPOSES):
        refused.append(Dropped(path, f"v1 has no purpose {purpose}"))


def _refuse_member(body: dict[str, Any], member: str, path: str, refused: list[Dropped]) -> None:
    if member in body:
        refused.append(Dropped(path, f"v1 has no {member}"))


# --- both directions ------------------------------------------------------------------


def convert(
    payload: Mapping[str, Any], message_type: str, version: str, *, recipient: str | None = None,
    recipient_country: str | None = None,
) -> Upgraded:
    """The payload in ``version`` (upgraded or downgraded as needed) and what the conversion
    left out or carried only coarsely (paths and codes)."""
    if version == "2":
        return upgrade_to_v2(payload, message_type, recipient=recipient, recipient_country=recipient_country)
    if version == "1":
        return _downgrade(payload, message_type, recipient)
    raise ValueError(f"unknown schema version {version!r}")


def _map_member(node: Any, member: str, table: Mapping[str, str]) -> None:
    if isinstance(node, dict) and isinstance(node.get(member), str):
        node[member] = table.get(node[member], node[member])


def _mapped(values: list[Any], table: Mapping[str, str], default: str | None = None) -> list[Any]:
    # Two codes can map to one (aquafarming, agriculture): keep the first, stay uniqueItems.
    out: list[Any] = []
    for value in values:
        new = table.get(value, value if default is None else default) if isinstance(value, str) else value
        if new not in out:
            out.append(new)
    return out


def _set_or_drop(node: dict[str, Any], member: str, values: list[Any]) -> None:
    # An empty list is not allowed where v2 keeps minItems 1: no entries means no member.
    if values:
        node[member] = values
    else:
        del node[member]


def for_adapter(adapter: Any, payload: Mapping[str, Any], *, recipient: str | None = None,
                recipient_country: str | None = None) -> dict[str, Any]:
    """A referral.request in the schema version a local-format adapter reads.

    An adapter class declares ``schema_version = "2"`` to read v2 payloads; one without the
    attribute reads v1 and gets the v1 form (DowngradeError when v1 cannot carry it).
    ``recipient_country``: as for :func:`upgrade_to_v2`, so that a received v1 consent given
    for the recipient's country still covers the recipient in the v2 form.
    """
    version = str(getattr(adapter, "schema_version", "1"))
    if version == "1" and getattr(adapter, "reads_v2_payloads", False) and payload_version(payload) == "2":
        # A mapping adapter reads v2 itself and writes what its form can say (a downgrade would refuse
        # the whole referral for one v2-only field); the consent as the recipient holds it.
        return _consent_for(copy_json(payload), recipient)
    return convert(payload, "referral.request", version, recipient=recipient,
                   recipient_country=recipient_country).payload


def _consent_for(payload: dict[str, Any], recipient: str | None) -> dict[str, Any]:
    """A v2 request whose consent names only ``recipient``, with every purpose granted to it (as the
    v1 form of the consent would): a local form has one list of agencies and one of purposes."""
    consent = payload.get("consent")
    if recipient is None or not isinstance(consent, dict) or not isinstance(consent.get("recipients"), list):
        return payload
    entries = consent["recipients"]
    purposes: list[str] = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("agency") == recipient:
            purposes += [p for p in entry.get("purposes") or [] if p not in purposes]
    if purposes:
        consent["recipients"] = [{"agency": recipient, "purposes": purposes}]
    return payload


def negotiate(ours: Iterable[str], theirs: Iterable[str]) -> str | None:
    """The schema version to send: the highest both agencies' directory entries list.

    Without a common version, the highest one the recipient lists that this code knows (a
    gateway writes every version it knows); None if it lists none of them.
    """
    known = set(PURPOSES_BY_VERSION)
    theirs_known = set(theirs) & known
    common = theirs_known & set(ours)
    pool = common or theirs_known
    return max(pool, key=int) if pool else None
