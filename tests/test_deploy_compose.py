"""deploy/compose.yaml ships only shovels between broker services it defines.

PyYAML is not a dependency, so the few facts needed are read from the file's layout (two-space
indentation, as written): the names under ``services:`` and the definitions file each broker
service mounts. No Docker engine is needed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DEFINITIONS = DEPLOY / "rabbitmq" / "countries" / "compose"
MOUNT = re.compile(r"^\s+- \./(rabbitmq/countries/compose/[A-Z]{2}\.json):/etc/rabbitmq/definitions\.json:ro\s*$")


def compose_services(text: str) -> dict[str, list[str]]:
    """Service name → the lines of its block, from the top-level ``services:`` mapping."""
    services: dict[str, list[str]] = {}
    current: str | None = None
    inside = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):  # a top-level key
            inside = line.rstrip() == "services:"
            current = None
            continue
        if inside:
            match = re.fullmatch(r"  ([A-Za-z0-9_.-]+):\s*", line)
            if match:
                current = match.group(1)
                services[current] = []
            elif current is not None:
                services[current].append(line)
    return services


def test_the_layout_reader_finds_the_services() -> None:
    services = compose_services(COMPOSE.read_text(encoding="utf-8"))
    assert {"rabbitmq-ne", "rabbitmq-ng", "postgres-ne", "postgres-ng", "gateway-ne", "gateway-ng"} <= set(services)
    assert "x-rabbitmq" not in services and "rabbitmq-ne-data" not in services  # anchors and volumes are not services


def _mounted_definitions() -> dict[str, Path]:
    mounted = {}
    for name, lines in compose_services(COMPOSE.read_text(encoding="utf-8")).items():
        for line in lines:
            match = MOUNT.match(line)
            if match:
                mounted[name] = DEPLOY / match.group(1)
    return mounted


def test_each_broker_service_mounts_its_country_definitions_and_every_file_is_mounted() -> None:
    mounted = _mounted_definitions()
    assert mounted == {"rabbitmq-ne": DEFINITIONS / "NE.json", "rabbitmq-ng": DEFINITIONS / "NG.json"}
    assert all(path.is_file() for path in mounted.values())
    assert set(DEFINITIONS.glob("*.json")) == set(mounted.values()), "a compose definitions file no service loads"


def test_every_shovel_goes_to_a_broker_service_compose_defines_with_a_user_it_knows() -> None:
    services = compose_services(COMPOSE.read_text(encoding="utf-8"))
    mounted = _mounted_definitions()
    loaded_by = {path: service for service, path in mounted.items()}
    shovels = 0
    for path in sorted(DEFINITIONS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for parameter in doc["parameters"]:
            if parameter["component"] != "shovel":
                continue
            for uri in parameter["value"]["dest-uri"]:
                shovels += 1
                parts = urlsplit(uri)
                assert parts.hostname in services, f"{path.name} shovel {parameter['name']} goes to {parts.hostname}, " \
                                                   "which deploy/compose.yaml does not define"
                assert parts.hostname in mounted, f"{parts.hostname} is not a broker service"
                # The partner broker must know the shovel's user and let it write to the ingress only.
                partner = json.loads(mounted[parts.hostname].read_text(encoding="utf-8"))
                grants = [p for p in partner["permissions"] if p["user"] == parts.username]
                assert grants and grants[0]["write"] == "^referrals\\.ingress$", (path.name, parts.username)
                assert loaded_by.get(path) != parts.hostname, "a broker shovelling to itself"
    assert shovels == 2  # NE → NG and NG → NE


def test_gateway_services_find_their_directory_files_in_mounted_volumes() -> None:
    """The image holds no keys, so every path a gateway is told to read must be a mounted host file."""
    services = compose_services(COMPOSE.read_text(encoding="utf-8"))
    anchors = compose_anchor_lines(COMPOSE.read_text(encoding="utf-8"), "x-gateway")
    gateways = [name for name in services if name.startswith("gateway-")]
    assert gateways == ["gateway-ne", "gateway-ng"]
    for name in gateways:
        lines = services[name] + anchors
        mounts = {}
        for line in lines:
            match = re.match(r"^\s+- (\.{1,2}/[^:]+):(/[^:]+):ro\b", line)
            if match:
                mounts[match.group(2)] = (DEPLOY / match.group(1)).resolve()
        for variable in ("GATEWAY_DIRECTORY_PATH", "GATEWAY_AUTHORITY_KEY_PATH"):
            (value,) = [line.split(":", 1)[1].strip() for line in lines if line.strip().startswith(variable + ":")]
            host = next((src / Path(value).relative_to(dst) for dst, src in mounts.items()
                         if Path(value).is_relative_to(dst)), None)
            assert host is not None and host.is_file(), f"{name}: {variable}={value} is not in a mounted volume"


def compose_anchor_lines(text: str, key: str) -> list[str]:
    """The lines of a top-level block such as ``x-gateway: &gateway``."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line.startswith(" ") and not line.startswith("#"):
            inside = line.startswith(f"{key}:")
        elif inside:
            lines.append(line)
    return lines
