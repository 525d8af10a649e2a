"""The daily loop's process heap kept out of the cyclic garbage collector's full passes.

Why: the loop's process holds Prefect, Great Expectations, pandas and matplotlib: a
million and more long-lived objects (modules, classes, functions) that are never
garbage. The collector's full pass walks every one of them, and a million-record day
churns enough short-lived containers (the relay's rows and answers, GX's metrics) to
trigger one every few seconds: 9 full passes of ~330 ms each, 2.95 s with the GIL held
in a 1M loop (docs/performance.md, session 11). `gc.freeze()` moves what is alive now
into a generation the collector never walks; objects that are freed by reference
counting still are. `gc.unfreeze()` when the loop ends hands them back, so a process
that runs many loops (a backfill) does not keep one day's cyclic garbage for good.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_heap() -> None:
    """Keep every object alive now out of the collector's passes (after a heavy import, at a stage's start)."""
    gc.freeze()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap for a run's duration; what was frozen goes back to the collector when it ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
