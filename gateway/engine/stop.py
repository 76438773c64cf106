"""Stop strings: cut generated text at the first stop string, also when it spans token boundaries,
and never emit any part of it. Text that might be the start of a stop string is held back until
the next piece decides."""
from __future__ import annotations


class StopStrings:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Returns (text safe to emit now, whether a stop string was reached)."""
        if not self.stops:
            return piece, False
        self.pending += piece
        # The stop string that completes first wins, as if the text had arrived one character at a
        # time; of two completing together, the longer (earlier-starting) one.
        hits = [(i + len(s), i) for s in self.stops if (i := self.pending.find(s)) >= 0]
        if hits:
            text, self.pending = self.pending[:min(hits)[1]], ""
            return text, True
        hold = self._partial_stop_suffix()
        text = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        return text, False

    def flush(self) -> str:
        """The held-back text, once generation ends without a stop string."""
        text, self.pending = self.pending, ""
        return text

    def _partial_stop_suffix(self) -> int:
        """Length of the longest suffix of pending that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), best, -1):
                if self.pending.endswith(stop[:n]):
                    best = n
                    break
        return best
