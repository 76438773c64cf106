"""Qwen3: per-head RMSNorm on q and k before RoPE; `attention_bias` covers q/k/v/o."""
from gateway.engine.models.config import ModelConfig
from gateway.engine.models.decoder import DecoderForCausalLM, Variant


class Qwen3ForCausalLM(DecoderForCausalLM):
    @staticmethod
    def variant(cfg: ModelConfig) -> Variant:
        return Variant(qkv_bias=cfg.attention_bias, o_bias=cfg.attention_bias, qk_norm=True)
