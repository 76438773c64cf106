"""Own model code for the supported families, and `load_model` from a Hugging Face directory."""
from __future__ import annotations

from pathlib import Path

import torch

from gateway.engine.attention import AttentionBackend
from gateway.engine.models.config import DTYPES, ModelConfig, ModelConfigError
from gateway.engine.models.decoder import DecoderForCausalLM
from gateway.engine.models.llama import LlamaForCausalLM, MistralForCausalLM
from gateway.engine.models.loader import CheckpointError, load_weights
from gateway.engine.models.qwen2 import Qwen2ForCausalLM
from gateway.engine.models.qwen3 import Qwen3ForCausalLM

ARCHITECTURES: dict[str, type[DecoderForCausalLM]] = {
    cls.__name__: cls for cls in (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)
}


def resolve_dtype(name: str, cfg: ModelConfig, device: torch.device) -> torch.dtype:
    """'auto' keeps the checkpoint's dtype, except that half precision on a CPU runs in float32."""
    if name != "auto":
        if name not in DTYPES:
            raise ModelConfigError(f"dtype {name!r} is not supported (supported: auto, {', '.join(DTYPES)})")
        return DTYPES[name]
    return torch.float32 if device.type == "cpu" else cfg.dtype


def build_model(cfg: ModelConfig, backend: AttentionBackend, device: torch.device,
                dtype: torch.dtype) -> DecoderForCausalLM:
    """An unloaded model: parameters allocated (uninitialised) directly on `device` in `dtype`."""
    if cfg.architecture not in ARCHITECTURES:
        raise ModelConfigError(f"architecture {cfg.architecture!r} is not supported "
                               f"(supported: {', '.join(ARCHITECTURES)})")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = ARCHITECTURES[cfg.architecture](cfg, backend)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def load_model(path: str | Path, cfg: ModelConfig, backend: AttentionBackend, device: torch.device,
               dtype: torch.dtype) -> DecoderForCausalLM:
    """The checkpoint at `path` (whose config is `cfg`) in our model code, ready to run."""
    model = build_model(cfg, backend, device, dtype)
    with torch.inference_mode():
        load_weights(model, path, device)
    return model


__all__ = ["ARCHITECTURES", "CheckpointError", "DecoderForCausalLM", "ModelConfig", "ModelConfigError",
           "build_model", "load_model", "resolve_dtype"]
