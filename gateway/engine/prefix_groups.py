"""Which sequences of a decode batch share a cached prefix, for attention that reads it once per group
(kernels.shared_prefix).

A running request's rows [0, cached_len) hold the slots of its radix path, root to `node`; two requests
under the same node share the slots of everything down to that node's end. Each request joins the
group of the deepest node on its path that another request of the batch also lies under, if that node
ends at least `min_length` tokens deep (a short prefix saves less than a group costs).
"""
from __future__ import annotations

from collections.abc import Sequence

from gateway.engine.request import Req


def prefix_groups(reqs: Sequence[Req], min_length: int = 256) -> list[tuple[list[int], int]]:
    """(batch indices, shared prefix length) per group of two or more."""
    paths: list[list[tuple[int, int]]] = []
    under: dict[int, int] = {}
    for r in reqs:
        path, node, depth = [], r.node, r.cached_len
        while node is not None and node.key and depth >= min_length:     # deepest node first
            path.append((id(node), depth))
            under[id(node)] = under.get(id(node), 0) + 1
            depth -= len(node.key)
            node = node.parent
        paths.append(path)
    groups: dict[int, tuple[list[int], int]] = {}
    for i, path in enumerate(paths):
        for node, depth in path:
            if under[node] >= 2:
                groups.setdefault(node, ([], depth))[0].append(i)
                break
    return [g for g in groups.values() if len(g[0]) >= 2]

