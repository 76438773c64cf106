"""The decoder-only transformer every supported family is a variant of.

A family (llama.py, qwen2.py, qwen3.py) only says which projections carry a bias and whether q/k
are RMS-normalised per head. Per-step metadata reaches attention through the backend, so
`forward(input_ids, positions)` is the model's whole signature.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gateway.engine.attention import AttentionBackend
from gateway.engine.models.config import ModelConfig
from gateway.engine.models.fused_decode import decode_logits, decode_one, fusable
from gateway.engine.models.layers import RMSNorm, RotaryEmbedding, rotate_qk, silu_and_mul
from gateway.engine.models.parallel import (MergedColumnParallelLinear, ParallelLMHead, QKVParallelLinear,
                                            RowParallelLinear, VocabParallelEmbedding)


@dataclass(frozen=True, slots=True)
class Variant:
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, variant: Variant, layer: int, backend: AttentionBackend):
        super().__init__()
        self.layer, self.backend, self.window = layer, backend, cfg.sliding_window
        self.qkv_proj = QKVParallelLinear(cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads,
                                          bias=variant.qkv_bias)
        self.o_proj = RowParallelLinear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=variant.o_bias)
        self.heads, self.kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim ** -0.5
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if variant.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if variant.qk_norm else None

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        q, k, v = self.qkv_proj(hidden).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(-1, self.heads, self.head_dim)
        k = k.view(-1, self.kv_heads, self.head_dim)
        v = v.view(-1, self.kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rotate_qk(q, k, cos, sin)
        out = self.backend.forward(q, k, v, self.layer, self.scale, self.window)
        return self.o_proj(out.reshape(-1, q_size))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, variant: Variant):
        super().__init__()
        size = cfg.intermediate_size
        self.gate_up_proj = MergedColumnParallelLinear(cfg.hidden_size, [size, size], bias=variant.mlp_bias)
        self.down_proj = RowParallelLinear(size, cfg.hidden_size, bias=variant.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu_and_mul(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, variant: Variant, layer: int, backend: AttentionBackend):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, variant, layer, backend)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg, variant)

    def forward(self, hidden, residual, cos, sin):
        if residual is None:
            hidden, residual = self.input_layernorm(hidden), hidden
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(hidden, cos, sin)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class DecoderModel(nn.Module):
    def __init__(self, cfg: ModelConfig, variant: Variant, backend: AttentionBackend):
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        self.layers = nn.ModuleList(DecoderLayer(cfg, variant, i, backend) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.fused_decode = fusable(variant)      # one-token forwards as fused weight reads

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.fused_decode and (hidden := decode_one(self, input_ids, positions)) is not None:
            return hidden
        hidden, residual = self.embed_tokens(input_ids), None
        cos, sin = (t.to(hidden.dtype) for t in self.rotary(positions))     # cast once, not in every layer
        for layer in self.layers:
            hidden, residual = layer(hidden, residual, cos, sin)
        hidden, _ = self.norm(hidden, residual)
        return hidden


class DecoderForCausalLM(nn.Module, ABC):
    """Base of every family. `packed_modules` maps a checkpoint's separate projections onto our
    fused parameters: checkpoint name part -> (our name part, shard)."""

    packed_modules = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }

    @staticmethod
    @abstractmethod
    def variant(cfg: ModelConfig) -> Variant:
        """Which projections carry a bias and whether q/k are normalised, for this family."""

    def __init__(self, cfg: ModelConfig, backend: AttentionBackend):
        super().__init__()
        self.config = cfg
        self.model = DecoderModel(cfg, self.variant(cfg), backend)
        self.lm_head = ParallelLMHead(cfg.vocab_size, cfg.hidden_size)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Hidden states [tokens, hidden] of a packed batch; the backend must be prepared for it."""
        return self.model(input_ids, positions)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def logits_into(self, input_ids: torch.Tensor, positions: torch.Tensor, out: torch.Tensor) -> None:
        """The forward and its logits, written to `out` ([tokens, vocab] float32); the backend must be
        prepared. A one-token decode folds the final norm and this write into its logits product."""
        if not decode_logits(self, input_ids, positions, out):
            out.copy_(self.compute_logits(self.forward(input_ids, positions)))
