"""The SQLite store's one worker thread: jobs run in the order they were handed over.

A ``ThreadPoolExecutor`` with one worker does the same job, but each ``submit`` also
builds a future and takes a pure-Python semaphore and condition to decide whether to start
a thread; at one store trip per step of a message that overhead was the largest single
item of a gateway's CPU at low load. This hands jobs over through a ``SimpleQueue``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

T = TypeVar("T")

log = structlog.get_logger("gateway.store")

_Job = tuple[Callable[..., Any], tuple[Any, ...]]

#: At interpreter exit, how long the jobs handed over may still take.
_DRAIN_SECONDS = 30.0


def settle_all(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Event loop: hand each job's outcome (ok, result or exception) to its caller's future."""
    for future, ok, value in outcomes:
        if future.done():  # the caller was cancelled; the job itself still ran (a write still committed)
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _drain(jobs: queue.SimpleQueue[_Job | None], thread: threading.Thread) -> None:
    jobs.put(None)
    thread.join(_DRAIN_SECONDS)


class WorkerThread:
    """One daemon thread that runs submitted jobs one at a time, first in first out."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        # A daemon thread, so a store nobody closed cannot keep the process alive; but at
        # exit the jobs already handed over (a write whose caller gave up) still run.
        self._at_exit = weakref.finalize(self, _drain, self._jobs, self._thread)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; it must report its own outcome (it settles futures itself)."""
        self._jobs.put((fn, args))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread (after the jobs queued before it) and return its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                loop.call_soon_threadsafe(settle_all, [(future, False, exc)])
            else:
                loop.call_soon_threadsafe(settle_all, [(future, True, result)])

        self.submit(job)
        return await future

    def shutdown(self) -> None:
        """Let the thread end once the jobs queued so far have run."""
        self._at_exit.detach()
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive a bad job
                # Jobs settle their own futures; reaching here is a bug. The kind only: texts could quote data.
                log.error("store.worker_job_failed", error=type(exc).__name__)
