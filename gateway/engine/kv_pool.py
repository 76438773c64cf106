"""Token-slot KV memory: K and V as [layers, slots, kv_heads, head_dim]; slot 0 is padding.

Every token of every sequence lives in one slot; sequences refer to their tokens by slot id, so
sharing a prefix means sharing slot ids, never copying KV data. `ReqToTokenPool` is the table of
those ids, one row per running request.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

# Below this many slots a Python loop beats numpy, whose fixed cost per call is about a microsecond;
# decode allocates one slot per request per step, finishing requests free thousands at once.
_VECTOR_MIN = 64


class KVPool:
    def __init__(self, num_layers: int, num_slots: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        assert num_slots >= 2, "slot 0 is reserved, so a pool needs at least two slots"
        shape = (num_layers, num_slots, num_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_slots = num_slots
        # _stack holds exactly the free slots, and _free_flags[s] == 1 exactly for those. alloc takes
        # from the top, so a fresh pool hands out 1, 2, 3, ... and freed slots return in free order.
        self._stack = list(range(num_slots - 1, 0, -1))
        self._free_flags = bytearray(b"\x01") * num_slots
        self._free_flags[0] = 0
        self._free_view = np.frombuffer(self._free_flags, dtype=np.uint8)    # same memory, for bulk updates
        self._scratch = np.zeros(num_slots, dtype=np.int64)                  # repeat detection in free()

    @property
    def available(self) -> int:
        return len(self._stack)

    def alloc(self, n: int) -> list[int] | None:
        """n fresh slot ids, or None (allocating nothing) when fewer than n are free."""
        assert n >= 0, f"cannot allocate {n} slots"
        stack = self._stack
        if n > len(stack):
            return None
        taken = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        taken.reverse()
        if n < _VECTOR_MIN:
            flags = self._free_flags
            for s in taken:
                flags[s] = 0
        else:
            self._free_view[np.fromiter(taken, np.int64, n)] = 0
        return taken

    def free(self, slots: Iterable[int] | torch.Tensor | np.ndarray) -> None:
        """Returns slots to the pool; a slot that is already free, repeated, or out of 1..num_slots-1
        fails the whole call and frees nothing."""
        if isinstance(slots, (torch.Tensor, np.ndarray)):
            slots = slots.tolist()
        elif not isinstance(slots, (list, tuple)):
            slots = list(map(int, slots))
        if len(slots) < _VECTOR_MIN:
            self._free_few(slots)
        else:
            self._free_many(slots)
        self._stack.extend(reversed(slots))

    def _free_few(self, slots: list[int] | tuple[int, ...]) -> None:
        flags, num_slots = self._free_flags, self.num_slots
        for i, s in enumerate(slots):
            if not 0 < s < num_slots or flags[s]:
                for done in slots[:i]:
                    flags[done] = 0
                raise AssertionError(f"double free or bad slot {s} (pool has 1..{num_slots - 1})")
            flags[s] = 1

    def _free_many(self, slots: list[int] | tuple[int, ...]) -> None:
        arr = np.fromiter(slots, np.int64, len(slots))
        lo, hi = int(arr.min()), int(arr.max())
        assert lo > 0 and hi < self.num_slots, f"bad slot {lo if lo <= 0 else hi} (pool has 1..{self.num_slots - 1})"
        already = self._free_view[arr].astype(bool)
        assert not already.any(), f"double free of slot {int(arr[already.argmax()])}"
        # Scatter each slot's position; a repeated slot keeps only its last position.
        order = np.arange(arr.size, dtype=np.int64)
        self._scratch[arr] = order
        repeated = self._scratch[arr] != order
        assert not repeated.any(), f"double free of slot {int(arr[repeated.argmax()])} (repeated in one call)"
        self._free_view[arr] = 1

    def is_free(self, slot: int) -> bool:
        return bool(self._free_flags[slot])

    def free_slot_set(self) -> set[int]:
        return set(self._stack)

    def check_integrity(self) -> None:
        stack = self._stack
        assert not self._free_flags[0], "slot 0 (padding) is marked free"
        assert len(set(stack)) == len(stack), "a slot is on the free stack twice"
        marked = self._free_flags.count(1)
        assert marked == len(stack), f"{marked} slots marked free but {len(stack)} on the free stack"
        assert self._free_view[np.array(stack, dtype=np.int64)].all(), "a slot on the free stack is not marked free"

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[layer, slots] = k
        self.v[layer, slots] = v


class ReqToTokenPool:
    """`table[row, pos]` is the KV slot of token `pos` of the request that holds `row`.

    Rows are handed out whole and never cleared: a row's entries past its request's length are stale
    and must not be read. Every row 0..max_reqs-1 can be handed out.
    """

    def __init__(self, max_reqs: int, max_context: int, device: torch.device | str):
        assert max_reqs >= 1 and max_context >= 1, "need at least one row and one position"
        self.table = torch.zeros((max_reqs, max_context), dtype=torch.int32, device=device)
        self.max_reqs = max_reqs
        self.max_context = max_context
        self._free_rows = list(range(max_reqs - 1, -1, -1))
        self._row_free = [True] * max_reqs

    @property
    def available(self) -> int:
        return len(self._free_rows)

    def alloc(self) -> int | None:
        if not self._free_rows:
            return None
        row = self._free_rows.pop()
        self._row_free[row] = False
        return row

    def free(self, row: int) -> None:
        assert 0 <= row < self.max_reqs and not self._row_free[row], f"double free or bad row {row}"
        self._row_free[row] = True
        self._free_rows.append(row)

    def check_integrity(self) -> None:
        assert len(set(self._free_rows)) == len(self._free_rows), "a row is on the free list twice"
        assert sum(self._row_free) == len(self._free_rows), "free flags disagree with the free list"
        assert all(self._row_free[r] for r in self._free_rows), "a row on the free list is marked in use"
