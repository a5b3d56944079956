"""Extra RabbitMQ nodes on this machine, and shovel links between brokers (two-broker tests, bench).

API (everything a caller needs; the rest is private)::

    node = await start_node(tmp_path / "ng", name="ng")   # a new node: own data, ports, cookie
    node.amqp_url                     # amqp://guest:guest@127.0.0.1:<port>/
    node.pid                          # OS pid of its beam.smp (from its pid file)
    await node.kill()                 # SIGKILL by that pid: no shutdown of any kind
    await node.start()                # again, on the same data dir and ports
    await node.stop()                 # graceful (SIGTERM), waits for the process to end
    await node.ctl("list_queues")     # rabbitmqctl against this node (off the event loop)

    system = system_node(amqp_url)    # the machine's own broker (rabbit@localhost): never stopped
    await system.ensure_plugin("rabbitmq_shovel")   # idempotent

    # The shipped per-country topology (deploy/rabbitmq/countries/<C>.json) under test names
    # (those of testkit.gateway_pair.settings_for(run_id=...)): exchanges, queues, bindings.
    ne = await provision_country(system, "NE", run_id)
    ng = await provision_country(node, "NG", run_id)
    link = await ShovelLink.open(system, node, a_to_b=ne.shovels("NG"), b_to_a=ng.shovels("NE"))
    await link.cut(); await link.restore()   # both directions, through two TcpProxy
    await link.close(); await ne.remove(); await ng.remove()

``start_node`` never touches the system broker's files: the node gets its own
RABBITMQ_MNESIA_BASE / LOG_BASE / PID_FILE / config / enabled-plugins file / Erlang cookie
(HOME) under the given directory, free AMQP and distribution ports, and a unique node
name. The process runs under a watchdog (``testkit.lifeline.watched_popen``) that ends the
node's whole process group when the process that started it ends, even by SIGKILL;
``stop``/``kill`` signal only the node's own pid.

Shovel parameters are plain dicts as in ``deploy/rabbitmq/countries/*.json`` (the
``value`` of a ``component: shovel`` parameter); ``ShovelLink`` replaces each ``dest-uri``
with the URL of the proxy in front of the other node, so that a test can cut the link.

The proxies run on the event loop of the caller: keep that loop running (``await``)
while shovels move messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, urlparse

from testkit.lifeline import reap_orphans, watched_popen
from testkit.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent
COUNTRIES_DIR = ROOT / "deploy" / "rabbitmq" / "countries"
RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN_DIR", "/usr/lib/rabbitmq/bin"))
#: How long a node may take to accept AMQP connections (measured here: 4.6-5.4 s idle,
#: 7.5-10.3 s while two gateways and another node load the 2 cores).
START_TIMEOUT = 90.0


class RabbitNodeError(RuntimeError):
    """A node could not be started, stopped or configured."""


def rabbit_available() -> str | None:
    """None if this machine can start RabbitMQ nodes, else why not (for skip/fail messages)."""
    for tool in ("rabbitmq-server", "rabbitmqctl"):
        if not (RABBIT_BIN / tool).exists() and shutil.which(tool) is None:
            return f"{tool} not found (RABBITMQ_BIN_DIR={RABBIT_BIN})"
    return None


def _tool(name: str) -> str:
    path = RABBIT_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _amqp_open(port: int) -> bool:
    """True once the node completes an AMQP protocol header exchange (the listener is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            s.settimeout(2)
            return s.recv(8)[:1] == b"\x01"  # a Connection.Start method frame
    except OSError:
        return False


async def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> str:
    """Run a CLI command in a thread (the event loop keeps serving proxies); its stdout."""
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd="/")
    done = await asyncio.to_thread(call)
    if done.returncode != 0:
        raise RabbitNodeError(f"{' '.join(args[:4])} ... failed ({done.returncode}): {done.stderr[-800:] or done.stdout[-800:]}")
    return done.stdout


@dataclass
class RabbitNode:
    """A RabbitMQ node started by this process (see the module docstring)."""

    base: Path
    name: str
    plugins: tuple[str, ...] = ("rabbitmq_shovel",)
    amqp_port: int = 0
    dist_port: int = 0
    node: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    start_seconds: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.amqp_port = self.amqp_port or free_port()
        self.dist_port = self.dist_port or free_port()
        self.node = self.node or f"{self.name}-{secrets.token_hex(3)}@localhost"
        home = self.base / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.base / "rabbitmq.conf").write_text(
            # Only what differs from the defaults; listener and ports come from the env.
            "loopback_users.guest = true\nlog.file.level = info\nlog.console = false\n"
        )
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # do NOT read /etc/rabbitmq/rabbitmq-env.conf

    # -- addresses -----------------------------------------------------------------

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "node.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / f"{self.node}.log"

    @property
    def pid(self) -> int:
        """OS pid of the node's Erlang VM (beam.smp), as written by the node itself."""
        text = self.pid_file.read_text().strip() if self.pid_file.exists() else ""
        if not text:
            raise RabbitNodeError(f"{self.node} has not written {self.pid_file}")
        return int(text)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """Environment for the server and for CLI tools aimed at this node."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.base / "home"),  # the Erlang cookie lives here
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start the node (again, on the same data dir and ports); seconds until AMQP is up."""
        if self.running:
            raise RabbitNodeError(f"{self.node} is already running")
        self.pid_file.unlink(missing_ok=True)
        began = time.monotonic()
        with open(self.base / "server.out", "ab") as out:
            # Under a watchdog: the node ends when this process does, even by SIGKILL.
            self._process = watched_popen(
                [_tool("rabbitmq-server")], env=self.env(), cwd=self.base, stdout=out, stderr=subprocess.STDOUT,
            )
        while not _amqp_open(self.amqp_port):
            if self._process.poll() is not None:
                raise RabbitNodeError(f"{self.node} exited with {self._process.returncode} while starting; "
                                      f"see {self.base / 'server.out'} and {self.log_file}")
            if time.monotonic() - began > timeout:
                await self.kill()
                raise RabbitNodeError(f"{self.node} not up within {timeout}s; see {self.log_file}")
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - began
        self.start_seconds.append(round(elapsed, 2))
        return elapsed

    async def stop(self, timeout: float = 60.0) -> None:
        """Graceful shutdown (SIGTERM to the VM, as ``rabbitmqctl stop`` would), then wait."""
        if not self.running:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except (RabbitNodeError, ProcessLookupError):
            self._process.terminate()  # type: ignore[union-attr]
        await self._wait(timeout)

    async def kill(self) -> None:
        """SIGKILL the node's VM by its own pid: no flush, no connection close."""
        if not self.running:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (RabbitNodeError, ProcessLookupError):
            pass
        # The wrapper script (our child) ends when the VM does; kill its group if it lingers.
        try:
            await self._wait(10)
        except RabbitNodeError:
            os.killpg(self._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
            await self._wait(10)

    async def _wait(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            if time.monotonic() > deadline:
                raise RabbitNodeError(f"{self.node} did not exit within {timeout}s")
            await asyncio.sleep(0.1)
        # The listener port must be free before a restart can bind it again.
        while _port_busy(self.amqp_port) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    # -- administration --------------------------------------------------------------

    async def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <node> ARGS`` (stdout)."""
        return await _run([_tool("rabbitmqctl"), "-q", "-n", self.node, *args], env=self.env(), timeout=timeout)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


async def start_node(base: Path, *, name: str = "ng", plugins: Iterable[str] = ("rabbitmq_shovel",),
                     timeout: float = START_TIMEOUT) -> RabbitNode:
    """Create and start a node under ``base`` (see the module docstring)."""
    why = rabbit_available()
    if why:
        raise RabbitNodeError(why)
    reap_orphans()  # nodes of earlier runs whose watchdog was killed too
    node = RabbitNode(Path(base), name, tuple(plugins))
    await node.start(timeout)
    return node


@dataclass
class SystemNode:
    """The machine's broker (started by the OS as user ``rabbitmq``): administered, never stopped."""

    amqp_url: str
    node: str = "rabbit@localhost"

    async def ctl(self, *args: str, timeout: float = 60.0) -> str:
        # /usr/sbin/rabbitmqctl switches to the rabbitmq user (its cookie) when run as root.
        cli = "/usr/sbin/rabbitmqctl" if Path("/usr/sbin/rabbitmqctl").exists() else _tool("rabbitmqctl")
        return await _run([cli, "-q", "-n", self.node, *args], timeout=timeout)

    async def ensure_plugin(self, plugin: str) -> None:
        """Enable ``plugin`` if it is not yet (idempotent, online; same as .ci/run does)."""
        enabled = await self.ctl("eval", f"lists:keymember({plugin}, 1, application:which_applications()).")
        if enabled.strip() != "true":
            cli = "/usr/sbin/rabbitmq-plugins" if Path("/usr/sbin/rabbitmq-plugins").exists() else _tool("rabbitmq-plugins")
            await _run([cli, "-q", "-n", self.node, "enable", plugin], timeout=120)


def system_node(amqp_url: str) -> SystemNode:
    """The machine's broker at ``amqp_url`` (node name from RABBITMQ_SYSTEM_NODE, default rabbit@localhost)."""
    return SystemNode(amqp_url, os.environ.get("RABBITMQ_SYSTEM_NODE", "rabbit@localhost"))


Node = RabbitNode | SystemNode


# -- shovels --------------------------------------------------------------------------------


async def set_shovel(node: Node, name: str, value: dict[str, Any], *, vhost: str = "/") -> None:
    """Create or replace the dynamic shovel ``name`` on ``node`` (runtime parameter)."""
    await node.ctl("set_parameter", "-p", vhost, "shovel", name, json.dumps(value))


async def delete_shovel(node: Node, name: str, *, vhost: str = "/") -> None:
    """Remove the dynamic shovel ``name`` (no error if it does not exist)."""
    try:
        await node.ctl("clear_parameter", "-p", vhost, "shovel", name)
    except RabbitNodeError as exc:
        if "not_found" not in str(exc) and "Parameter does not exist" not in str(exc):
            raise


async def shovel_states(node: Node) -> dict[str, str]:
    """``{shovel name: state}`` (running, starting, terminated ...) on ``node``."""
    out = await node.ctl("eval", "[{N, S} || {{_, N}, dynamic, {S, _}, _} <- rabbit_shovel_status:status()] "
                                 "++ [{N, S} || {{_, N}, dynamic, S, _} <- rabbit_shovel_status:status(), is_atom(S)].")
    # rabbitmqctl prints [{<<"to-NG">>,running},{...}] or with ", " between tuples, and may wrap lines.
    pairs = re.findall(r'\{\s*<<"([^"]*)">>\s*,\s*([a-z_]+)\s*\}', out)
    return dict(pairs)


def amqp_url_via(proxy: TcpProxy, user: str = "guest", password: str = "guest", vhost: str = "/") -> str:
    """An AMQP URI (shovel ``dest-uri``) that reaches a broker through ``proxy``."""
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{proxy.port}/{quote(vhost, safe='')}"


@dataclass
class ShovelLink:
    """Shovels in both directions between two brokers, each through its own ``TcpProxy``.

    ``a_to_b`` run on node ``a`` and publish to ``b`` through ``proxy_to_b`` (and the other
    way round). Each entry is ``(name, value)``; ``value["dest-uri"]`` is replaced."""

    a: Node
    b: Node
    proxy_to_a: TcpProxy
    proxy_to_b: TcpProxy
    names_a: list[str]
    names_b: list[str]

    @classmethod
    async def open(cls, a: Node, b: Node, *, a_to_b: list[tuple[str, dict[str, Any]]],
                   b_to_a: list[tuple[str, dict[str, Any]]]) -> "ShovelLink":
        pa, pb = urlparse(a.amqp_url), urlparse(b.amqp_url)
        proxy_to_a, proxy_to_b = TcpProxy("127.0.0.1", pa.port or 5672), TcpProxy("127.0.0.1", pb.port or 5672)
        await proxy_to_a.start()
        await proxy_to_b.start()
        link = cls(a, b, proxy_to_a, proxy_to_b, [], [])
        try:
            for name, value in a_to_b:
                await set_shovel(a, name, {**value, "dest-uri": amqp_url_via(proxy_to_b, pb.username or "guest",
                                                                              pb.password or "guest")})
                link.names_a.append(name)
            for name, value in b_to_a:
                await set_shovel(b, name, {**value, "dest-uri": amqp_url_via(proxy_to_a, pa.username or "guest",
                                                                              pa.password or "guest")})
                link.names_b.append(name)
        except BaseException:
            await link.close()
            raise
        return link

    async def cut(self) -> None:
        """Cut both directions (open connections are dropped; reconnects are refused)."""
        await self.proxy_to_a.stop()
        await self.proxy_to_b.stop()

    async def restore(self) -> None:
        """Reopen both directions on the same ports; the shovels reconnect by themselves."""
        await self.proxy_to_a.start()
        await self.proxy_to_b.start()

    async def close(self) -> None:
        """Delete the shovels this link created, then stop the proxies. Shovels on a node
        that is not running are left with it (its data dir goes with the test)."""
        for node, names in ((self.a, self.names_a), (self.b, self.names_b)):
            if isinstance(node, RabbitNode) and not node.running:
                continue
            for name in names:
                await delete_shovel(node, name)
        await self.cut()


# -- per-country topology under test names ------------------------------------------------


def run_name(name: str, run_id: str) -> str:
    """A name of the shipped definitions under a test run's prefix, the way
    ``testkit.gateway_pair.settings_for(run_id=...)`` names things: ``referrals`` ->
    ``test-<id>``, ``referrals.dlx`` -> ``test-<id>.dlx``, ``inbox.X`` -> ``test-<id>.inbox.X``."""
    if name == "referrals":
        return f"test-{run_id}"
    if name.startswith("referrals."):
        return f"test-{run_id}.{name.removeprefix('referrals.')}"
    return f"test-{run_id}.{name}"


def country_definitions(country: str) -> dict[str, Any]:
    """The shipped definitions of ``country``'s broker (deploy/rabbitmq/countries/<C>.json)."""
    return json.loads((COUNTRIES_DIR / f"{country}.json").read_text(encoding="utf-8"))


@dataclass
class CountryTopology:
    """One country's exchanges, queues and bindings, declared on a node under test names."""

    node: Node
    country: str
    run_id: str
    definitions: dict[str, Any]

    def name(self, shipped: str) -> str:
        return run_name(shipped, self.run_id)

    def shovels(self, partner: str | None = None, *, reconnect_delay: int = 1) -> list[tuple[str, dict[str, Any]]]:
        """The shipped shovel parameters (``to-<P>``), renamed for this run, ``dest-uri``
        left for ``ShovelLink`` to fill in; only the one to ``partner`` if given."""
        found = []
        for param in self.definitions["parameters"]:
            if param["component"] != "shovel" or (partner and param["name"] != f"to-{partner}"):
                continue
            value = dict(param["value"])
            value.update({"src-uri": "amqp://", "src-queue": self.name(value["src-queue"]),
                          "dest-exchange": self.name(value["dest-exchange"]), "reconnect-delay": reconnect_delay})
            value.pop("dest-uri", None)
            found.append((f"test-{self.run_id}-{self.country}-{param['name']}", value))
        return found

    def _args(self, arguments: dict[str, Any]) -> dict[str, Any]:
        renamed = {"x-dead-letter-exchange", "alternate-exchange"}
        return {k: (self.name(v) if k in renamed else v) for k, v in arguments.items()}

    async def provision(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.node.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for ex in self.definitions["exchanges"]:
                await channel.declare_exchange(self.name(ex["name"]), ex["type"], durable=True,
                                               arguments=self._args(ex["arguments"]))
            for q in self.definitions["queues"]:
                await channel.declare_queue(self.name(q["name"]), durable=True, arguments=self._args(q["arguments"]))
            for b in self.definitions["bindings"]:
                queue = await channel.get_queue(self.name(b["destination"]), ensure=False)
                await queue.bind(self.name(b["source"]), routing_key=b["routing_key"])

    async def remove(self) -> None:
        """Delete everything ``provision`` declared (messages included)."""
        import aio_pika

        connection = await aio_pika.connect(self.node.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for q in self.definitions["queues"]:
                await channel.queue_delete(self.name(q["name"]))
            for ex in self.definitions["exchanges"]:
                await channel.exchange_delete(self.name(ex["name"]))

    async def queue_length(self, shipped_name: str) -> int:
        """Ready messages in a queue (e.g. ``outbound.NG``), by passive declare."""
        import aio_pika

        connection = await aio_pika.connect(self.node.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(self.name(shipped_name), passive=True)
            return declared.declaration_result.message_count or 0


async def provision_country(node: Node, country: str, run_id: str) -> CountryTopology:
    """Declare ``country``'s shipped topology on ``node`` under ``run_id``'s test names."""
    topology = CountryTopology(node, country, run_id, country_definitions(country))
    await topology.provision()
    return topology


__all__ = [
    "CountryTopology", "country_definitions", "provision_country", "run_name",
    "RabbitNode", "RabbitNodeError", "ShovelLink", "SystemNode", "amqp_url_via", "delete_shovel", "free_port",
    "rabbit_available", "set_shovel", "shovel_states", "start_node", "system_node",
]
