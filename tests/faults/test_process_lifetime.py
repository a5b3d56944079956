"""Nothing a fault test starts outlives the run that started it, even a SIGKILLed one.

A stand-in for a pytest run (a Python process) starts a second RabbitMQ node
(``testkit.rabbit_nodes.start_node``) and a gateway in its own process
(``testkit.harness.GatewayProcess``), exactly as the fault tests do; the test SIGKILLs the
stand-in and checks that the node's Erlang VM, its watchdog and the gateway process end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from testkit.lifeline import GRACE_SECONDS, _start_time
from testkit.rabbit_nodes import rabbit_available
from tests.support.two_brokers import require

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from testkit.harness import GatewayProcess
from testkit.rabbit_nodes import start_node

async def main():
    tmp = Path({tmp!r})
    node = await start_node(tmp / "node", name="lifetime")
    gateway = GatewayProcess(tmp, {run_id!r}, {amqp_url!r})
    await gateway.start()
    print(json.dumps({{"beam": node.pid, "watchdog": node._process.pid, "gateway": gateway.pid}}), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    return _start_time(pid) is not None


async def test_a_sigkilled_run_leaves_no_rabbit_node_and_no_gateway_process(
        tmp_path: Path, run_id: str, amqp_url: str) -> None:
    require(rabbit_available())
    stand_in = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STAND_IN.format(root=str(ROOT), tmp=str(tmp_path), run_id=run_id, amqp_url=amqp_url),
        stdout=asyncio.subprocess.PIPE, start_new_session=True)
    pids: dict[str, int] = {}
    try:
        assert stand_in.stdout is not None
        line = await asyncio.wait_for(stand_in.stdout.readline(), 180)
        assert line, f"the stand-in failed; see {tmp_path}"
        pids = json.loads(line)
        assert all(_running(pid) for pid in pids.values())
        stand_in.kill()
        await stand_in.wait()
        deadline = time.monotonic() + GRACE_SECONDS + 30
        while any(_running(pid) for pid in pids.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert {name: pid for name, pid in pids.items() if _running(pid)} == {}
    finally:
        if stand_in.returncode is None:
            stand_in.kill()
            await stand_in.wait()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
