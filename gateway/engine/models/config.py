"""ModelConfig: the part of a checkpoint's config.json our model code reads, validated up front.

Reads both the classic layout (`rope_theta`, `rope_scaling`, `torch_dtype`) and the transformers-5
layout (`rope_parameters`, `dtype`), so checkpoints saved by either load. Anything we would have to
ignore to run the model (an unknown rope type, a non-SiLU activation) is refused with a message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SUPPORTED_ROPE = ("default", "linear", "llama3")


class ModelConfigError(ValueError):
    """The checkpoint's config.json describes something we cannot run exactly."""


@dataclass(slots=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None          # None, or {"rope_type": "linear" | "llama3", ...}
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool               # the family decides which projections this applies to
    mlp_bias: bool
    sliding_window: int | None         # Mistral-style local attention, None when global
    dtype: torch.dtype
    raw: dict

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"num_attention_heads ({self.num_heads}) must be a multiple of num_key_value_heads ({self.num_kv_heads})")

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        file = Path(path) / "config.json"
        if not file.is_file():
            raise ModelConfigError(f"{path} has no config.json: not a Hugging Face checkpoint directory")
        return cls.from_dict(json.loads(file.read_text()))

    @classmethod
    def from_dict(cls, c: dict) -> "ModelConfig":
        archs = c.get("architectures") or []
        if len(archs) != 1:
            raise ModelConfigError(f"config.json must name exactly one architecture, got {archs}")
        act = c.get("hidden_act", "silu")
        if act != "silu":
            raise ModelConfigError(f"hidden_act {act!r} is not supported (only 'silu')")
        if c.get("use_sliding_window"):
            raise ModelConfigError("use_sliding_window=true (Qwen2 per-layer windows) is not supported")
        heads = c["num_attention_heads"]
        rope = c.get("rope_parameters") or {}
        theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
        scaling = c.get("rope_scaling") or {k: v for k, v in rope.items() if k != "rope_theta"}
        scaling = dict(scaling) if scaling else None
        if scaling is not None:
            kind = scaling.setdefault("rope_type", scaling.pop("type", "default"))
            if kind not in SUPPORTED_ROPE:
                raise ModelConfigError(f"rope type {kind!r} is not supported (supported: {', '.join(SUPPORTED_ROPE)})")
            if kind == "default":
                scaling = None
        dtype_name = c.get("torch_dtype") or c.get("dtype") or "float32"
        if dtype_name not in DTYPES:
            raise ModelConfigError(f"dtype {dtype_name!r} is not supported (supported: {', '.join(DTYPES)})")
        arch = archs[0]
        return cls(
            architecture=arch,
            vocab_size=c["vocab_size"],
            hidden_size=c["hidden_size"],
            intermediate_size=c["intermediate_size"],
            num_layers=c["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or c["hidden_size"] // heads,
            rms_norm_eps=c.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position_embeddings=c.get("max_position_embeddings", 4096),
            tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
            attention_bias=bool(c.get("attention_bias", False)),
            mlp_bias=bool(c.get("mlp_bias", False)),
            sliding_window=c.get("sliding_window") if arch == "MistralForCausalLM" else None,
            dtype=DTYPES[dtype_name],
            raw=c,
        )
