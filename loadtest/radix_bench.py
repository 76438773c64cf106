"""What the radix cache costs the step loop, per 1,000 tokens, against the floor of merely reading them.

    python -m loadtest.radix_bench

Each request runs the way the scheduler runs it: match_prefix(prompt[:-1]) + lock, then (after the
forward) insert_and_release(prompt + output) + unlock. Slot allocation is the pool's cost, not the
tree's, and is left out. The floor is `hash(tuple(tokens))` of the same requests: one copy and one
read of every token, less than any prefix lookup can do. Eviction empties each tree in calls of
`evict(1000)`; its floor is the same copy-and-hash of the freed slot ids.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from gateway.engine.kv_pool import KVPool
from gateway.engine.radix_cache import RadixCache

Request = tuple[str, list[int], list[int]]         # namespace, prompt, output
VOCAB = 32_000
OUTPUT = 50


def random_tokens(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(VOCAB) for _ in range(n)]


def shared_system_prompt(rng: random.Random) -> Iterator[Request]:
    system = random_tokens(rng, 1000)
    for _ in range(1000):
        yield "tenant", system + random_tokens(rng, 200), random_tokens(rng, OUTPUT)


def multi_turn_chat(rng: random.Random) -> Iterator[Request]:
    """100 conversations of 10 turns, interleaved; each turn resends the whole history plus 100 new tokens."""
    history: list[list[int]] = [[] for _ in range(100)]
    for _ in range(10):
        for conv, past in enumerate(history):
            prompt = past + random_tokens(rng, 100)
            output = random_tokens(rng, OUTPUT)
            history[conv] = prompt + output
            yield f"tenant-{conv % 10}", prompt, output


def unrelated_prompts(rng: random.Random) -> Iterator[Request]:
    for _ in range(1000):
        yield "tenant", random_tokens(rng, 1000), random_tokens(rng, OUTPUT)


@dataclass(slots=True)
class Run:
    tokens: int = 0
    match_ns: int = 0
    insert_ns: int = 0
    floor_ns: int = 0
    evicted: int = 0
    evict_ns: int = 0
    evict_floor_ns: int = 0
    hit_rate: float = 0.0


def run_workload(pool: KVPool, requests: list[Request]) -> Run:
    cache = RadixCache(pool)
    run = Run()
    clock = time.perf_counter_ns
    for ns, prompt, output in requests:
        full = prompt + output
        t0 = clock()
        match = cache.match_prefix(ns, prompt[:-1])
        cache.lock(match.node)
        t1 = clock()
        slots = match.slots + pool.alloc(len(full) - match.length)
        t2 = clock()
        cache.insert_and_release(ns, full, slots, owned_from=match.length)
        cache.unlock(match.node)
        t3 = clock()
        hash(tuple(full))
        t4 = clock()
        run.tokens += len(full)
        run.match_ns += t1 - t0
        run.insert_ns += t3 - t2
        run.floor_ns += t4 - t3
    cache.check_integrity()
    run.hit_rate = cache.stats.hit_rate
    before = pool.available
    t0 = clock()
    while cache.evict(1000):
        pass
    run.evict_ns = clock() - t0
    run.evicted = pool.available - before
    held = list(range(1, run.evicted + 1))
    t0 = clock()
    for i in range(0, len(held), 1000):
        hash(tuple(held[i:i + 1000]))
    run.evict_floor_ns = clock() - t0
    cache.check_integrity()
    assert cache.total_size == 0 and pool.available == pool.num_slots - 1
    return run


def best_of(runs: list[Run], key: Callable[[Run], float]) -> float:
    return min(key(r) for r in runs)


def per_k(ns: int, count: int) -> float:
    return ns / count          # nanoseconds per item are microseconds per 1,000 items


def main() -> None:
    workloads = {"shared 1000-token system prompt": shared_system_prompt,
                 "multi-turn chat, 10 turns": multi_turn_chat,
                 "unrelated 1000-token prompts": unrelated_prompts}
    pool = KVPool(1, 1_200_000, 1, 1, torch.float32, "cpu")
    print("radix cache cost per 1,000 tokens (match = match_prefix + lock, insert = insert_and_release + unlock),")
    print("best run of 5 (the machine may be shared); floor = hash(tuple(tokens)) of the same tokens\n")
    header = (f"{'workload':34} {'reqs':>5} {'hit':>5} {'match':>7} {'insert':>7} {'total':>7} "
              f"{'floor':>6} {'x floor':>7}")
    print(header + "\n" + "-" * len(header))
    evict_rows = []
    for name, make in workloads.items():
        requests = list(make(random.Random(0)))
        runs = [run_workload(pool, requests) for _ in range(5)]
        best = min(runs, key=lambda r: r.match_ns + r.insert_ns)
        match, insert = per_k(best.match_ns, best.tokens), per_k(best.insert_ns, best.tokens)
        floor = best_of(runs, lambda r: per_k(r.floor_ns, r.tokens))
        print(f"{name:34} {len(requests):5} {best.hit_rate:5.0%} {match:7.2f} {insert:7.2f} {match + insert:7.2f} "
              f"{floor:6.2f} {(match + insert) / floor:7.1f}")
        evict = best_of(runs, lambda r: per_k(r.evict_ns, r.evicted))
        evict_floor = best_of(runs, lambda r: per_k(r.evict_floor_ns, r.evicted))
        evict_rows.append((name, runs[0].evicted, evict, evict_floor))
    print("\nevict(1000) until empty, us per 1,000 slots freed (pool.free included); floor = hash(tuple(slot ids))\n")
    header = f"{'tree built by':34} {'slots':>9} {'evict':>7} {'floor':>6} {'x floor':>7}"
    print(header + "\n" + "-" * len(header))
    for name, slots, evict, floor in evict_rows:
        print(f"{name:34} {slots:9} {evict:7.2f} {floor:6.2f} {evict / floor:7.1f}")


if __name__ == "__main__":
    main()
