"""Llama 2 / 3 / 3.1 / 3.2 and Mistral: `attention_bias` covers q/k/v/o, `mlp_bias` the MLP."""
from gateway.engine.models.config import ModelConfig
from gateway.engine.models.decoder import DecoderForCausalLM, Variant


class LlamaForCausalLM(DecoderForCausalLM):
    @staticmethod
    def variant(cfg: ModelConfig) -> Variant:
        return Variant(qkv_bias=cfg.attention_bias, o_bias=cfg.attention_bias, mlp_bias=cfg.mlp_bias)


class MistralForCausalLM(LlamaForCausalLM):
    """Llama's layout with an optional sliding attention window (ModelConfig.sliding_window)."""
