"""Drives a model the way the engine will: sequences in a slot pool at scattered slots, packed
extends (prefill, chunked prefill) and batched single-token decodes. Test helper only."""
from __future__ import annotations

import torch

from gateway.engine.attention import AttentionMetadata, TorchAttention
from gateway.engine.kv_pool import KVPool
from gateway.engine.models import ModelConfig, load_model


class SlotBatch:
    def __init__(self, path, dtype=torch.float32, device="cpu", num_slots=1024, max_len=256, seed=0):
        self.cfg = ModelConfig.from_dir(path)
        self.device = torch.device(device)
        self.pool = KVPool(self.cfg.num_layers, num_slots, self.cfg.num_kv_heads, self.cfg.head_dim, dtype, self.device)
        self.pool.alloc(num_slots // 3)            # start with a fragmented pool: slots are not contiguous
        self.backend = TorchAttention(self.pool)
        self.model = load_model(path, self.cfg, self.backend, self.device, dtype)
        self.max_len = max_len
        self.rows: list[list[int]] = []            # slot ids of each sequence's tokens
        self.gen = torch.Generator().manual_seed(seed)

    def add(self) -> int:
        self.rows.append([])
        return len(self.rows) - 1

    @torch.inference_mode()
    def extend(self, pieces: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Append token ids to several sequences in one forward; returns logits per new token."""
        seqs = list(pieces)
        for s in seqs:
            slots = self.pool.alloc(len(pieces[s]))
            order = torch.randperm(len(slots), generator=self.gen).tolist()
            self.rows[s] += [slots[i] for i in order]
        table = torch.zeros(len(seqs), self.max_len, dtype=torch.int32, device=self.device)
        for i, s in enumerate(seqs):
            table[i, :len(self.rows[s])] = torch.tensor(self.rows[s], device=self.device)
        seq_lens = [len(self.rows[s]) for s in seqs]
        ext = [len(pieces[s]) for s in seqs]
        self.backend.prepare(AttentionMetadata.build(seq_lens, ext, table))
        ids = torch.cat([pieces[s] for s in seqs]).to(self.device)
        positions = torch.cat([torch.arange(L - e, L) for L, e in zip(seq_lens, ext)]).to(self.device)
        logits = self.model.compute_logits(self.model(ids, positions)).float().cpu()
        return dict(zip(seqs, logits.split(ext)))
