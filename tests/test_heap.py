"""The loop's heap is frozen for the collector while the loop runs, and handed back when it ends (tasks/heap.py)."""

from __future__ import annotations

import gc
import weakref

import pytest

from minyi.tasks.heap import freeze_heap, frozen_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_frozen_heap_keeps_objects_out_of_collections_and_hands_them_back() -> None:
    gc.collect()
    with frozen_heap():
        node = _Node()
        gone = weakref.ref(node)
        freeze_heap()  # as after a heavy import: the node, alive now, is frozen too
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None  # frozen: a full pass does not walk it
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None  # back with the collector: a backfill's many loops do not keep each day's cycles


def test_frozen_heap_is_handed_back_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a stage failed")
    assert gc.get_freeze_count() == 0
