"""Generate the per-country broker definitions (two-broker / multi-country deployment).

    python3 deploy/rabbitmq/countries/generate.py   # rewrites {NE,NG,ML}.json and compose/{NE,NG}.json

Input: the agencies of ../definitions.json (the single shared-broker file); the country of
an agency is the part of its id before the first ``-``. Output: one definitions file per
country, for that country's own RabbitMQ (see ../README.md, "One broker per country"):

* the country's agencies: users, permissions, ``inbox.<ID>`` / ``quarantine.<ID>`` exactly
  as in the shared file;
* per partner country P: ``outbound.P`` (quorum) bound to exchange ``referrals`` with every
  agency id of P, and a dynamic shovel ``to-P`` that moves it, ack-mode ``on-confirm``, to
  exchange ``referrals.ingress`` on P's broker (the routing key is kept);
* ``referrals.ingress``: where partner shovels deliver. Only the country's own inboxes are
  bound to it, so a partner cannot route through us to a third country. Unroutable
  messages go to its alternate exchange ``referrals.unroutable`` → queue ``unroutable``
  instead of being dropped (shovels cannot publish ``mandatory``);
* per partner P a user ``from-P`` for P's shovel, allowed to write ``referrals.ingress`` only;
* the directory feed: fanout exchange ``referrals.directory``, one ``directory.<ID>`` queue per
  local agency bound to it, and the authority's user (``DIRECTORY-AUTHORITY``), allowed to
  write that exchange only. The authority publishes to every country's broker.

``compose/<C>.json`` are the same for the countries whose broker deploy/compose.yaml runs
(``COMPOSE_COUNTRIES``) with only those countries as partners: the shovels' ``dest-uri`` is
the partner's broker service (plain AMQP), and no shovel, queue or user names a country
compose has no broker for. Stdlib only, deterministic output. Passwords are the placeholder ``change-me`` (same hash
as ../definitions.json); shovel URIs carry ``CHANGE-ME`` and example host names.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / "definitions.json"
VHOST = "referrals"

INBOX_ARGS = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": "referrals.dlx",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-delivery-limit": 20,
}
QUORUM = {"x-queue-type": "quorum"}
#: Countries with a broker service (``rabbitmq-<c>``) in deploy/compose.yaml; the compose
#: variant links only these (tests/test_deploy_definitions.py checks it against the file).
COMPOSE_COUNTRIES = ("NE", "NG")
#: The directory authority's broker user: it may only publish to ``referrals.directory``
#: (docs/keys.md "Distribution"); it exists on every country's broker.
AUTHORITY_USER = "DIRECTORY-AUTHORITY"


def broker_uris(country: str, user: str, compose: bool = False) -> list[str]:
    """Example URIs of country's three-node cluster (the shovel picks one, retries others);
    for deploy/compose.yaml the single plain-AMQP broker service of that country."""
    if compose:
        return [f"amqp://{user}:change-me@rabbitmq-{country.lower()}:5672/{VHOST}"]
    host = country.lower()
    tls = ("cacertfile=/etc/rabbitmq/tls/partners-ca.pem&certfile=/etc/rabbitmq/tls/shovel.pem"
           "&keyfile=/etc/rabbitmq/tls/shovel.key&verify=verify_peer")
    return [f"amqps://{user}:CHANGE-ME@rabbit{n}.{host}.referrals.example:5671/{VHOST}?{tls}"
            f"&server_name_indication=rabbit{n}.{host}.referrals.example" for n in (1, 2, 3)]


def shovel(country: str, partner: str, compose: bool = False) -> dict:
    return {
        "src-protocol": "amqp091",
        "src-uri": f"amqp:///{VHOST}",  # direct connection to this broker's vhost
        "src-queue": f"outbound.{partner}",
        "src-prefetch-count": 100,
        "src-delete-after": "never",
        "dest-protocol": "amqp091",
        "dest-uri": broker_uris(partner, f"from-{country}", compose),
        "dest-exchange": "referrals.ingress",  # no dest-exchange-key: the routing key is kept
        "dest-add-forward-headers": False,
        "ack-mode": "on-confirm",
        "reconnect-delay": 5,
    }


def agencies_by_country(shared: dict) -> dict[str, list[str]]:
    """Agency ids of the shared file by country (the part of the id before the first ``-``)."""
    by_country: dict[str, list[str]] = defaultdict(list)
    for user in shared["users"]:
        if user["name"] != AUTHORITY_USER:
            by_country[user["name"].split("-", 1)[0]].append(user["name"])
    return dict(by_country)


def country_definitions(country: str, by_country: dict[str, list[str]], shared: dict, compose: bool = False) -> dict:
    if compose:
        # Only partners compose runs a broker for: a shovel to anything else would retry forever.
        by_country = {c: a for c, a in by_country.items() if c in COMPOSE_COUNTRIES}
    local = by_country[country]
    partners = sorted(c for c in by_country if c != country)
    hash_of = {u["name"]: u for u in shared["users"]}
    placeholder = next(iter(hash_of.values()))["password_hash"]
    users, permissions, topic_permissions = [], [], []
    for agency in local:
        users.append(hash_of[agency])
        permissions.append(next(p for p in shared["permissions"] if p["user"] == agency))
        topic_permissions.append(next(p for p in shared["topic_permissions"] if p["user"] == agency))
    users.append(hash_of[AUTHORITY_USER])
    permissions.append(next(p for p in shared["permissions"] if p["user"] == AUTHORITY_USER))
    for partner in partners:
        users.append({"name": f"from-{partner}", "password_hash": placeholder,
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}})
        permissions.append({"user": f"from-{partner}", "vhost": VHOST, "configure": "^$",
                            "write": "^referrals\\.ingress$", "read": "^$"})

    def queue(name: str, args: dict) -> dict:
        return {"name": name, "vhost": VHOST, "durable": True, "auto_delete": False, "arguments": dict(args)}

    def exchange(name: str, kind: str, args: dict | None = None) -> dict:
        return {"name": name, "vhost": VHOST, "type": kind, "durable": True, "auto_delete": False,
                "internal": False, "arguments": args or {}}

    def binding(source: str, destination: str, key: str) -> dict:
        return {"source": source, "vhost": VHOST, "destination": destination, "destination_type": "queue",
                "routing_key": key, "arguments": {}}

    queues, bindings = [], []
    for agency in local:
        queues += [queue(f"inbox.{agency}", INBOX_ARGS), queue(f"quarantine.{agency}", QUORUM)]
        queues.append(queue(f"directory.{agency}", QUORUM))
        bindings += [binding("referrals", f"inbox.{agency}", agency),
                     binding("referrals.ingress", f"inbox.{agency}", agency),
                     binding("referrals.dlx", f"quarantine.{agency}", agency),
                     binding("referrals.directory", f"directory.{agency}", "")]
    for partner in partners:
        queues.append(queue(f"outbound.{partner}", QUORUM))
        bindings += [binding("referrals", f"outbound.{partner}", agency) for agency in by_country[partner]]
    queues.append(queue("unroutable", QUORUM))
    bindings.append(binding("referrals.unroutable", "unroutable", ""))
    return {
        "rabbit_version": shared["rabbit_version"],
        "rabbitmq_version": shared["rabbitmq_version"],
        "users": users,
        "vhosts": [{"name": VHOST}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": [{"vhost": VHOST, "component": "shovel", "name": f"to-{partner}",
                        "value": shovel(country, partner, compose)} for partner in partners],
        "global_parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": [
            exchange("referrals", "topic"),
            exchange("referrals.dlx", "topic"),
            exchange("referrals.ingress", "topic", {"alternate-exchange": "referrals.unroutable"}),
            exchange("referrals.unroutable", "fanout"),
            exchange("referrals.directory", "fanout"),
        ],
        "bindings": bindings,
    }


def main() -> None:
    shared = json.loads(SHARED.read_text(encoding="utf-8"))
    by_country = agencies_by_country(shared)
    (HERE / "compose").mkdir(exist_ok=True)
    outputs = [(HERE / f"{country}.json", country, False) for country in sorted(by_country)]
    outputs += [(HERE / "compose" / f"{country}.json", country, True) for country in COMPOSE_COUNTRIES]
    for out, country, compose in outputs:
        text = json.dumps(country_definitions(country, by_country, shared, compose), indent=2) + "\n"
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out.relative_to(HERE.parent.parent.parent)}")
    for stale in sorted((HERE / "compose").glob("*.json")):
        if stale.stem not in COMPOSE_COUNTRIES:  # a country compose no longer runs a broker for
            stale.unlink()
            print(f"removed {stale.relative_to(HERE.parent.parent.parent)}")


if __name__ == "__main__":
    main()
