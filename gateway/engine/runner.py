"""Runs one scheduled batch through the model: token ids, positions and attention metadata from
the requests' rows in req_to_token, logits at each request's last new token.

The runner picks the attention backend (`attention`: "auto" is Triton on a CUDA device when triton
imports, else the torch reference) and, on a CUDA device with a backend that supports it, replays
decode steps from CUDA graphs (engine.cuda_graphs); extends and larger decodes run eagerly. Host
lists reach the device through pinned, asynchronous copies, so a forward never waits for the device.
"""
from __future__ import annotations

import logging
import time
from itertools import accumulate
from pathlib import Path

import torch

from gateway.engine.attention import AttentionBackend, AttentionMetadata, TorchAttention
from gateway.engine.cuda_graphs import DecodeGraphs
from gateway.engine.kv_pool import KVPool, ReqToTokenPool
from gateway.engine.models import ModelConfig, build_model, load_model, resolve_dtype
from gateway.engine.models.loader import fill_random
from gateway.engine.scheduler import Batch
from gateway.engine.transfer import to_device

log = logging.getLogger(__name__)
ATTENTION = ("auto", "triton", "torch")


def select_backend(name: str, pool: KVPool, device: torch.device) -> AttentionBackend:
    """The attention backend `name` over `pool`; "auto" falls back to torch where Triton cannot run."""
    if name not in ATTENTION:
        raise ValueError(f"attention {name!r} is not supported (supported: {', '.join(ATTENTION)})")
    if name == "torch" or (name == "auto" and device.type != "cuda"):
        return TorchAttention(pool)
    try:
        from gateway.engine.attention.triton_backend import TritonAttention
    except ImportError as err:
        if name == "auto":
            log.info("attention: torch reference (triton does not import: %s)", err)
            return TorchAttention(pool)
        raise ValueError(f"attention 'triton' needs triton installed: {err}") from None
    from kernels.common import interpreting
    if device.type != "cuda" and not interpreting():
        raise ValueError(f"attention 'triton' runs on CUDA devices, not on {device.type} (except in Triton's "
                         "interpreter: TRITON_INTERPRET=1, set before triton is first imported)")
    return TritonAttention(pool)


def kv_slots_within(fraction: float, free: int, total: int, weight_bytes: int, table_bytes: int,
                    slot_bytes: int) -> int:
    """KV slots that fit when weights, tables and KV together may use `fraction` of the device's memory.
    Memory already in use (this process's context, other processes) counts against that share; the
    rest is left for activations and CUDA graphs."""
    if not 0 < fraction <= 1:
        raise ValueError(f"mem_fraction must be in (0, 1], got {fraction}")
    slots = int((fraction * total - (total - free) - weight_bytes - table_bytes) // slot_bytes)
    if slots < 2:
        raise ValueError(f"mem_fraction {fraction} leaves no memory for the KV cache: {free / 2**30:.1f} of "
                         f"{total / 2**30:.1f} GiB free, weights {weight_bytes / 2**30:.1f} GiB")
    return slots


class ModelRunner:
    def __init__(self, path: str | Path, device: torch.device, dtype: str = "auto", kv_slots: int = 16384,
                 max_running: int = 256, max_context: int | None = None, *, attention: str = "auto",
                 cuda_graphs: bool = True, mem_fraction: float = 0.0, random_weights: bool = False,
                 group_prefixes: bool = False):
        """`mem_fraction` > 0 sizes the KV pool from the device's free memory instead of `kv_slots`;
        `random_weights` draws weights on the device instead of reading the checkpoint (benchmarks);
        `group_prefixes`: decodes read a prefix shared by several sequences once per group, where the
        backend can (`run(..., shared=...)`)."""
        self.cfg = ModelConfig.from_dir(path)
        self.device = device
        self.dtype = resolve_dtype(dtype, self.cfg, device)
        self.max_context = min(max_context or self.cfg.max_position_embeddings, self.cfg.max_position_embeddings)
        if mem_fraction:
            kv_slots = self._kv_slots_for(mem_fraction, max_running)
        self.pool = KVPool(self.cfg.num_layers, kv_slots, self.cfg.num_kv_heads, self.cfg.head_dim, self.dtype, device)
        self.req_pool = ReqToTokenPool(max_running, self.max_context, device)
        self.backend = select_backend(attention, self.pool, device)
        if random_weights:
            self.model = build_model(self.cfg, self.backend, device, self.dtype)
            fill_random(self.model)
        else:
            self.model = load_model(path, self.cfg, self.backend, device, self.dtype)
        self.computed_tokens = 0            # tokens run through the model, for cache accounting
        self.groups_prefixes = group_prefixes and self.backend.supports_shared_prefixes and \
            self.cfg.sliding_window is None
        self.grouped_decodes = 0
        self.graphs: DecodeGraphs | None = None
        if cuda_graphs and device.type == "cuda":
            if self.backend.supports_graphs:
                start = time.perf_counter()
                self.graphs = DecodeGraphs(self.model, self.backend, self.req_pool.table, max_running,
                                           shared_prefixes=self.groups_prefixes)
                log.info("captured decode graphs for batch sizes %s in %.1f s", self.graphs.sizes,
                         time.perf_counter() - start)
            else:
                log.info("decode runs eagerly: %s cannot be captured in CUDA graphs", type(self.backend).__name__)

    def _kv_slots_for(self, fraction: float, max_running: int) -> int:
        if self.device.type != "cuda":
            raise ValueError("mem_fraction sizes the KV cache from GPU memory and needs a CUDA device")
        meta = build_model(self.cfg, None, torch.device("meta"), self.dtype)    # sizes only: never runs
        weights = sum(p.numel() * p.element_size() for p in meta.parameters())
        tables = 2 * max_running * self.max_context * 4         # req_to_token and the graphs' copy of it
        slot = 2 * self.cfg.num_layers * self.cfg.num_kv_heads * self.cfg.head_dim * self.dtype.itemsize
        return kv_slots_within(fraction, *torch.cuda.mem_get_info(self.device), weights, tables, slot)

    def forward(self, batch: Batch, step: int = 0, ids: torch.Tensor | None = None) -> torch.Tensor:
        """float32 logits [len(batch.reqs), vocab] at each request's last new token. Step k > 0 of a
        decode window (engine.decode_window) feeds `ids`, the tokens step k - 1 drew, still on the device."""
        if step:
            assert not batch.is_prefill and ids is not None and step < batch.steps
            seq_lens = [r.kv_len + step + 1 for r in batch.reqs]
            positions = [n - 1 for n in seq_lens]
        else:
            ids, positions, seq_lens = [], [], []
            for r, ext in zip(batch.reqs, batch.extend_lens):
                ids += r.token_slice(r.kv_len, r.kv_len + ext)
                positions += range(r.kv_len, r.kv_len + ext)
                seq_lens.append(r.kv_len + ext)
        self.computed_tokens += len(ids)
        shared = batch.shared if self.groups_prefixes else None
        return self.run(ids, positions, seq_lens, batch.extend_lens, [r.row for r in batch.reqs], shared=shared)

    @torch.inference_mode()
    def run(self, ids: list[int] | torch.Tensor, positions: list[int], seq_lens: list[int], extend_lens: list[int],
            rows: list[int], graphs: bool = True, shared: list[tuple[list[int], int]] | None = None,
            at: list[int] | None = None) -> torch.Tensor:
        """Sequence i (row rows[i] of req_to_token, whose slots for its new tokens are allocated) extends
        by extend_lens[i] tokens to seq_lens[i]; ids and positions are the new tokens, packed. Returns
        float32 logits at each sequence's last new token. A decode that fits a captured graph replays it.
        `shared`: a decode's prefix groups (engine.prefix_groups), given only when `groups_prefixes`.
        `at`: indices into the packed new tokens whose logits to return instead (engine.scoring; eager)."""
        self.grouped_decodes += bool(shared)
        if graphs and at is None and self.graphs is not None and len(ids) == len(rows) <= self.graphs.max_batch:
            return self.graphs.run(ids, positions, seq_lens, rows, shared or ())
        dev = self.device
        table = self.req_pool.table[to_device(rows, torch.int64, dev)]
        meta = AttentionMetadata.build(seq_lens, extend_lens, table)
        if shared:
            assert meta.is_decode and self.groups_prefixes
            meta.shared = shared
        self.backend.prepare(meta)
        ids = ids if isinstance(ids, torch.Tensor) else to_device(ids, torch.int64, dev)
        hidden = self.model(ids, to_device(positions, torch.int64, dev))
        last = to_device(list(accumulate(extend_lens)), torch.int64, dev) - 1 if at is None else \
            to_device(at, torch.int64, dev)
        return self.model.compute_logits(hidden[last]).float()
