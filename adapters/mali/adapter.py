"""The Mali adapter (DNPEF): the mapping table plus the local habits a table cannot say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.base import AdapterError, DroppedField, MappingAdapter, MissingFieldError, get_path

_ORIGIN = "person.place_of_origin"
#: The DNPEF: the agency a Malian child-protection social worker guardian works for.
DNPEF = "ML-DNPEF"
#: conclusion_eis code -> v2 best_interests (status, outcome). "Return not recommended" says
#: no return but not which solution, which v2 needs for a completed determination: not sent.
_BEST_INTERESTS = {
    "return_recommended": {"status": "completed", "outcome": "return_to_family"},
    "pending": {"status": "in_progress"},
}


class MaliAdapter(MappingAdapter):
    """DNPEF fiche de référencement d'enfant (French, JJ/MM/AAAA dates, Bamako time UTC+0)."""

    format_id = "mali"
    folder = Path(__file__).resolve().parent

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """The form has one ``tuteur`` block; several are a list. The table reads a list."""
        if isinstance(record.get("tuteur"), dict) and not self.table.is_missing(record["tuteur"]):
            record = {**record, "tuteur": [record["tuteur"]]}
        return record

    def finish_local(self, record: dict[str, Any]) -> dict[str, Any]:
        """A single guardian is written back as one block, the way the form has it."""
        if isinstance(record.get("tuteur"), list) and len(record["tuteur"]) == 1:
            record["tuteur"] = record["tuteur"][0]
        return record

    def _map_record(self, local: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[str, AdapterError]]:
        """The place of origin is four flat fields; its country is required once any detail is given.

        Recorded like any other failed field, so it only blocks the referral when the
        purposes keep the place of origin (otherwise it is dropped and reported).
        """
        payload, trace, failed = super()._map_record(local)
        place = get_path(payload, _ORIGIN)
        if isinstance(place, dict) and "country" not in place and not any(k.startswith(_ORIGIN) for k in failed):
            failed[_ORIGIN] = MissingFieldError("pays_origine", "is required when region_origine, cercle or commune is given")
        return payload, trace, failed

    def extend_v2(self, local: dict[str, Any], payload: dict[str, Any], dropped: list[DroppedField]) -> None:
        """A child's care status, guardian role (a DNPEF social worker is not a family contact) and best-interests determination."""
        if get_path(payload, "person.age.minor") is not True:
            return
        # the care status (situation_enfant) is the table's ``care_status``, already in the payload
        protection: dict[str, Any] = dict(payload.get("child_protection") or {"care_status": "unknown"})
        guardians = local.get("tuteur") if isinstance(local.get("tuteur"), list) else []
        lien = guardians[0].get("lien") if guardians and isinstance(guardians[0], dict) else None
        if isinstance(lien, str) and not self.table.is_missing(lien):
            try:
                role = self.table.code_lists["role_tuteur"].to_shared(lien)
            except KeyError:
                role = None  # a relative (oncle, grand-mère): a family contact, not a guardian role
            if role is not None:
                protection["guardian"] = {"role": role, **({"agency": DNPEF} if role == "child_protection_social_worker" else {})}
        evaluation = local.get("evaluation_interet_superieur")
        conclusion = evaluation.get("conclusion") if isinstance(evaluation, dict) else None
        if isinstance(evaluation, dict) and isinstance(conclusion, str) and not self.table.is_missing(conclusion):
            code = self.table.code_lists["conclusion_eis"].to_shared(conclusion)
            if code in _BEST_INTERESTS:
                best = dict(_BEST_INTERESTS[code])
                decided = payload_date(self, evaluation.get("date")) if best["status"] == "completed" else None
                if decided:
                    best |= {"decided_on": decided, "decided_by": DNPEF}
                protection["best_interests"] = best
            else:
                dropped.append(DroppedField("evaluation_interet_superieur.conclusion", "child_protection.best_interests",
                                            "v2 needs the chosen solution of a completed determination: not sent"))
        if len(protection) > 1 or protection["care_status"] != "unknown":
            payload["child_protection"] = protection

    def finish_local_v2(self, record: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """The guardian's role and the best-interests conclusion, from a v2 payload."""
        protection = payload.get("child_protection") or {}
        role = get_path(protection, "guardian.role")
        # parent / legal guardian: the relationship on the form already says it (mère stays mère)
        if isinstance(role, str) and role not in ("parent", "legal_guardian"):
            try:
                spelling = self.table.code_lists["role_tuteur"].to_local(role)
            except KeyError:
                spelling = None
            if spelling is not None:
                block = record.get("tuteur")
                if isinstance(block, dict):
                    block["lien"] = spelling
                elif block is None:
                    record["tuteur"] = {"lien": spelling}
        best = protection.get("best_interests")
        if isinstance(best, dict):
            if best.get("status") == "completed":
                code = "return_recommended" if best.get("outcome") == "return_to_family" else "return_not_recommended"
            else:
                code = "pending"
            evaluation: dict[str, Any] = {"conclusion": self.table.code_lists["conclusion_eis"].to_local(code)}
            if isinstance(best.get("decided_on"), str):
                evaluation["date"] = self.table.transforms["date_dmy"].to_local(best["decided_on"], {})
            record["evaluation_interet_superieur"] = evaluation
        return record


def payload_date(adapter: MappingAdapter, value: Any) -> str | None:
    """A JJ/MM/AAAA date of the form as an ISO date, or None when missing or unreadable (checked elsewhere)."""
    if not isinstance(value, str) or adapter.table.is_missing(value):
        return None
    try:
        return str(adapter.table.transforms["date_dmy"].to_shared(value, {}))
    except ValueError:
        return None
