"""Continuous batching over the KV pool and the radix cache.

Each step is either an extend (chunked prefill of admitted requests, under a token budget) or a
decode of every running request. Waiting requests are admitted longest-cached-prefix first, except
that one waiting longer than `max_wait_steps` goes first whatever its prefix (aging guard). When a
decode finds no free slot even after evicting the cache, the requests with the least progress are
retracted: their computed K/V goes into the tree, so resuming them later recomputes little.

All freeing goes through `_release`: a request's tokens are inserted into the tree, duplicates
freed, its lock dropped and its row returned, whether it finished, was aborted or was retracted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch

from gateway.engine.kv_pool import KVPool, ReqToTokenPool
from gateway.engine.prefix_groups import prefix_groups
from gateway.engine.radix_cache import RadixCache
from gateway.engine.request import Req
from gateway.engine.transfer import to_device


@dataclass(slots=True)
class Batch:
    reqs: list[Req]
    extend_lens: list[int]
    is_prefill: bool
    shared: list[tuple[list[int], int]] = field(default_factory=list)   # decode: prefix_groups of reqs
    steps: int = 1                     # decode: steps run back to back on the device (a decode window)

    def samples(self, i: int) -> bool:
        """Whether request i's last new token yields the next output token (its prefill is done)."""
        r = self.reqs[i]
        return r.kv_len + self.extend_lens[i] == r.seq_len


SHARED_PROBE = 32     # prompt tokens two admissions must share beyond the cache for one to wait


class Scheduler:
    def __init__(self, pool: KVPool, req_pool: ReqToTokenPool, cache: RadixCache, *, max_running: int = 256,
                 chunk_tokens: int = 2048, decode_reserve: int = 8, max_wait_steps: int = 64, decode_steps: int = 1):
        self.pool, self.req_pool, self.cache = pool, req_pool, cache
        self.max_running, self.chunk_tokens = max_running, chunk_tokens
        self.decode_reserve, self.max_wait_steps = decode_reserve, max_wait_steps
        if decode_steps < 1:
            raise ValueError(f"decode_steps must be at least 1, got {decode_steps}")
        self.decode_steps = decode_steps    # the longest decode window (engine.decode_window)
        self.waiting: list[Req] = []
        self.prefilling: list[Req] = []
        self.running: list[Req] = []
        self.step_no = 0
        self.retractions = 0
        self.ended: list[Req] = []          # finished by the scheduler itself; the engine reports them
        self._row_writes: list[tuple[int, int, list[int]]] = []    # (row, start, slots) for `_flush_rows`
        self.min_shared_prefix = 0          # > 0: decode batches carry prefix groups this deep (engine.prefix_groups)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def add(self, req: Req) -> None:
        req.arrival = self.step_no
        # Requests opening alike are a family (with the namespace). Integer tuples hash the same in every
        # process, so the order is reproducible; a collision only merges two families' admission order.
        req.family = hash(tuple(req.prompt_ids[:SHARED_PROBE]))
        self.waiting.append(req)

    # ----- building a step -------------------------------------------------------------------

    def schedule(self) -> Batch | None:
        self.step_no += 1
        batch = self._prefill_batch()
        batch = batch if batch.reqs else self._decode_batch()
        self._flush_rows()
        return batch

    def _prefill_batch(self) -> Batch:
        batch, budget = Batch([], [], True), self.chunk_tokens
        for r in self.prefilling:                      # chunked prefills in progress continue first
            ext = min(r.seq_len - r.kv_len, budget)
            if ext <= 0 or not self._extend_row(r, ext):
                break
            batch.reqs.append(r)
            batch.extend_lens.append(ext)
            budget -= ext
        admitting = budget > 0 and len(self.prefilling) + len(self.running) < self.max_running \
            and self.req_pool.available > 0
        held = 0                                       # places kept for requests waiting on a sibling's prefill
        order, hits = self._admission_order() if admitting else ((), {})   # ordering matches prefixes: not for nothing
        for r in order:
            if budget <= 0 or len(self.prefilling) + len(self.running) + held >= self.max_running:
                break
            if self._prefilled_by_another(r, hits):
                held += 1
                continue
            ext = self._admit(r, budget)
            if ext == 0:
                break
            batch.reqs.append(r)
            batch.extend_lens.append(ext)
            budget -= ext
        return batch

    def _admission_order(self) -> tuple[list[Req], dict[int, int]]:
        """Aged requests first, then the longest cached prefix, then the largest family of waiting
        requests opening with the same SHARED_PROBE tokens, a family kept together (its first member
        prefills the prefix the rest then find cached, and a decode batch of whole families reads
        each shared prefix once per family), then arrival. Also each candidate's cached prefix length
        by id (nothing enters the tree while a step is built)."""
        ready = [r for r in self.waiting if r.after is None or r.after.prefilled]
        if not self.cache.enabled or len(ready) < 2:
            return ready[:128], {}
        family = Counter((r.namespace, r.family) for r in ready)

        def kin(r: Req) -> tuple:
            return -family[r.namespace, r.family], r.family, r.namespace
        aged = {id(r): self.step_no - r.arrival > self.max_wait_steps for r in ready}
        ready = sorted(ready, key=lambda r: (not aged[id(r)], kin(r), r.arrival))[:128]
        hit = {id(r): self.cache.match_prefix(r.namespace, r.token_slice(0, r.seq_len - 1)).length for r in ready}
        ready.sort(key=lambda r: (not aged[id(r)], -hit[id(r)], kin(r), r.arrival))
        return ready, hit

    def _prefilled_by_another(self, r: Req, hits: dict[int, int]) -> bool:
        """Whether a request already prefilling computes the next SHARED_PROBE prompt tokens r lacks:
        then r waits, and finds them in the tree once committed, instead of computing them twice."""
        if not self.cache.enabled or not self.prefilling:
            return False
        cached = hits.get(id(r))
        if cached is None:
            cached = self.cache.match_prefix(r.namespace, r.token_slice(0, r.seq_len - 1)).length
        end = cached + SHARED_PROBE
        if end > len(r.prompt_ids):
            return False
        probe = r.prompt_ids[cached:end]            # compared first: most prefilling requests differ there
        return any(q.namespace == r.namespace and len(q.prompt_ids) >= end and q.kv_len < end
                   and q.prompt_ids[cached:end] == probe and q.prompt_ids[:cached] == r.prompt_ids[:cached]
                   for q in self.prefilling)

    def _admit(self, r: Req, budget: int) -> int:
        """Give r a row, its cached prefix and slots for its first chunk; 0 if memory says not now."""
        if self.req_pool.available == 0:
            return 0
        match = self.cache.match_prefix(r.namespace, r.token_slice(0, r.seq_len - 1))
        ext = min(r.seq_len - match.length, budget)
        self.cache.lock(match.node)
        reserve = self.decode_reserve * len(self.running)
        if self.pool.available + self.cache.evictable_size < ext + reserve:
            self.cache.unlock(match.node)
            return 0
        r.row, r.node = self.req_pool.alloc(), match.node
        r.slots = list(match.slots)
        if match.length:
            self._write_row(r, 0, r.slots)
        r.cached_len = r.kv_len = match.length
        if r.first_hit is None:
            r.first_hit = match.length
        assert self._extend_row(r, ext), "availability was checked above"
        self.waiting.remove(r)
        self.prefilling.append(r)
        return ext

    def _decode_batch(self) -> Batch | None:
        """Every running request extends by its uncomputed tokens: one after sampling, more after
        a jump-forward appended a forced stretch."""
        self._flush_rows()                  # rows committed by the last prefill, before the window's writes
        exts = [len(r.prompt_ids) + len(r.output_ids) - r.kv_len for r in self.running]
        while self.running and self.pool.available + self.cache.evictable_size < sum(exts):
            victims = self.prefilling + self.running
            if len(victims) == 1:                 # the pool cannot hold this request alone: it ends here
                self.finish(victims[0], "length")
                self.ended.append(victims[0])
                break
            self._retract(min(victims, key=lambda r: (len(r.output_ids), -r.arrival)))
            exts = [len(r.prompt_ids) + len(r.output_ids) - r.kv_len for r in self.running]
        if not self.running:
            return None
        reqs = list(self.running)
        if sum(exts) != len(reqs):
            for r, ext in zip(reqs, exts):
                assert self._extend_row(r, ext), "availability was ensured above"
            return Batch(reqs, exts, False)
        steps = self._window(reqs)
        need = steps * len(reqs)
        if self.pool.available < need:
            self.cache.evict(need - self.pool.available)
        slots = self.pool.alloc(need)
        assert slots is not None, "availability was ensured above"
        table = self.req_pool.table
        at = to_device([[r.row for r in reqs], [r.kv_len for r in reqs]], torch.int64, table.device)
        cols = at[1, :, None] + torch.arange(steps, device=table.device)
        table[at[0, :, None].expand_as(cols), cols] = to_device(slots, torch.int32, table.device).view(len(reqs), steps)
        for i, r in enumerate(reqs):
            r.slots += slots[i * steps:(i + 1) * steps]
        groups = prefix_groups(reqs, self.min_shared_prefix) if self.min_shared_prefix and len(reqs) > 1 else []
        return Batch(reqs, exts, False, groups, steps)

    def _window(self, reqs: list[Req]) -> int:
        """How many decode steps to run before the host looks again (engine.decode_window): up to
        `decode_steps` when every request may run ahead; while requests wait for a place, never past
        the first request's last token (its place frees then), otherwise never past the last one's
        (a request that ends inside the window drops its extra tokens); 1 when memory is short
        (slots for every step are allocated up front)."""
        if self.decode_steps <= 1 or not all(r.runs_ahead for r in reqs):
            return 1
        left = [r.max_new_tokens - len(r.output_ids) for r in reqs]
        width = self.req_pool.table.shape[1]
        steps = min(self.decode_steps, min(left) if self.waiting else max(left), width - max(r.kv_len for r in reqs))
        if steps > 1 and self.pool.available + self.cache.evictable_size < steps * len(reqs):
            return 1
        return max(steps, 1)

    def _extend_row(self, r: Req, n: int) -> bool:
        """Allocate slots for r's next n tokens into its row (evicting cached leaves if needed)."""
        if self.pool.available < n:
            self.cache.evict(n - self.pool.available)
        slots = self.pool.alloc(n)
        if slots is None:
            return False
        assert len(r.slots) == r.kv_len, (r.rid, len(r.slots), r.kv_len)
        r.slots += slots
        self._write_row(r, r.kv_len, slots)
        return True

    def _write_row(self, r: Req, start: int, slots: list[int]) -> None:
        """req_to_token[r.row, start:start + len(slots)] = slots, before the next forward (`_flush_rows`);
        r.slots already holds them."""
        if slots:
            self._row_writes.append((r.row, start, slots))

    def _flush_rows(self) -> None:
        """The rows' pending writes as one copy, queued behind the forward in flight (a copy from
        pageable memory would wait for it): a prefill step writes ~100 rows of thousands of slots."""
        if not self._row_writes:
            return
        table = self.req_pool.table
        width = table.shape[1]
        at = np.concatenate([np.arange(row * width + start, row * width + start + len(slots))
                             for row, start, slots in self._row_writes])
        values = list(chain.from_iterable(slots for _, _, slots in self._row_writes))
        self._row_writes.clear()
        table.view(-1)[to_device(at, torch.int64, table.device)] = to_device(values, torch.int32, table.device)

    # ----- after the forward -----------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """The batch's K/V is computed: advance each request and share finished prefill chunks."""
        for r, ext in zip(batch.reqs, batch.extend_lens):
            r.kv_len += ext * batch.steps
            if batch.is_prefill and self.cache.enabled:
                self._cache_prefix(r)

    def cut_window(self, r: Req) -> None:
        """r ended inside a decode window: the slots computed past its last token go back to the pool."""
        if r.kv_len > r.seq_len:
            self.pool.free(r.slots[r.seq_len:r.kv_len])
            del r.slots[r.seq_len:]
            r.kv_len = r.seq_len

    def promote(self, r: Req) -> None:
        """r sampled its first token after prefill: from now on it decodes."""
        self.prefilling.remove(r)
        self.running.append(r)

    def _cache_prefix(self, r: Req) -> None:
        """Move r's computed tokens into the tree now, so concurrent requests can share them."""
        self.cache.insert_and_release(r.namespace, r.tokens[:r.kv_len], r.slots[:r.kv_len], r.cached_len)
        match = self.cache.match_prefix(r.namespace, r.tokens[:r.kv_len])
        assert match.length == r.kv_len, (match.length, r.kv_len)
        r.slots[r.cached_len:r.kv_len] = match.slots[r.cached_len:]
        self._write_row(r, r.cached_len, r.slots[r.cached_len:r.kv_len])
        self.cache.lock(match.node)
        self.cache.unlock(r.node)
        r.node, r.cached_len = match.node, r.kv_len

    # ----- leaving ---------------------------------------------------------------------------

    def finish(self, r: Req, reason: str) -> None:
        r.finish_reason = reason
        for queue in (self.waiting, self.prefilling, self.running):
            if r in queue:
                queue.remove(r)
        if r.row is not None:
            self._release(r)

    def _retract(self, r: Req) -> None:
        (self.running if r in self.running else self.prefilling).remove(r)
        self._release(r)
        self.waiting.insert(0, r)
        self.retractions += 1

    def _release(self, r: Req) -> None:
        self.cache.insert_and_release(r.namespace, r.tokens[:r.kv_len], r.slots[:r.kv_len], r.cached_len)
        self.cache.unlock(r.node)
        self.req_pool.free(r.row)
        r.row, r.node, r.cached_len, r.kv_len, r.slots = None, None, 0, 0, []

    def reclaim(self) -> None:
        """After a failed step with every request finished: drop the cache and free any slot a
        half-done step had allocated, so the engine serves on from a clean pool."""
        assert not self.has_work, "finish every request before reclaiming"
        self.cache.reset()
        stray = [s for s in range(1, self.pool.num_slots) if not self.pool.is_free(s)]
        if stray:
            self.pool.free(stray)

    def owned_slots(self) -> list[int]:
        owned = []
        for r in self.prefilling + self.running:
            owned += r.slots[r.cached_len:r.kv_len]
        return owned

    def check_integrity(self, pending: Batch | None = None) -> None:
        """Every slot is free, cached or owned by exactly one request; `pending` is a batch whose
        slots are allocated but whose forward has not been committed yet."""
        self._flush_rows()
        owned = self.owned_slots()
        if pending is not None:
            for r, ext in zip(pending.reqs, pending.extend_lens):
                owned += r.slots[r.kv_len:r.kv_len + ext * pending.steps]
        for r in self.prefilling + self.running:
            r.check()
            assert self.req_pool.table[r.row, :len(r.slots)].tolist() == r.slots, f"{r.rid}: row != host slots"
        self.cache.check_integrity(owned)
