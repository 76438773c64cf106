"""Decode steps replayed from CUDA graphs: the model forward and its logits, captured once per batch size.

One set of static buffers, sized for the largest batch, holds a decode's inputs (token ids, positions,
sequence lengths, the batch's rows of req_to_token, the slots its new K/V goes to) and its float32 logits
(written there by the logits product itself at batch 1: DecoderForCausalLM.logits_into); every
graph reads and writes those same buffers. A decode of n sequences replays the graph of the smallest
captured size >= n. Its rows n..size-1 are padding:

    ids, positions     whatever a previous step left (any valid id and position will do)
    seq_lens           0: the decode kernel gives them zero output and reads no key
    out_slots          0: the pool's padding slot, so their K/V lands where nobody reads it

With `shared_prefixes`, the graphs also read groups of sequences that share a prefix (engine.prefix_groups)
from fixed-shape buffers, rewritten before each replay; padding group tiles are empty and skipped.

Graphs are captured largest first into one memory pool, so together they take about what the largest
one needs. Only a backend with `supports_graphs` can be captured (its decode must not read host lists).
With `capture=False` the same static-buffer forward runs eagerly: how tests check the padding on a CPU.
"""
from __future__ import annotations

import torch

from gateway.engine.attention import AttentionBackend, AttentionMetadata
from gateway.engine.transfer import to_device
from gateway.engine.models import DecoderForCausalLM
from gateway.engine.models.layers import triton_kernel
from kernels.stage_decode_ref import stage_decode_ref


GRAPH_STEP = 64


def graph_batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... 32, then every multiple of GRAPH_STEP below max_batch, then max_batch itself: a large
    batch pads by less than GRAPH_STEP rows, since the padding's share of a memory-bound step is its cost."""
    assert max_batch >= 1
    small = [1 << i for i in range(6) if 1 << i < max_batch]
    return small + list(range(GRAPH_STEP, max_batch, GRAPH_STEP)) + [max_batch]


class DecodeGraphs:
    def __init__(self, model: DecoderForCausalLM, backend: AttentionBackend, req_table: torch.Tensor,
                 max_batch: int, capture: bool = True, shared_prefixes: bool = False):
        """`shared_prefixes`: the graphs read each group's shared prefix once (kernels.shared_prefix),
        the groups of every step written into the same buffers (`run(..., shared=groups)`)."""
        assert backend.supports_graphs, f"{type(backend).__name__} cannot run a captured decode"
        self.model, self.backend, self.req_table = model, backend, req_table
        self.device = req_table.device
        self.sizes = graph_batch_sizes(max_batch)
        n, dev = self.sizes[-1], self.device
        self.ids = torch.zeros(n, dtype=torch.int64, device=dev)
        self.positions = torch.zeros(n, dtype=torch.int64, device=dev)
        self.seq_lens = torch.zeros(n, dtype=torch.int32, device=dev)
        self.table = torch.zeros((n, req_table.shape[1]), dtype=torch.int32, device=dev)
        self.out_slots = torch.zeros(n, dtype=torch.int64, device=dev)
        self.logits = torch.zeros((n, model.config.vocab_size), dtype=torch.float32, device=dev)
        ones = torch.ones(n, dtype=torch.int32, device=dev)
        # The host lists are nominal: a graph-capable backend's decode reads only the device tensors.
        self.metas = {bs: AttentionMetadata(self.seq_lens[:bs], ones[:bs], self.table[:bs], self.out_slots[:bs],
                                            [1] * bs, [1] * bs) for bs in self.sizes}
        self.shared = None
        self._filled: tuple = ((), 0)              # the groups (the list itself, kept alive) and size last written
        if shared_prefixes:
            assert backend.supports_shared_prefixes
            from kernels.shared_prefix import SharedPrefixes       # triton: only with a backend that has it
            cfg, dtype = model.config, model.lm_head.weight.dtype
            self.shared = SharedPrefixes.build(n, [], cfg.num_heads // cfg.num_kv_heads, dtype, dev,
                                               tiles=SharedPrefixes.tiles_for(n))      # as `view(n)` takes
            for bs, meta in self.metas.items():
                meta.shared_prefixes = self.shared.view(bs)
        self._stage = stage_decode_ref
        if self.device.type == "cuda" and (kernel := triton_kernel("stage_decode", "stage_decode")) is not None:
            self._stage = kernel            # one launch for what is ~10 small torch operations
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if capture:
            self._capture()

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def size_for(self, n: int) -> int:
        return next(bs for bs in self.sizes if bs >= n)

    @torch.inference_mode()
    def run(self, ids: list[int] | torch.Tensor, positions: list[int], seq_lens: list[int], rows: list[int],
            shared: list[tuple[list[int], int]] = ()) -> torch.Tensor:
        """float32 logits [n, vocab] of a decode: sequence i (row rows[i] of req_to_token, seq_lens[i]
        tokens including the new one, ids[i] at positions[i]) extends by one token; `shared` groups
        sequences by the prefix they share (engine.prefix_groups), where the graphs support it. `ids`
        may be a device tensor (a decode window's previous draw)."""
        n = len(ids)
        assert 0 < n <= self.max_batch and len(positions) == len(seq_lens) == len(rows) == n
        bs = self.size_for(n)
        given = isinstance(ids, torch.Tensor)
        staged = to_device([positions, seq_lens, rows] + ([] if given else [ids]), torch.int64, self.device)
        self._stage(staged[:3], ids if given else staged[3], self.req_table, bs, max(seq_lens),
                    (self.ids, self.positions, self.seq_lens, self.table, self.out_slots))
        if self.shared is not None and (shared, bs) != self._filled:     # a decode window's steps share them
            self.metas[bs].shared_prefixes.fill(list(shared))
            self._filled = (shared, bs)
        if self.graphs:
            self.graphs[bs].replay()
        else:
            self._forward(bs)
        return self.logits[:n].clone()      # the buffer is overwritten by the next step

    def _forward(self, bs: int) -> None:
        self.backend.prepare(self.metas[bs])
        self.model.logits_into(self.ids[:bs], self.positions[:bs], self.logits[:bs])

    @torch.inference_mode()
    def _capture(self) -> None:
        assert self.device.type == "cuda", "CUDA graphs need a CUDA device"
        pool = None
        for bs in reversed(self.sizes):
            self._forward(bs)                      # warm-up: compiles this size's kernels outside the capture
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._forward(bs)
            torch.cuda.synchronize(self.device)
            if pool is None:
                pool = graph.pool()
            self.graphs[bs] = graph
