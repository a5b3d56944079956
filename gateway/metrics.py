"""In-process counters rendered in the Prometheus text exposition format.

Label values are message types, agency ids and reason codes only: never personal data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable, Iterable

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Metrics:
    """A small registry of counters and callback gauges."""

    def __init__(self, prefix: str = "gateway") -> None:
        self.prefix = prefix
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._help: dict[str, str] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def describe(self, name: str, help_text: str) -> None:
        """Set the HELP text of a metric."""
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to a counter with these labels."""
        for value in labels.values():
            if not _LABEL_VALUE.fullmatch(value):
                raise ValueError(f"label value for {name} is not a code")
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter series (0 if never incremented)."""
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def gauge(self, name: str, read: Callable[[], float], help_text: str) -> None:
        """Register a gauge whose value is read at scrape time."""
        self._gauges[name] = read
        self._help[name] = help_text

    def render(self, extra: Iterable[tuple[str, float]] = ()) -> str:
        """Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        for name in sorted(self._counters):
            full = f"{self.prefix}_{name}"
            lines.append(f"# HELP {full} {self._help.get(name, name)}")
            lines.append(f"# TYPE {full} counter")
            for key, value in sorted(self._counters[name].items()):
                labels = ",".join(f'{k}="{v}"' for k, v in key)
                lines.append(f"{full}{{{labels}}} {value:g}" if labels else f"{full} {value:g}")
        for name, read in sorted(self._gauges.items()):
            full = f"{self.prefix}_{name}"
            lines += [f"# HELP {full} {self._help[name]}", f"# TYPE {full} gauge", f"{full} {read():g}"]
        for name, value in extra:
            full = f"{self.prefix}_{name}"
            lines += [f"# TYPE {full} gauge", f"{full} {value:g}"]
        return "\n".join(lines) + "\n"
