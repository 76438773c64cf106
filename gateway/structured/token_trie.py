"""The vocabulary as a byte trie held in arrays, one level per byte position, built once per tokenizer.

Tokens sorted by their bytes put every prefix's tokens in one contiguous run, so a node at depth d is
a run [lo, hi) of the sorted tokens sharing their first d bytes, and the children of a node are a
contiguous run of the next level's nodes. Walks over it cost the nodes still alive, not the tokens
below them: 59k Llama tokens that start with a space are one node, dropped in one step when the
grammar cannot take a space.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gateway.structured.tokens import TokenTable


@dataclass(slots=True)
class Level:
    lo: np.ndarray           # int64 [nodes]: first sorted token under the node
    hi: np.ndarray           # int64 [nodes]: one past the last
    ends: np.ndarray         # int64 [nodes]: how many sorted tokens from lo end exactly here
    byte: np.ndarray         # int64 [nodes]: the byte that leads from the parent
    child_lo: np.ndarray     # int64 [nodes]: first child in the next level
    child_hi: np.ndarray     # int64 [nodes]: one past the last child


class TokenTrie:
    def __init__(self, table: TokenTable):
        with_bytes = [i for i, b in enumerate(table.token_bytes) if b]
        self.ids = np.array(sorted(with_bytes, key=table.token_bytes.__getitem__), np.int64)   # sorted -> token id
        n = len(self.ids)
        lengths = table.lengths[self.ids].astype(np.int64)
        rows = table.matrix[self.ids]
        self.first = rows[:, 0].astype(np.int64) if n else np.zeros(0, np.int64)   # per sorted token
        self.first_byte = table.matrix[:, 0].astype(np.int64)                      # per token id
        lcp = np.zeros(n, np.int64)                       # common prefix with the previous sorted token
        if n > 1:
            same = rows[1:] == rows[:-1]
            first_diff = np.where(same.all(axis=1), rows.shape[1], np.argmin(same, axis=1))
            lcp[1:] = np.minimum(first_diff, np.minimum(lengths[1:], lengths[:-1]))
        self.depth = int(lengths.max()) if n else 0
        self.levels: list[Level] = [Level(np.zeros(1, np.int64), np.array([n], np.int64), np.zeros(1, np.int64),
                                          np.zeros(1, np.int64), None, None)]
        for d in range(1, self.depth + 1):
            lo = np.flatnonzero((lengths >= d) & (lcp < d))
            bounds = np.append(np.flatnonzero(lcp < d), n)
            hi = bounds[np.searchsorted(bounds, lo, side="right")]
            ending = np.concatenate([[0], np.cumsum(lengths == d)])
            self.levels.append(Level(lo, hi, ending[hi] - ending[lo], rows[lo, d - 1].astype(np.int64), None, None))
        for d, level in enumerate(self.levels):
            below = self.levels[d + 1].lo if d < self.depth else np.zeros(0, np.int64)
            level.child_lo = np.searchsorted(below, level.lo, side="left")
            level.child_hi = np.searchsorted(below, level.hi, side="left")
        self.check()
        self._flat = None

    @property
    def flat(self):
        """The levels end to end, as the C walk reads them (walk_native), built on first use."""
        if self._flat is None:
            from gateway.structured.walk_native import FlatTrie
            self._flat = FlatTrie(self)
        return self._flat

    def check(self) -> None:
        """Every token with bytes ends at exactly one node."""
        assert sum(int(level.ends.sum()) for level in self.levels) == len(self.ids)
        for level in self.levels:
            assert (level.child_lo <= level.child_hi).all()

    def tokens(self, lo: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Token ids of the sorted runs [lo, lo + count)."""
        return self.ids[runs(lo, count)]


def runs(lo: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The concatenated ranges [lo_i, lo_i + count_i)."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(count) - count
    return np.repeat(lo - offsets, count) + np.arange(total)
