"""The committed per-country broker definitions are what generate.py makes from the shared file."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTRIES = ROOT / "deploy" / "rabbitmq" / "countries"


def _generator():
    spec = importlib.util.spec_from_file_location("country_definitions", COUNTRIES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_committed_country_definitions_are_up_to_date() -> None:
    gen = _generator()
    shared = json.loads(gen.SHARED.read_text(encoding="utf-8"))
    by_country: dict[str, list[str]] = defaultdict(list)
    for user in shared["users"]:
        if user["name"] != gen.AUTHORITY_USER:  # the directory authority is no agency
            by_country[user["name"].split("-", 1)[0]].append(user["name"])
    assert sorted(by_country) == ["ML", "NE", "NG"]
    assert gen.agencies_by_country(shared) == dict(by_country)
    outputs = [(COUNTRIES / f"{c}.json", c, False) for c in by_country]
    outputs += [(COUNTRIES / "compose" / f"{c}.json", c, True) for c in gen.COMPOSE_COUNTRIES]
    for path, country, compose in outputs:
        expected = gen.country_definitions(country, by_country, shared, compose)
        assert json.loads(path.read_text(encoding="utf-8")) == expected, f"{path} is stale: run generate.py"
    committed = {p.stem for p in (COUNTRIES / "compose").glob("*.json")}
    assert committed == set(gen.COMPOSE_COUNTRIES), "compose/ holds a country compose.yaml runs no broker for"


def test_each_country_shovels_to_every_partner_and_routes_ingress_only_locally() -> None:
    for path in sorted(COUNTRIES.glob("*.json")):
        country = path.stem
        doc = json.loads(path.read_text(encoding="utf-8"))
        shovels = {p["name"]: p["value"] for p in doc["parameters"] if p["component"] == "shovel"}
        assert set(shovels) == {f"to-{p}" for p in ("ML", "NE", "NG") if p != country}
        assert all(v["ack-mode"] == "on-confirm" for v in shovels.values())
        ingress = [b for b in doc["bindings"] if b["source"] == "referrals.ingress"]
        assert ingress and all(b["destination"].startswith(f"inbox.{country}-") for b in ingress)


def test_only_the_directory_authority_may_publish_directories_and_each_agency_reads_its_own_feed() -> None:
    gen = _generator()
    for path in [gen.SHARED, *sorted(COUNTRIES.glob("*.json"))]:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert {"name": "referrals.directory", "type": "fanout"}.items() <= next(
            e for e in doc["exchanges"] if e["name"] == "referrals.directory").items()
        for permission in doc["permissions"]:
            user = permission["user"]
            if user == gen.AUTHORITY_USER:
                assert (permission["configure"], permission["write"], permission["read"]) == (
                    "^$", "^referrals\\.directory$", "^$")
            else:
                assert "directory" not in permission["write"], f"{path.name}: {user} may publish directories"
        agencies = [p["user"] for p in doc["permissions"]
                    if p["user"] != gen.AUTHORITY_USER and not p["user"].startswith("from-")]
        feed = {b["destination"] for b in doc["bindings"] if b["source"] == "referrals.directory"}
        assert feed == {f"directory.{a}" for a in agencies}
        for permission in doc["permissions"]:
            if permission["user"] in agencies:
                assert permission["read"] == f"^(inbox|quarantine|directory)\\.{permission['user']}$"
