"""A one-line progress bar on stderr, with no dependency: `[#####.....] 5/10 1.2s`."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, enabled: bool = True, width: int = 30, out: TextIO | None = None):
        self.total, self.enabled, self.width = total, enabled, width
        self.out = out or sys.stderr
        self.done = self.failed = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._draw()

    def advance(self, failed: bool = False) -> None:
        with self._lock:
            self.done += 1
            self.failed += failed
            self._draw()
            if self.done == self.total and self.enabled:
                self.out.write("\n")
                self.out.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = self.width * self.done // max(self.total, 1)
        errors = f" {self.failed} failed" if self.failed else ""
        self.out.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
                       f" {time.monotonic() - self._start:.1f}s{errors}")
        self.out.flush()
