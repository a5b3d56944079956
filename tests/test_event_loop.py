"""The event_loop setting: which loop `gateway serve` runs on (gateway/event_loop.py)."""

from __future__ import annotations

import sys

import pytest

from gateway import event_loop
from gateway.settings import SettingsError, with_overrides
from testkit.gateway_pair import NIGER, settings_for


async def _name() -> str:
    return event_loop.loop_name()


def test_each_choice_runs_on_the_loop_it_names() -> None:
    pytest.importorskip("uvloop")  # a dependency on Linux and macOS (pyproject.toml)
    assert event_loop.run(_name(), "asyncio") == "asyncio"
    assert event_loop.run(_name(), "uvloop") == "uvloop"
    assert event_loop.run(_name(), "auto") == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop.run(_name(), "auto") == "asyncio"
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        event_loop.run(_name(), "uvloop")


def test_an_unknown_loop_is_a_settings_error(tmp_path) -> None:
    settings = settings_for(NIGER, tmp_path, transport="memory")
    assert settings.event_loop == "auto"
    with pytest.raises(SettingsError, match="event_loop must be one of auto, uvloop, asyncio"):
        with_overrides(settings, event_loop="tokio")
