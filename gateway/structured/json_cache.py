"""Automata shared across schemas and requests: one least-recently-used pool, bounded by the bytes
its automata hold (a counted string can be megabytes, a literal a few hundred bytes).

What the pool hands out is read-only: builders copy, nothing writes a cached table. The JSON
building blocks' automata (plain strings, numbers, literals, formats: block_walks compiles them once)
are pinned: never evicted, kept by clear(), so a schema compiles by composing them.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np

from gateway.structured.grammar import Dfa

MAX_BYTES = 256 << 20
_pool: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
_held = [0]
_pinned: dict[tuple, tuple[object, int]] = {}


def shared(fn=None, *, key=None):
    """Memoise fn in the pool; `key(*args)` names an entry when the arguments are not hashable."""
    if fn is None:
        return functools.partial(shared, key=key)

    @functools.wraps(fn)
    def cached(*args):
        name = (fn.__qualname__, key(*args) if key else args)
        if name in _pinned:
            return _pinned[name][0]
        if name in _pool:
            _pool.move_to_end(name)
            return _pool[name][0]
        value = fn(*args)
        size = _freeze(value)
        _pool[name] = (value, size)
        _held[0] += size
        while _held[0] > MAX_BYTES and len(_pool) > 1:
            _, (_, dropped) = _pool.popitem(last=False)
            _held[0] -= dropped
        return value
    return cached


def pin() -> None:
    """Keep every automaton pooled so far for the life of the process (block_walks' building blocks)."""
    _pinned.update(_pool)
    _pool.clear()
    _held[0] = 0


def clear() -> None:
    """Forget every shared automaton but the pinned ones (benchmarks start each schema cold)."""
    _pool.clear()
    _held[0] = 0


def _freeze(value) -> int:
    """Make value's arrays read-only; its size in bytes."""
    if isinstance(value, Dfa):
        value.trans.flags.writeable = value.accept.flags.writeable = False
        return value.trans.nbytes + value.accept.nbytes
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return 64 + sum(_freeze(v) for v in value)
    return 64 * (1 + len(value)) if isinstance(value, dict) else 64
