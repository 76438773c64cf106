"""Content keys of JSON values: two values get the same key exactly when json.dumps(value,
sort_keys=True) spells them alike (tests/structured/test_compile_paths.py), but a container is keyed
once per compile and its key is a small int, so keying a schema node costs its own members, where
serialising it cost its whole subtree again at every node above it.

A container is remembered by identity, and held, so its id cannot be reused for another one while
the keys live (a compile's schemas are not changed while it runs).
"""
from __future__ import annotations


class Contents:
    def __init__(self):
        self._ids: dict[tuple, int] = {}              # a container's shape -> its key
        self._seen: dict[int, tuple[object, int]] = {}  # id(container) -> (container, its key)

    def key(self, value) -> object:
        """A hashable key of value's content (an int for a list, tuple or dict)."""
        kind = type(value)
        if kind is dict or kind is list or kind is tuple:
            seen = self._seen.get(id(value))
            if seen is not None:
                return seen[1]
            if kind is dict:
                shape = (dict, *sorted((k, self.key(v)) for k, v in value.items()))
            else:
                shape = (list, *map(self.key, value))
            key = self._ids.setdefault(shape, len(self._ids))
            self._seen[id(value)] = (value, key)
            return key
        if kind is float:
            return float, repr(value)                  # json.dumps writes repr: -0.0 is not 0.0
        return kind, value                             # True, 1 and 1.0 are three spellings
