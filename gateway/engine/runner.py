"""Runs one scheduled batch through the model: token ids, positions and attention metadata from
the requests' rows in req_to_token, logits at each request's last new token."""
from __future__ import annotations

from pathlib import Path

import torch

from gateway.engine.attention import AttentionMetadata, TorchAttention
from gateway.engine.kv_pool import KVPool, ReqToTokenPool
from gateway.engine.models import ModelConfig, load_model, resolve_dtype
from gateway.engine.scheduler import Batch


class ModelRunner:
    def __init__(self, path: str | Path, device: torch.device, dtype: str = "auto", kv_slots: int = 16384,
                 max_running: int = 256, max_context: int | None = None):
        self.cfg = ModelConfig.from_dir(path)
        self.device = device
        self.dtype = resolve_dtype(dtype, self.cfg, device)
        self.max_context = min(max_context or self.cfg.max_position_embeddings, self.cfg.max_position_embeddings)
        self.pool = KVPool(self.cfg.num_layers, kv_slots, self.cfg.num_kv_heads, self.cfg.head_dim, self.dtype, device)
        self.req_pool = ReqToTokenPool(max_running, self.max_context, device)
        self.backend = TorchAttention(self.pool)
        self.model = load_model(path, self.cfg, self.backend, device, self.dtype)
        self.computed_tokens = 0            # tokens run through the model, for cache accounting

    @torch.inference_mode()
    def forward(self, batch: Batch) -> torch.Tensor:
        """float32 logits [len(batch.reqs), vocab] at each request's last new token."""
        ids, positions, seq_lens = [], [], []
        for r, ext in zip(batch.reqs, batch.extend_lens):
            ids += r.token_slice(r.kv_len, r.kv_len + ext)
            positions += range(r.kv_len, r.kv_len + ext)
            seq_lens.append(r.kv_len + ext)
        rows = torch.tensor([r.row for r in batch.reqs], device=self.device)
        self.backend.prepare(AttentionMetadata.build(seq_lens, batch.extend_lens, self.req_pool.table[rows]))
        hidden = self.model(torch.tensor(ids, device=self.device), torch.tensor(positions, device=self.device))
        last = torch.tensor(batch.extend_lens, device=self.device).cumsum(0) - 1
        self.computed_tokens += len(ids)
        return self.model.compute_logits(hidden[last]).float()
