"""testkit.lifeline: what a test run starts ends with it, even when the run is SIGKILLed.

Each test starts a stand-in for pytest (a Python process) that starts children the way
the helpers do, SIGKILLs that stand-in, and checks that the children are gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit import lifeline

ROOT = Path(__file__).resolve().parents[1]

#: Stand-in for a pytest run: starts a command under the watchdog (or a die_with_parent
#: child), reports pids on stdout, then sleeps until it is killed.
WATCHED_PARENT = """
import json, os, subprocess, sys, time
sys.path.insert(0, {root!r})
from testkit.lifeline import watched_popen
command = [sys.executable, "-c", {command!r}]
watchdog = watched_popen(command, stdout=subprocess.PIPE)
child = int(watchdog.stdout.readline())
print(json.dumps({{"watchdog": watchdog.pid, "child": child}}), flush=True)
time.sleep(600)
"""

DIE_WITH_PARENT_PARENT = """
import json, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", "import os, sys, time; sys.path.insert(0, {root!r});"
     "from testkit.lifeline import die_with_parent; die_with_parent();"
     "print(os.getpid(), flush=True); time.sleep(600)"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
print(json.dumps({{"child": int(child.stdout.readline())}}), flush=True)
time.sleep(600)
"""

SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
#: Ignores SIGTERM and starts a grandchild in the same process group: only SIGKILL of the
#: whole group ends both.
STUBBORN = ("import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']);"
            "open(os.environ['GRANDCHILD_FILE'], 'w').write(str(g.pid));"
            "print(os.getpid(), flush=True); time.sleep(600)")


def gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    return lifeline._start_time(pid) is None


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids of ``pids`` still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return []
        time.sleep(0.1)
    return [pid for pid in pids if not gone(pid)]


def start_parent(script: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env={**os.environ, **(env or {})}, start_new_session=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line, "the stand-in parent did not report its children"
    return parent, json.loads(line)


def kill_all(pids: list[int]) -> None:
    """Leave nothing behind if an assertion failed."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pids are checked in /proc")


def test_a_watched_command_ends_when_its_parent_is_sigkilled() -> None:
    parent, pids = start_parent(WATCHED_PARENT.format(root=str(ROOT), command=SLEEPER))
    try:
        assert not gone(pids["child"]) and not gone(pids["watchdog"])
        parent.kill()
        parent.wait()
        assert wait_gone([pids["child"], pids["watchdog"]], 15) == []
        assert not lifeline._record_path(pids["watchdog"]).exists()
    finally:
        kill_all([parent.pid, *pids.values()])


def test_the_watchdog_kills_the_whole_group_when_sigterm_is_ignored(tmp_path: Path) -> None:
    grandchild_file = tmp_path / "grandchild"
    parent, pids = start_parent(WATCHED_PARENT.format(root=str(ROOT), command=STUBBORN),
                                {"LIFELINE_GRACE_SECONDS": "1", "GRANDCHILD_FILE": str(grandchild_file)})
    grandchild = int(grandchild_file.read_text())
    try:
        parent.kill()
        parent.wait()
        assert wait_gone([pids["child"], grandchild, pids["watchdog"]], 15) == []
    finally:
        kill_all([parent.pid, grandchild, *pids.values()])


def test_a_watched_command_that_ends_by_itself_ends_its_watchdog_with_its_code() -> None:
    watchdog = lifeline.watched_popen([sys.executable, "-c", "import sys; sys.exit(7)"])
    assert watchdog.wait(30) == 7
    assert not lifeline._record_path(watchdog.pid).exists()
    killed = lifeline.watched_popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert killed.wait(30) == 128 + signal.SIGKILL


def test_sigterm_to_the_watchdog_reaches_the_command() -> None:
    watchdog = lifeline.watched_popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE)
    assert watchdog.stdout is not None
    child = int(watchdog.stdout.readline())
    watchdog.terminate()
    assert watchdog.wait(30) == 128 + signal.SIGTERM
    assert wait_gone([child], 10) == []


def test_a_die_with_parent_child_ends_when_its_parent_is_sigkilled() -> None:
    parent, pids = start_parent(DIE_WITH_PARENT_PARENT.format(root=str(ROOT)))
    try:
        assert not gone(pids["child"])
        parent.kill()
        parent.wait()
        assert wait_gone([pids["child"]], 10) == []
    finally:
        kill_all([parent.pid, *pids.values()])


def test_reap_orphans_ends_a_group_whose_watchdog_was_killed_too() -> None:
    parent, pids = start_parent(WATCHED_PARENT.format(root=str(ROOT), command=SLEEPER))
    try:
        record = lifeline._record_path(pids["watchdog"])
        assert json.loads(record.read_text())["child"] == pids["child"]
        # The watchdog dies first, so nothing is left to end the command when the parent dies.
        os.kill(pids["watchdog"], signal.SIGKILL)
        assert wait_gone([pids["watchdog"]], 10) == []
        assert lifeline.reap_orphans() == [] and not gone(pids["child"]), "the parent is alive: leave it"
        parent.kill()
        parent.wait()
        time.sleep(0.5)
        assert not gone(pids["child"]), "nothing ended it yet"
        assert pids["watchdog"] in lifeline.reap_orphans()
        assert wait_gone([pids["child"]], 10) == []
        assert not record.exists()
    finally:
        kill_all([parent.pid, *pids.values()])


def test_the_gateway_process_and_rabbit_node_helpers_use_a_lifeline() -> None:
    """The helpers that start long-lived processes go through testkit.lifeline (the real
    processes are checked in tests/faults/test_process_lifetime.py)."""
    harness = (ROOT / "testkit" / "harness.py").read_text()
    assert '"--die-with-parent"' in harness and "stdin=asyncio.subprocess.PIPE" in harness
    assert "watched_popen(" in (ROOT / "testkit" / "rabbit_nodes.py").read_text()
