"""Qwen2 / Qwen2.5: Llama's layout with a bias on q, k and v (never on o or the MLP)."""
from gateway.engine.models.config import ModelConfig
from gateway.engine.models.decoder import DecoderForCausalLM, Variant


class Qwen2ForCausalLM(DecoderForCausalLM):
    @staticmethod
    def variant(cfg: ModelConfig) -> Variant:
        return Variant(qkv_bias=True)
