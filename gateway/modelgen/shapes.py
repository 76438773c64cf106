"""Model shapes for `radixgate make-model`: tiny ones for tests, and the real families' shapes
(random weights) for benchmarks on a GPU."""
from __future__ import annotations

from dataclasses import dataclass, replace

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}


@dataclass(frozen=True, slots=True)
class ModelShape:
    family: str                          # llama | qwen2 | qwen3
    hidden_size: int = 64
    intermediate_size: int = 160
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int | None = None          # None: hidden_size // num_heads
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    attention_bias: bool = False         # llama/qwen3 only; qwen2 always has q/k/v bias

    def with_overrides(self, **overrides) -> "ModelShape":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


FAMILIES = ("llama", "qwen2", "qwen3")

PRESETS: dict[str, ModelShape] = {
    "tiny-llama": ModelShape("llama", rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=False,
                            max_position_embeddings=16384),
    "tiny-qwen2": ModelShape("qwen2", rope_theta=1000000.0),
    "tiny-qwen3": ModelShape("qwen3", head_dim=32, rope_theta=1000000.0),
    "demo-qwen3": ModelShape("qwen3", hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4,
                             num_kv_heads=2, head_dim=32, rope_theta=1000000.0),
    "llama-3.2-1b": ModelShape("llama", 2048, 8192, 16, 32, 8, 64, True, 131072, 500000.0, LLAMA3_ROPE),
    "llama-3.1-8b": ModelShape("llama", 4096, 14336, 32, 32, 8, 128, False, 131072, 500000.0,
                               {**LLAMA3_ROPE, "factor": 8.0}),
    "qwen2.5-0.5b": ModelShape("qwen2", 896, 4864, 24, 14, 2, 64, True, 32768, 1000000.0),
    "qwen3-0.6b": ModelShape("qwen3", 1024, 3072, 28, 16, 8, 128, True, 40960, 1000000.0),
}
