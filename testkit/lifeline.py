"""Processes that cannot outlive the run that started them, even when that run is SIGKILLed.

The mechanism is a pipe: the parent keeps the write end of the child's stdin and never
writes to it. The kernel closes that end when the parent ends, however it ends (``kill -9``
included), and the child then reads EOF. This needs no polling and, unlike
``PR_SET_PDEATHSIG``, is not tied to the parent thread that forked.

Three parts:

* :func:`die_with_parent` -- called early in a Python child (``testkit.ng_process
  --die-with-parent``): a daemon thread reads stdin; on EOF the process SIGKILLs itself.
* :func:`watched_popen` -- ``subprocess.Popen`` of a command under a watchdog (this file,
  run as a script). The watchdog leads a new process group, runs the command in it, exits
  with the command's exit code, forwards SIGTERM to it, and on EOF on its stdin ends the
  whole group: SIGTERM, then SIGKILL after :data:`GRACE_SECONDS`. For programs we do not
  control (a RabbitMQ node is a shell script, an Erlang VM and its port programs).
* :func:`reap_orphans` -- each watchdog records its group in :data:`REGISTRY` and removes
  the record when it ends. A watchdog that was itself SIGKILLed cannot clean up, so this
  kills the groups of records whose parent is gone and whose command still runs (Linux:
  pids are matched with their start time from /proc, so a reused pid is never signalled).
  ``testkit.rabbit_nodes.start_node`` and the test session start call it.

This file must stay runnable as a plain script with only the standard library: the
watchdog is started with the caller's working directory and environment, which need not
be the repository's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Where the watchdogs record their process groups (shared by every run on this machine).
REGISTRY = Path(tempfile.gettempdir()) / "testkit-lifelines"
#: How long a command gets to stop after SIGTERM once its parent is gone (the environment
#: variable LIFELINE_GRACE_SECONDS, read by the watchdog, overrides it; tests shorten it).
GRACE_SECONDS = float(os.environ.get("LIFELINE_GRACE_SECONDS", "10"))


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot; Linux /proc), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if sys.platform.startswith("linux"):
            return None
        try:  # elsewhere: only "does the pid exist"
            os.kill(pid, 0)
            return "?"
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended


def _alive(pid: int, started: str | None) -> bool:
    """True if ``pid`` is the same running process as when ``started`` was read."""
    return started is not None and _start_time(pid) == started


def die_with_parent(fd: int = 0) -> None:
    """SIGKILL this process as soon as ``fd`` (a pipe from the parent) reaches EOF."""
    def watch() -> None:
        while True:
            try:
                if not os.read(fd, 4096):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def watched_popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **kwargs)`` under a watchdog that ends the command's whole
    process group when this process ends. The returned Popen is the watchdog's: its pid
    leads the group (``os.killpg(p.pid, ...)`` reaches the command), and it exits with the
    command's code. ``stdin`` and ``start_new_session`` are the watchdog's own."""
    for own in ("stdin", "start_new_session", "process_group", "preexec_fn"):
        if own in kwargs:
            raise TypeError(f"watched_popen sets {own} itself")
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--", *args],
                            stdin=subprocess.PIPE, start_new_session=True, **kwargs)


def _record_path(pgid: int) -> Path:
    return REGISTRY / f"{pgid}.json"


def reap_orphans() -> list[int]:
    """Kill the process groups left by watchdogs whose parent is gone; the groups killed."""
    killed: list[int] = []
    try:
        records = list(REGISTRY.glob("*.json"))
    except OSError:
        return killed
    for path in records:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours
        if _alive(record["parent"], record["parent_started"]):
            continue
        if _alive(record["watchdog"], record["watchdog_started"]):
            continue  # its watchdog is alive and will end the group itself
        if _alive(record["child"], record["child_started"]):
            try:
                os.killpg(record["pgid"], signal.SIGKILL)
                killed.append(record["pgid"])
            except (ProcessLookupError, PermissionError):
                pass
        path.unlink(missing_ok=True)
    return killed


def _watchdog(args: list[str]) -> int:
    """Run ``args`` in this process's group until it ends or the parent's pipe closes."""
    parent = os.getppid()
    pgid = os.getpgid(0)
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    record = _record_path(pgid)
    try:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / f".{pgid}.tmp").write_text(json.dumps({
            "pgid": pgid, "parent": parent, "parent_started": _start_time(parent),
            "watchdog": os.getpid(), "watchdog_started": _start_time(os.getpid()),
            "child": child.pid, "child_started": _start_time(child.pid), "command": args[0],
        }))
        (REGISTRY / f".{pgid}.tmp").replace(record)
    except OSError:
        pass  # without a record only reap_orphans loses sight of this group
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    orphaned = threading.Event()

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        orphaned.set()

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    while child.poll() is None and not orphaned.wait(0.2):
        pass
    if child.poll() is None:
        # The parent is gone: stop the command and everything it started in this group.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        record.unlink(missing_ok=True)
        os.killpg(pgid, signal.SIGKILL)  # the rest of the group, this watchdog included
    record.unlink(missing_ok=True)
    code = child.returncode
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: lifeline.py -- COMMAND [ARG...]")
    sys.exit(_watchdog(argv))
