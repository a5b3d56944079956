"""The API in French and English: error details and code lists follow Accept-Language.

The machine-readable parts (``error``, violation paths and rules) never change with the
language; only ``detail`` does, and the answer says which language it speaks
(``Content-Language``). Translated texts quote no submitted value either (canary).
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.schema import load_example

from testkit.gateway_pair import NIGERIA, ROOT
from .test_api_world import api_pair

FR = {"Accept-Language": "fr-NE, fr;q=0.9, en;q=0.5"}
EN = {"Accept-Language": "en"}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
CANARY_GIVEN, CANARY_FAMILY = "Zyxwvuta", "Qwertyfixture"
FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))


def _referral_with_canary() -> dict:
    payload = load_example("referral.request")
    payload["person"]["names"] = {"given": CANARY_GIVEN, "family": CANARY_FAMILY}
    return payload


async def test_error_details_follow_accept_language_codes_and_paths_do_not(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        auth = ne.auth("caseworker")
        cases = [
            # 422 validation error: the body breaks the request schema
            ("POST", "/referrals", {"json": {"recipient": NIGERIA}}, 422, "invalid_request",
             "corps de la requête invalide"),
            # 404 from a handler
            ("GET", f"/inbox/{UNKNOWN_ID}?purpose=assistance", {}, 404, "not_found",
             "rien ici ne porte l’identifiant du chemin"),
            # 404 from the router
            ("GET", "/no-such-route", {}, 404, "not_found", "Introuvable"),
            # 415
            ("POST", "/referrals", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415,
             "unsupported_media_type", "le corps de la requête doit être de type application/json"),
            # 400 query parameter
            ("GET", "/inbox?limit=0", {}, 400, "invalid_query", "le paramètre de requête limit doit être un entier"),
        ]
        for method, path, extra, status, code, french in cases:
            answers = []
            for language in (FR, EN, {}):
                headers = {**auth, **extra.get("headers", {}), **language}
                kw = {k: v for k, v in extra.items() if k != "headers"}
                async with ne.client.request(method, path, headers=headers, **kw) as resp:
                    answers.append((resp.status, resp.headers.get("Content-Language"), await resp.json()))
            (fr_status, fr_lang, fr), (en_status, en_lang, en), (_, none_lang, none) = answers
            assert fr_status == en_status == status, (path, answers)
            assert fr["error"] == en["error"] == code
            assert fr_lang == "fr" and en_lang == none_lang == "en"
            assert fr["detail"].startswith(french), (path, fr["detail"])
            assert en["detail"] == none["detail"] and en["detail"] != fr["detail"]
            # Violations (paths and rules) are the same in every language.
            assert [(v["path"], v["rule"]) for v in fr.get("violations", [])] == \
                   [(v["path"], v["rule"]) for v in en.get("violations", [])]
        # The violations named in a 422 detail are in French too, where the API wrote them.
        status, body = await ne.call("POST", "/referrals", json={"local_case_id": "x"}, headers=FR)
        assert status == 422 and "$.recipient : la propriété obligatoire « recipient » manque" in body["detail"], body
        assert {"path": "$.recipient", "rule": "required", "message": "required property 'recipient' is missing"} \
            in body["violations"]


async def test_auth_errors_in_french(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, body = await ne.call("GET", "/messages", role=None, headers=FR)
        assert (status, body["error"], body["detail"]) == (401, "unauthorized", "un jeton d’accès (Bearer) valide est requis")
        status, body = await ne.call("GET", "/messages", role=None, headers={"Accept-Language": "de, en;q=0.1"})
        assert (status, body["detail"]) == (401, "a valid bearer token is required")
        status, body = await ne.call("GET", "/metrics", role="caseworker", headers=FR)
        assert status == 403 and body["error"] == "forbidden"
        assert body["detail"].startswith("le rôle caseworker n’a pas l’autorisation "), body
        _, headers, _ = ne.responses[-1]
        assert headers["Content-Language"] == "fr" and "Accept-Language" in headers["Vary"]


async def test_adapter_errors_in_french_name_the_field_not_the_value(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        bad = dict(FICHE, sexe="Q", nom=CANARY_FAMILY)
        body = {"recipient": NIGERIA, "case_ref": "ne-ng-i18nadapt0001", "format": "niger", "record": bad}
        status, fr = await ne.call("POST", "/referrals", json=body, headers=FR)
        status_en, en = await ne.call("POST", "/referrals", json=body, headers=EN)
        assert status == status_en == 422 and fr["error"] == en["error"]
        assert fr["detail"].startswith("sexe : ne figure pas dans la liste de codes"), fr
        assert en["detail"].startswith("sexe: is not in the code list for"), en
        for answer in (fr, en):
            assert CANARY_FAMILY not in json.dumps(answer) and "'Q'" not in answer["detail"]


async def test_translated_errors_quote_no_personal_data(tmp_path: Path, capsys) -> None:
    async with api_pair(tmp_path) as (ne, _):
        payload = _referral_with_canary()
        payload["person"]["sex"] = "not-a-sex"  # refused: the detail names the field only
        payload["person"]["names"]["extra_" + CANARY_GIVEN] = CANARY_FAMILY
        for language in (FR, EN):
            body = {"recipient": NIGERIA, "case_ref": "ne-ng-i18ncanary001", "payload": payload}
            status, answer = await ne.call("POST", "/referrals", json=body, headers=language)
            assert status == 422, answer
        # An unknown recipient is named by the field only, in both languages.
        body = {"recipient": "XX-" + CANARY_GIVEN.upper(), "payload": _referral_with_canary()}
        status, answer = await ne.call("POST", "/referrals", json=body, headers=FR)
        assert status == 422
        for _, headers, text in ne.responses:
            assert CANARY_GIVEN.lower() not in text.lower() and CANARY_FAMILY.lower() not in text.lower(), text
            assert CANARY_GIVEN.lower() not in json.dumps(headers).lower()
        out = capsys.readouterr()
        assert CANARY_GIVEN not in out.out + out.err and CANARY_FAMILY not in out.out + out.err


async def test_code_lists_in_the_negotiated_language(tmp_path: Path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, fr = await ne.call("GET", "/codes/purpose", role=None, headers=FR)
        assert status == 200 and fr["language"] == "fr" and fr["code_list"] == "purpose"
        assert fr["labels"]["family_tracing"] == "Recherche familiale"
        assert ne.responses[-1][1]["Content-Language"] == "fr"
        status, en = await ne.call("GET", "/codes/purpose", role=None)
        assert status == 200 and en["language"] == "en" and en["labels"]["family_tracing"] == "Family tracing"
        assert list(fr["labels"]) == list(en["labels"])  # same codes, same order
        status, every = await ne.call("GET", "/codes", role=None, headers={"Accept-Language": "fr;q=0.3, en;q=0.2"})
        assert status == 200 and every["language"] == "fr"
        assert every["code_lists"]["needs.medical_urgency"]["emergency"] == "Urgence vitale"
        assert every["code_lists"]["country_code"]["NG"] == "Nigeria"
        status, missing = await ne.call("GET", "/codes/" + CANARY_GIVEN.lower(), role=None, headers=FR)
        assert (status, missing["error"]) == (404, "not_found")
        assert missing["detail"].startswith("aucune liste de codes") and CANARY_GIVEN.lower() not in missing["detail"]
        doc = (await ne.call("GET", "/openapi.json", role=None))[1]
        assert {"/codes", "/codes/{name}"} <= set(doc["paths"])
