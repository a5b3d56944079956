"""The HTCDS adapter: an IOM HTCDS 2.0 case record <-> the shared ``referral.request``.

Field names and picklist values are HTCDS 2.0's own (``htcds_2.0.json``); what the shared
schema needs and HTCDS lacks is in ``x_rgw_`` extension fields. Almost everything is data
(``mapping.json``, ``countries.json``, ``htcds.schema.json``). Code handles what a table
cannot say (docs/htcds.md):

* field names of older HTCDS versions are refused, naming the 2.0 field to use;
* picklist values of the 2.0 fields that stay local are still checked against the standard;
* Salesforce multiselect values written ``"A;B"``;
* ISO 639-2 languages in ``prs_PrimaryLanguage``/``prs_SecondaryLanguage`` (``iso639``);
* ``prs_Citizenship`` (multiselect): the first country is the nationality;
* the flat exploitation fields (``vic_TypeOfExploitation``, ``vic_ForcedLabourIndustry`` and
  the ``x_rgw_`` intended/sector/country fields) grouped into items, and flattened back
  (with ``x_rgw_Exploitation`` item by item only when the flat fields cannot say it);
* ``cas_ReasonForOutgoingReferral`` and ``con_Consent``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from adapters.base import (
    TRANSFORMS,
    AdapterError,
    AdaptResult,
    DroppedField,
    LocalRecordInvalidError,
    MappingAdapter,
    MappingDefinitionError,
    MissingFieldError,
    PurposesError,
    TransformFailed,
    UnmappableValueError,
    _echo,
    normalise,
)
from adapters.errors import raise_all
from adapters.htcds import standard
from adapters.htcds.groups import GROUPS, flat_name, renamed
from adapters.htcds.transforms import HTCDS_TRANSFORMS, iso639, own_table
from adapters.paths import _MISSING, get_path, set_path
from gateway.schema import SCHEMA_DIR, payload_version
from gateway.schema_versions import upgrade_to_v2

X = standard.EXTENSION_PREFIX
RECIPIENTS = X + "ConsentRecipients"
RECIPIENT_AGENCIES = X + "ConsentRecipientAgencies"
CONSENT_PURPOSES = X + "ConsentPurposes"
CHILDREN = X + "AccompanyingChildren"
EXPLOITATION = "vic_TypeOfExploitation"
DETAILED = X + "Exploitation"
INTENDED = X + "IntendedExploitation"
INDUSTRY = "vic_ForcedLabourIndustry"
SECTORS = X + "LabourSectors"
COUNTRIES = X + "ExploitationCountries"
LANGUAGES = X + "Languages"
LANGUAGE_FIELDS = ("prs_PrimaryLanguage", "prs_SecondaryLanguage", X + "OtherLanguages")
CITIZENSHIP = "prs_Citizenship"
REASON = "cas_ReasonForOutgoingReferral"
PURPOSES = X + "Purposes"
CONSENT = "con_Consent"
#: Exploitation types whose items carry vic_ForcedLabourIndustry (when the record has one).
LABOUR_TYPES = frozenset({"forced_labour", "child_labour", "domestic_servitude"})
#: Code lists -> the shared schema v2 enumeration they map to (checked when the adapter loads).
V2_TARGETS: dict[str, tuple[str, ...]] = {
    "gender": ("sex",), "trafficking_status": ("identification_status",), "organisation_type": ("organisation_type",),
    "type_of_exploitation": ("exploitation_type",), "method_of_control": ("method_of_control",),
    "labour_sector": ("labour_sector",), "purpose": ("purpose",), "urgency": ("urgency",), "age_band": ("age_band",),
    "referral_source": ("referral_source",), "relationship": ("relationship",), "document_type": ("document_type",),
    "act": ("act",), "means": ("means",), "need": ("need",), "risk_factor": ("risk_factor",),
    "decision_maker": ("decision_maker",), "consent_form": ("consent", "form"),
    "medical_urgency": ("needs", "medical_urgency"), "medical_category": ("needs", "medical_category", "items"),
    "fit_to_travel": ("needs", "fit_to_travel"), "disability": ("needs", "disability", "items"),
    "access_need": ("needs", "access_needs", "items"), "care_status": ("care_status",), "guardian_role": ("guardian", "role"),
    "best_interests_status": ("best_interests", "status"), "best_interests_outcome": ("best_interests", "outcome"),
    "cooperation_decision": ("criminal_justice", "cooperation_decision"),
    "protection_measure": ("criminal_justice", "protection_measures_requested", "items"),
    "child_documents": ("accompanying_child", "documents"), "child_relationship": ("accompanying_child", "relationship"),
}
def _checkbox(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    key = normalise(str(value))
    return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(key)


def _split_multiselect(value: Any) -> Any:
    """Salesforce writes a multiselect picklist as ``"A;B"``."""
    if isinstance(value, str) and ";" in value:
        return [part.strip() for part in value.split(";") if part.strip()]
    return value




class HtcdsAdapter(MappingAdapter):
    """An HTCDS 2.0 record (the standard's field names and picklist values, ``x_rgw_`` extensions)."""

    format_id = "htcds"
    folder = Path(__file__).resolve().parent
    local_schema_file = "htcds.schema.json"
    schema_version = "2"
    transforms = {**TRANSFORMS, **HTCDS_TRANSFORMS}

    def __init__(self) -> None:
        super().__init__()
        standard.fields()  # read the standard and the children's code lists now, not per record
        own_table()
        for name, path in V2_TARGETS.items():
            codes = self.table.code_lists[name]
            allowed = _v2_enum(*path)
            wrong = sorted({str(c) for c in codes.codes.values()} - set(allowed))
            if wrong:
                raise MappingDefinitionError(f"code_lists.{name}: {wrong} not codes of shared schema v2 {'.'.join(path)}")
            unwritable = [c for c in allowed if c not in codes.codes.values()]
            if unwritable:
                raise MappingDefinitionError(f"code_lists.{name}: no local spelling for {unwritable}")

    # -- local -> shared --

    def local_errors(self, record: Any) -> list[AdapterError]:
        """Field names of older HTCDS versions first, each naming the 2.0 field to use; then the schema's."""
        legacy = sorted(set(record) & set(standard.LEGACY_FIELDS)) if isinstance(record, dict) else []
        out: list[AdapterError] = [
            LocalRecordInvalidError(name, f"is not an HTCDS 2.0 field: use {standard.LEGACY_FIELDS[name]}",
                                    reason_code="legacy_field", params={"use": standard.LEGACY_FIELDS[name]})
            for name in legacy]
        return out + [e for e in super().local_errors(record) if getattr(e, "local_field", None) not in legacy]

    def to_shared(self, local_record: dict[str, Any], purposes: Iterable[str] | None = None) -> AdaptResult:
        """Map an HTCDS 2.0 record; a second ``prs_Citizenship`` country is reported as dropped."""
        try:
            result = super().to_shared(local_record, purposes)
        except AdapterError as exc:
            named = [renamed(one) for one in exc.errors]
            if all(new is old for new, old in zip(named, exc.errors)):
                raise
            raise_all(named)
            raise
        dropped = tuple(DroppedField(flat_name(d.local_field) or d.local_field, d.shared_path, d.reason) for d in result.dropped)
        result = AdaptResult(result.payload, dropped)
        citizenship = _split_multiselect(local_record.get(CITIZENSHIP))
        if isinstance(citizenship, list):
            known = [c for c in citizenship if not self.table.is_missing(c)]
            codes = list(dict.fromkeys(self.table.code_lists["country"].to_shared(c) for c in known))
            if len(codes) > 1 and "nationality" in result.payload.get("person", {}):
                extra = DroppedField(CITIZENSHIP, "person.nationality",
                                     f"{len(codes) - 1} further citizenship(s) not sent: the shared schema carries one nationality")
                result = AdaptResult(result.payload, (*result.dropped, extra))
        return result

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        properties = (self.local_schema or {}).get("properties", {})
        for name in list(record):
            field = standard.fields().get(name)
            # Only fields that take several values: a ';' in a name or a narrative is text.
            if field is not None and field.multiselect or name.startswith(X) and "oneOf" in properties.get(name, {}):
                record[name] = _split_multiselect(record[name])
        self._check_standard_picklists(record)
        self._take_consent(record)
        self._take_recipients(record)
        self._take_reason(record)
        self._take_citizenship(record)
        self._take_languages(record)
        self._take_children(record)
        for group, members in GROUPS.items():
            grouped: dict[str, Any] = {}
            for flat, inner in members.items():
                if flat in record:
                    set_path(grouped, inner, record.pop(flat))
            if grouped:
                record[group] = grouped
        self._take_exploitation(record)
        return record

    def _check_standard_picklists(self, record: dict[str, Any]) -> None:
        """A 2.0 picklist field that stays local must still hold one of the standard's values."""
        for name in self.table.local_only:
            field = standard.fields().get(name)
            if field is None or not field.values or name not in record:
                continue
            value = record[name]
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if self.table.is_missing(item):
                    continue
                if not isinstance(item, str) or not field.accepts(item):
                    where = f"{name}[{i}]" if isinstance(value, list) else name
                    raise UnmappableValueError(where, f"{_echo(item)} is not in the HTCDS 2.0 picklist for {name}")

    def _take_consent(self, record: dict[str, Any]) -> None:
        if CONSENT not in record or self.table.is_missing(record[CONSENT]):
            record.pop(CONSENT, None)
            return
        given = _checkbox(record.pop(CONSENT))
        if given is None:
            raise UnmappableValueError(CONSENT, "must be a checkbox value (true or false)")
        if not given:
            raise UnmappableValueError(CONSENT, "is false: without the person's consent nothing can be referred")

    def _take_recipients(self, record: dict[str, Any]) -> None:
        """``x_rgw_ConsentRecipientAgencies`` with ``x_rgw_ConsentPurposes``: every agency for every purpose."""
        agencies = record.pop(RECIPIENT_AGENCIES, None)
        purposes = record.pop(CONSENT_PURPOSES, None)
        given = [name for name, v in ((RECIPIENT_AGENCIES, agencies), (CONSENT_PURPOSES, purposes))
                 if v is not None and not self.table.is_missing(v)]
        if not given:
            return
        if RECIPIENTS in record and not self.table.is_missing(record[RECIPIENTS]):
            raise UnmappableValueError(given[0], f"give the consent either as {RECIPIENTS} or as "
                                                 f"{RECIPIENT_AGENCIES} with {CONSENT_PURPOSES}, not both")
        if len(given) == 1:
            other = CONSENT_PURPOSES if given[0] == RECIPIENT_AGENCIES else RECIPIENT_AGENCIES
            raise MissingFieldError(other, f"is required when {given[0]} is given (or use {RECIPIENTS})")
        listed = agencies if isinstance(agencies, list) else [agencies]
        record[RECIPIENTS] = [{"Agency": agency, "Purposes": purposes} for agency in listed]

    def _take_reason(self, record: dict[str, Any]) -> None:
        """``cas_ReasonForOutgoingReferral`` gives the purpose when ``x_rgw_Purposes`` does not; else every consented one."""
        reason = record.pop(REASON, None)
        purpose = "other"
        if reason is not None and not self.table.is_missing(reason):
            try:
                purpose = self.table.code_lists["outgoing_reason"].to_shared(reason)
            except KeyError:
                raise UnmappableValueError(REASON, f"{_echo(reason)} is not in the HTCDS 2.0 picklist for {REASON}") from None
        if not self.table.is_missing(record.get(PURPOSES)):
            return
        if purpose != "other":
            record[PURPOSES] = [purpose]
            return
        consented = []
        for entry in record.get(RECIPIENTS) or []:
            items = entry.get("Purposes") if isinstance(entry, dict) else None
            for item in items if isinstance(items, list) else [items]:
                if isinstance(item, str) and not self.table.is_missing(item) and item not in consented:
                    consented.append(item)
        if consented:
            record[PURPOSES] = consented

    def _take_children(self, record: dict[str, Any]) -> None:
        """A number N of accompanying children: N children of unknown age band and documents, escorted."""
        value = record.get(CHILDREN)
        if isinstance(value, bool) or not isinstance(value, int):
            return
        record[CHILDREN] = [{"AgeBand": "Unknown", "Documents": "Unknown", "NeedsEscort": True, "Relationship": "Child"}
                            for _ in range(value)] or self.table.missing_local

    def _take_citizenship(self, record: dict[str, Any]) -> None:
        value = record.get(CITIZENSHIP)
        if isinstance(value, list):
            known = [c for c in value if not self.table.is_missing(c)]
            for i, item in enumerate(value):
                if self.table.is_missing(item):
                    continue
                try:
                    self.table.code_lists["country"].to_shared(item)
                except KeyError:
                    raise UnmappableValueError(f"{CITIZENSHIP}[{i}]", f"{_echo(item)} is not in the code list for country") from None
            record[CITIZENSHIP] = known[0] if known else self.table.missing_local

    def _take_languages(self, record: dict[str, Any]) -> None:
        languages: list[Any] = []
        for name in LANGUAGE_FIELDS:
            value = record.pop(name, None)
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if item is None or self.table.is_missing(item):
                    continue
                where = f"{name}[{i}]" if isinstance(value, list) else name
                try:
                    iso639(item, {})
                except TransformFailed as exc:
                    raise UnmappableValueError(where, str(exc)) from None
                languages.append(item)
        if languages:
            record[LANGUAGES] = languages

    def _take_exploitation(self, record: dict[str, Any]) -> None:
        """Flat HTCDS exploitation fields (or ``x_rgw_Exploitation``) -> items ``{Type, Intended, Sectors, Countries}``."""
        types = self._listed(record, EXPLOITATION)
        # ["Unknown"] is an item of unknown type (undetermined), not "no item".
        unknown_listed = isinstance(record.get(EXPLOITATION), list) and bool(record[EXPLOITATION]) and not types
        intended = self._listed(record, INTENDED)
        industry = self._listed(record, INDUSTRY)
        sectors = self._listed(record, SECTORS)
        countries = self._listed(record, COUNTRIES)
        detailed = record.pop(DETAILED, None)
        for name in (EXPLOITATION, INTENDED, INDUSTRY, SECTORS, COUNTRIES):
            record.pop(name, None)
        if detailed:
            record[EXPLOITATION] = self._detailed_items(detailed, {
                EXPLOITATION: types, INTENDED: intended, INDUSTRY: industry, SECTORS: sectors, COUNTRIES: countries})
            return
        codes = [self._code("type_of_exploitation", f"{EXPLOITATION}[{i}]", t) for i, t in enumerate(types)]
        intended_codes = [self._code("type_of_exploitation", f"{INTENDED}[{i}]", t) for i, t in enumerate(intended)]
        for i, s in enumerate(industry):
            self._code("forced_labour_industry", f"{INDUSTRY}[{i}]" if len(industry) > 1 else INDUSTRY, s)
        for i, s in enumerate(sectors):
            self._code("extra_labour_sector", f"{SECTORS}[{i}]", s)
        all_sectors = industry + sectors
        items = []
        for t, code in zip(types, codes):
            items.append({"Type": t, "Intended": code in intended_codes})
        for t, code in zip(intended, intended_codes):
            if code not in codes:
                items.append({"Type": t, "Intended": True})
        if not items and (all_sectors or countries or unknown_listed):
            # Sectors or countries known, type not: one item of undetermined type carries them.
            items = [{"Type": self.table.missing_local, "Intended": False}]
        labour = [i for i in items if self._type_code(i["Type"]) in LABOUR_TYPES] or items
        for item in items:
            if all_sectors and item in labour:
                item["Sectors"] = list(all_sectors)
            if countries:
                item["Countries"] = list(countries)
        if items:
            record[EXPLOITATION] = items

    def _listed(self, record: dict[str, Any], name: str) -> list[Any]:
        value = record.get(name)
        items = value if isinstance(value, list) else [value]
        return [v for v in items if v is not None and not self.table.is_missing(v)]

    def _code(self, code_list: str, where: str, value: Any) -> Any:
        codes = self.table.code_lists[code_list]
        try:
            return codes.to_shared(value)
        except KeyError:
            raise UnmappableValueError(where, f"{_echo(value)} is not in the code list for {codes.label}") from None

    def _type_code(self, value: Any) -> Any:
        try:
            return self.table.code_lists["type_of_exploitation"].to_shared(value)
        except KeyError:
            return None

    def _detailed_items(self, detailed: list[dict[str, Any]], flat: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """``x_rgw_Exploitation`` items; the flat fields, when given, must say the same."""
        lists = {EXPLOITATION: "type_of_exploitation", INTENDED: "type_of_exploitation", INDUSTRY: "forced_labour_industry",
                 SECTORS: "extra_labour_sector", COUNTRIES: "country"}
        found: dict[str, set[Any]] = {name: set() for name in lists}
        items = []
        for i, item in enumerate(detailed):
            where = f"{DETAILED}[{i}]"
            code = self._code(lists[EXPLOITATION], f"{where}.Type", item["Type"])
            found[EXPLOITATION].add(code)
            if self._code("yes_no", f"{where}.Intended", item.get("Intended", False)):
                found[INTENDED].add(code)
            for key, name in (("ForcedLabourIndustry", INDUSTRY), ("LabourSectors", SECTORS), ("Countries", COUNTRIES)):
                for j, value in enumerate(item.get(key, [])):
                    found[name].add(self._code(lists[name], f"{where}.{key}[{j}]", value))
            sectors = [*item.get("ForcedLabourIndustry", []), *item.get("LabourSectors", [])]
            out: dict[str, Any] = {"Type": item["Type"], "Intended": item.get("Intended", False)}
            if sectors:
                out["Sectors"] = sectors
            if item.get("Countries"):
                out["Countries"] = item["Countries"]
            items.append(out)
        for name, values in flat.items():
            mine = {self._code(lists[name], name, v) for v in values}
            if values and mine != found[name]:
                raise UnmappableValueError(name, f"disagrees with {DETAILED}: list the same values in both")
        return items

    def check_shared(self, payload: dict[str, Any], trace: Any) -> None:
        """Child protection only for a minor; cooperation with justice only with the person's agreement."""
        if "child_protection" in payload and get_path(payload, "person.age.minor") is not True:
            raise UnmappableValueError(X + "CareStatus", "child protection fields are for a minor only "
                                                         f"({X}IsMinor, prs_Birthdate or the age say the person is an adult)")
        needs = payload.get("needs", {})
        if "medical_category" in needs and needs.get("medical_urgency", "none") == "none":
            raise MissingFieldError(X + "MedicalUrgency", f"must be other than None when {X}MedicalCategory is given")
        if get_path(needs, "interpreter.needed") is True and get_path(needs, "interpreter.language") is _MISSING:
            raise MissingFieldError(X + "InterpreterLanguage", f"is required when {X}InterpreterNeeded is Yes")
        best = get_path(payload, "child_protection.best_interests")
        if isinstance(best, dict):
            if best["status"] == "completed" and best.get("outcome", "pending") == "pending":
                raise MissingFieldError(X + "BestInterestsOutcome", "is required (and not Pending) when the determination is completed")
            early = [k for k in ("decided_on", "decided_by") if k in best and best["status"] != "completed"]
            if early:
                field = X + ("BestInterestsDecidedOn" if early[0] == "decided_on" else "BestInterestsDecidedBy")
                raise UnmappableValueError(field, f"is given only once {X}BestInterestsStatus is Completed")
        if "criminal_justice_cooperation" in payload.get("purposes", []):
            decision = get_path(payload, "criminal_justice.cooperation_decision")
            if decision is _MISSING:
                raise MissingFieldError(X + "CooperationDecision", "is required for the purpose criminal_justice_cooperation")
            if decision != "agrees":
                raise PurposesError(f"{X}CooperationDecision: criminal_justice_cooperation needs the person's agreement "
                                    "(the person keeps every assistance purpose without it)", X + "CooperationDecision")

    # -- shared -> local --

    def from_shared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Map a shared ``referral.request`` (v2; a v1 payload is upgraded first) to an HTCDS 2.0 record."""
        if payload_version(payload) == "1":
            payload = upgrade_to_v2(payload, "referral.request").payload
        return super().from_shared(payload)

    def finish_local(self, record: dict[str, Any]) -> dict[str, Any]:
        for group, members in GROUPS.items():
            grouped = record.pop(group, None)
            if isinstance(grouped, dict):
                for flat, inner in members.items():
                    value = get_path(grouped, inner)
                    if value is not _MISSING:
                        record[flat] = value
        recipients = record.get(RECIPIENTS)
        if isinstance(recipients, list) and recipients and all(r.get("Purposes") == recipients[0].get("Purposes") for r in recipients):
            # One set of purposes for every agency: the two flat fields say it.
            del record[RECIPIENTS]
            record[RECIPIENT_AGENCIES] = [r["Agency"] for r in recipients]
            record[CONSENT_PURPOSES] = recipients[0]["Purposes"]
        children = record.get(CHILDREN)
        default_child = {"AgeBand": "Unknown", "Documents": "Unknown", "NeedsEscort": "Yes", "Relationship": "Child"}
        if isinstance(children, list) and all(c == default_child for c in children):
            record[CHILDREN] = len(children)
        languages = record.pop(LANGUAGES, None)
        if languages:
            record["prs_PrimaryLanguage"] = languages[0]
            if len(languages) > 1:
                record["prs_SecondaryLanguage"] = languages[1]
            if len(languages) > 2:
                record[X + "OtherLanguages"] = languages[2:]
        if CITIZENSHIP in record:
            record[CITIZENSHIP] = [record[CITIZENSHIP]]
        purposes = record.get(PURPOSES, [])
        reasons = self.table.code_lists["outgoing_reason"]
        # HTCDS has one reason: assistance first, then return; any other purpose is "Other".
        shared_purposes = [self.table.code_lists["purpose"].to_shared(p) for p in purposes]
        purpose = next((p for p in ("assistance", "assisted_return") if p in shared_purposes), "other")
        record[REASON] = reasons.to_local(purpose)
        record[CONSENT] = True
        items = record.pop(EXPLOITATION, None)
        if isinstance(items, list):
            self._flatten_exploitation(record, items)
        return record

    def _flatten_exploitation(self, record: dict[str, Any], items: list[dict[str, Any]]) -> None:
        yes_no = self.table.code_lists["yes_no"]
        flat: dict[str, list[Any]] = {EXPLOITATION: [], INTENDED: [], INDUSTRY: [], SECTORS: [], COUNTRIES: []}
        isic = set(standard.fields()[INDUSTRY].values)
        detailed = []
        for item in items:
            intended = yes_no.to_shared(item.get("Intended", "No"))
            if item["Type"] not in flat[EXPLOITATION]:
                flat[EXPLOITATION].append(item["Type"])
            if intended and item["Type"] not in flat[INTENDED]:
                flat[INTENDED].append(item["Type"])
            sectors = item.get("Sectors", [])
            for s in sectors:
                key = INDUSTRY if s in isic else SECTORS
                if s not in flat[key]:
                    flat[key].append(s)
            for c in item.get("Countries", []):
                if c not in flat[COUNTRIES]:
                    flat[COUNTRIES].append(c)
            detail: dict[str, Any] = {"Type": item["Type"], "Intended": intended}
            if [s for s in sectors if s in isic]:
                detail["ForcedLabourIndustry"] = [s for s in sectors if s in isic]
            if [s for s in sectors if s not in isic]:
                detail["LabourSectors"] = [s for s in sectors if s not in isic]
            if item.get("Countries"):
                detail["Countries"] = item["Countries"]
            detailed.append(detail)
        for name, values in flat.items():
            if values:
                record[name] = values[0] if name == INDUSTRY and len(values) == 1 else values
        # The flat fields are HTCDS's; when they cannot say it item by item, add the detail.
        candidate = copy.deepcopy(record)
        self._take_exploitation(candidate)
        expected = [{k: v for k, v in i.items() if k != "Intended" or yes_no.to_shared(v)} for i in items]
        got = [{k: v for k, v in i.items() if k != "Intended" or v} for i in candidate.get(EXPLOITATION, [])]
        if got != expected:
            record[DETAILED] = detailed


@cache
def _v2_defs() -> dict[str, Any]:
    return dict(json.loads((SCHEMA_DIR / "v2" / "common.schema.json").read_text(encoding="utf-8"))["$defs"])


def _v2_enum(*path: str) -> list[Any]:
    node: Any = _v2_defs()[path[0]]
    for part in path[1:]:
        node = node["items"] if part == "items" else node["properties"][part]
    return list(node["enum"])
