"""A tuned collector still reclaims cyclic garbage: a long-running server must not leak it."""
from __future__ import annotations

import gc
import weakref

from gateway.engine.gc_tuning import YOUNG_THRESHOLD, tune_gc


class Cell:
    def __init__(self):
        self.me = self           # a cycle: only the cyclic collector frees it


def test_cycles_are_collected_after_tuning():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        ref = weakref.ref(Cell())
        assert ref() is not None                     # refcounting alone cannot free a cycle
        churn = [[i] for i in range(2 * YOUNG_THRESHOLD)]     # allocations past the threshold
        del churn
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
