"""The gateway's own per-message attempt counter (gateway/transport/attempts.py)."""

from __future__ import annotations

import pytest

from gateway.transport.attempts import AttemptCounter, delivery_key


def test_counts_are_per_id_and_body() -> None:
    counter = AttemptCounter()
    assert counter.bump(delivery_key("m", b"a")) == 1
    assert counter.bump(delivery_key("m", b"a")) == 2
    assert counter.bump(delivery_key("m", b"b")) == 1  # same id, other content: counted apart
    assert counter.get(delivery_key("m", b"a")) == 2


def test_forget_delivery_drops_exactly_that_delivery() -> None:
    counter = AttemptCounter()
    counter.bump(delivery_key("m", b"a"))
    counter.bump(delivery_key("m", b"b"))
    counter.forget_delivery("m", b"a")
    assert (counter.get(delivery_key("m", b"a")), counter.get(delivery_key("m", b"b"))) == (0, 1)
    counter.forget_delivery("m", b"b")
    counter.forget_delivery("m", b"b")  # nothing counted: a no-op
    assert len(counter) == 0


def test_the_table_is_bounded_least_recently_bumped_first() -> None:
    counter = AttemptCounter(capacity=2)
    for key in ("a", "b", "a", "c"):
        counter.bump(key)
    assert (counter.get("a"), counter.get("b"), counter.get("c")) == (2, 0, 1)
    with pytest.raises(ValueError):
        AttemptCounter(capacity=0)
