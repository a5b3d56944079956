"""gateway/heap.py: the start-up heap is frozen out of later full collections."""

from __future__ import annotations

import gc

from gateway.heap import YOUNG_THRESHOLD, settle_heap


def test_settle_heap_freezes_what_exists_and_raises_the_young_threshold() -> None:
    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        built_at_start = [{"n": i} for i in range(1000)]  # stands for schemas, code lists, catalogues
        settle_heap()
        assert gc.get_freeze_count() >= len(built_at_start)
        collected = {id(o) for g in (0, 1, 2) for o in gc.get_objects(generation=g)}
        assert not any(id(x) in collected for x in built_at_start)  # no collection walks them now
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        # Objects made afterwards are collected as usual: garbage cycles still go.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
