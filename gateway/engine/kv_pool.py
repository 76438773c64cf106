"""Token-slot KV memory: K and V as [layers, slots, kv_heads, head_dim]; slot 0 is padding.

Every token of every sequence lives in one slot; sequences refer to their tokens by slot id, so
sharing a prefix means sharing slot ids, never copying KV data.
"""
from __future__ import annotations

import torch


class KVPool:
    def __init__(self, num_layers: int, num_slots: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        assert num_slots >= 2, "slot 0 is reserved, so a pool needs at least two slots"
        shape = (num_layers, num_slots, num_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_slots = num_slots
        self._free = list(range(num_slots - 1, 0, -1))   # a stack: alloc pops the lowest ids first
        self._is_free = [False] + [True] * (num_slots - 1)

    @property
    def available(self) -> int:
        return len(self._free)

    def alloc(self, n: int) -> list[int] | None:
        """n fresh slot ids, or None (allocating nothing) when fewer than n are free."""
        if n > len(self._free):
            return None
        slots = [self._free.pop() for _ in range(n)]
        for s in slots:
            self._is_free[s] = False
        return slots

    def free(self, slots) -> None:
        for s in map(int, slots):
            assert 0 < s < self.num_slots and not self._is_free[s], f"double free or bad slot {s}"
            self._is_free[s] = True
            self._free.append(s)

    def store(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[layer, slots] = k
        self.v[layer, slots] = v
