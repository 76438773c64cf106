"""Per rule and state, the fewest bytes that reach the rule's acceptance: what ending validly costs.

A state's distance is 0 where its rule accepts, else the least of 1 + a byte target's distance and,
for each call, the callee's start distance + the return state's. All rules' states are solved as
one graph by Dial's algorithm (Knuth's generalisation for the calls): distances settle in rising
order, level by level from buckets, each level one vectorised step over the reversed byte edges of
the newly settled states; a call is relaxed when the later of its return state and its callee's
start settles, both final then. A call through an empty callee (distance 0) settles more states at
the same level, so a level repeats until nothing new is found. Cost: the edges once, plus a few
numpy calls per distinct distance (a 1,000-byte counted string is 1,000 small steps).
"""
from __future__ import annotations

import heapq

import numpy as np

INF = np.inf


def distances_to_accept(rules: list) -> list[np.ndarray]:
    """float [states] per rule; inf where no completion exists."""
    sizes = [rule.dfa.num_states for rule in rules]
    offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    src, dst = _byte_edges(rules, offset)
    order, first = _grouped(dst, offset[-1])
    preds = src[order]                                       # byte predecessors, grouped by target
    calls = [(offset[r] + s, offset[r] + ret, offset[callee])
             for r, rule in enumerate(rules) for s, ts in rule.calls.items() for callee, ret in ts]
    call_src, call_ret, call_callee = (np.array(col, np.int64) for col in zip(*calls)) if calls else \
        (np.zeros(0, np.int64),) * 3

    by_ret, ret_first = _grouped(call_ret, offset[-1])          # call edge ids, grouped by return state
    by_callee, callee_first = _grouped(call_callee, offset[-1])
    d = np.concatenate([np.where(rule.dfa.accept, 0.0, INF) for rule in rules])
    settled = np.zeros(len(d), np.bool_)
    buckets: dict[float, list[np.ndarray]] = {0.0: [np.flatnonzero(d == 0)]}
    levels = [0.0]
    while levels:
        level = heapq.heappop(levels)
        new = np.unique(np.concatenate(buckets.pop(level)))
        new = new[~settled[new] & (d[new] == level)]
        while len(new):
            settled[new] = True
            reached = _gather(preds, first, new)
            reached = reached[d[reached] > level + 1]
            if len(reached):
                d[reached] = level + 1
                _push(buckets, levels, level + 1, reached)
            hit = np.concatenate([_gather(by_ret, ret_first, new), _gather(by_callee, callee_first, new)])
            hit = hit[settled[call_ret[hit]] & settled[call_callee[hit]]]
            same = np.zeros(0, np.int64)
            if len(hit):
                who, cost = call_src[hit], d[call_ret[hit]] + d[call_callee[hit]]
                better = cost < d[who]
                who, cost = who[better], cost[better]
                np.minimum.at(d, who, cost)
                for value in np.unique(cost):
                    group = who[cost == value]
                    if value == level:
                        same = np.concatenate([same, group])
                    else:
                        _push(buckets, levels, float(value), group)
            same = np.unique(same)
            new = same[~settled[same] & (d[same] == level)]
    return [d[offset[r]:offset[r + 1]] for r in range(len(rules))]


def _byte_edges(rules: list, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(state, target) for every byte move, in global state numbers; a pair repeats only where its
    bytes are not one run (rows are mostly a few runs of equal targets)."""
    srcs, dsts = [], []
    for r, rule in enumerate(rules):
        targets = rule.dfa.trans
        keep = targets >= 0
        keep[:, 1:] &= targets[:, 1:] != targets[:, :-1]
        srcs.append(np.nonzero(keep)[0] + offset[r])
        dsts.append(targets[keep].astype(np.int64) + offset[r])
    return np.concatenate(srcs), np.concatenate(dsts)


def _grouped(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices sorted by key, where each key's run starts) for keys in [0, n)."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n + 1))


def _gather(values: np.ndarray, first: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The grouped values of nodes' groups, concatenated."""
    lo, hi = first[nodes], first[nodes + 1]
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return values[starts + np.arange(total)]


def _push(buckets: dict, levels: list, value: float, nodes: np.ndarray) -> None:
    if value not in buckets:
        buckets[value] = []
        heapq.heappush(levels, value)
    buckets[value].append(nodes)
