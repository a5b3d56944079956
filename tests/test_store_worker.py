"""gateway/store/worker.py: the SQLite store's worker thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from gateway.store.worker import WorkerThread

ROOT = Path(__file__).resolve().parents[1]


async def test_jobs_run_in_order_on_one_thread_and_errors_reach_their_caller() -> None:
    worker = WorkerThread("test-worker")
    seen: list[tuple[int, str]] = []
    try:
        for n in range(50):
            worker.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
        assert await worker.call(lambda: 42) == 42  # runs after the 50 jobs before it
        assert [n for n, _ in seen] == list(range(50)) and {name for _, name in seen} == {"test-worker"}
        with pytest.raises(ZeroDivisionError):
            await worker.call(lambda: 1 / 0)
        assert await worker.call(lambda: "still running") == "still running"
    finally:
        worker.shutdown()


async def test_a_job_that_fails_without_reporting_does_not_stop_the_thread() -> None:
    worker = WorkerThread("test-worker")
    try:
        worker.submit(lambda: 1 / 0)  # a bug: the job does not settle anything itself
        assert await asyncio.wait_for(worker.call(lambda: "next"), 5) == "next"
    finally:
        worker.shutdown()


def test_jobs_handed_over_still_run_when_the_process_exits(tmp_path: Path) -> None:
    # A daemon thread, so an unclosed store cannot hang the exit; but a write already handed
    # over (its caller gone) is not dropped half-way.
    marker = tmp_path / "written"
    script = textwrap.dedent(f"""
        import time
        from gateway.store.worker import WorkerThread
        worker = WorkerThread("exiting")
        worker.submit(lambda: (time.sleep(0.5), open({str(marker)!r}, "w").write("done")))
        # the main thread ends here, without shutdown()
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=30)
    assert marker.read_text() == "done"
