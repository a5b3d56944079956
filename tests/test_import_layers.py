"""Imports show the layers (issue 10): the pure consent rules load no store backend, and the
in-memory transport loads no AMQP client. Each check runs in a fresh interpreter, because
this test process has imported everything already."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testkit.gateway_pair import ROOT

CASES = [
    # (what is imported, modules that must stay unloaded)
    ("gateway.consent", ("gateway.store.sqlite", "gateway.store.postgres", "aiosqlite", "asyncpg")),
    ("gateway.store", ("gateway.store.sqlite", "gateway.store.postgres", "asyncpg")),
    ("gateway.transport.memory", ("aio_pika", "aiormq", "gateway.transport.amqp")),
    ("gateway.transport", ("aio_pika", "aiormq", "gateway.transport.amqp")),
]


def _loaded_after(module: str, watched: tuple[str, ...]) -> list[str]:
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(','.join(m for m in {watched!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize(("module", "watched"), CASES, ids=[c[0] for c in CASES])
def test_importing_a_layer_does_not_load_what_it_does_not_need(module: str, watched: tuple[str, ...]) -> None:
    assert _loaded_after(module, watched) == []


def test_the_lazy_names_still_resolve() -> None:
    """``from gateway.store import SQLiteStore`` and ``from gateway.transport import AmqpTransport``
    keep working: they load their backend on first use."""
    code = ("import sys; from gateway.store import SQLiteStore; from gateway.transport import AmqpTransport, "
            "delete_topology; assert 'gateway.store.sqlite' in sys.modules and 'aio_pika' in sys.modules; "
            "print(SQLiteStore.__name__, AmqpTransport.__name__, delete_topology.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["SQLiteStore", "AmqpTransport", "delete_topology"]
    with pytest.raises(AttributeError):
        import gateway.store as store

        getattr(store, "NoSuchStore")
