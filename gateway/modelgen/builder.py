"""`radixgate make-model`: a random-weight model in the real Hugging Face layout.

The directory holds config.json, model.safetensors (or shards with an index), tokenizer.json,
tokenizer_config.json with its chat template, and generation_config.json, so transformers and our
own loader read it exactly as they read a downloaded checkpoint. Weights are written from the
checkpoint's own names, independently of our model code, so loading them tests the name table.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer as RawTokenizer

from gateway.modelgen.shapes import ModelShape
from gateway.modelgen.tokenizer_files import special_token_ids, write_tokenizer_files

ARCHITECTURE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def model_config(shape: ModelShape, vocab_size: int, dtype: str, tokens: dict) -> dict:
    head_dim = shape.head_dim or shape.hidden_size // shape.num_heads
    cfg = {
        "architectures": [ARCHITECTURE[shape.family]],
        "model_type": shape.family,
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": shape.rope_theta,
        "rope_scaling": shape.rope_scaling,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "torch_dtype": dtype,
        **tokens,
        "initializer_range": 0.02,
        "use_cache": True,
    }
    if shape.family == "llama":
        cfg |= {"attention_bias": shape.attention_bias, "mlp_bias": False, "pretraining_tp": 1}
    elif shape.family == "qwen3":
        cfg |= {"attention_bias": shape.attention_bias, "use_sliding_window": False, "sliding_window": None}
    else:
        cfg |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": shape.num_layers}
    return cfg


def checkpoint_tensors(shape: ModelShape, vocab_size: int, dtype: torch.dtype, seed: int):
    """(name, tensor) in checkpoint naming; small random weights so activations stay finite."""
    gen = torch.Generator().manual_seed(seed)
    head_dim = shape.head_dim or shape.hidden_size // shape.num_heads
    h, q, kv = shape.hidden_size, shape.num_heads * head_dim, shape.num_kv_heads * head_dim

    def normal(*size, std=0.02):
        return (torch.randn(*size, generator=gen) * std).to(dtype)

    def norm_weight(size):
        return (1.0 + torch.randn(size, generator=gen) * 0.1).to(dtype)

    qkv_bias = shape.family == "qwen2" or shape.attention_bias
    yield "model.embed_tokens.weight", normal(vocab_size, h, std=h ** -0.5)
    for i in range(shape.num_layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", norm_weight(h)
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            yield p + f"self_attn.{name}.weight", normal(rows, h, std=h ** -0.5)
            if qkv_bias:
                yield p + f"self_attn.{name}.bias", normal(rows, std=0.1)
        yield p + "self_attn.o_proj.weight", normal(h, q, std=q ** -0.5)
        if shape.attention_bias and shape.family != "qwen2":
            yield p + "self_attn.o_proj.bias", normal(h, std=0.1)
        if shape.family == "qwen3":
            yield p + "self_attn.q_norm.weight", norm_weight(head_dim)
            yield p + "self_attn.k_norm.weight", norm_weight(head_dim)
        yield p + "post_attention_layernorm.weight", norm_weight(h)
        yield p + "mlp.gate_proj.weight", normal(shape.intermediate_size, h, std=h ** -0.5)
        yield p + "mlp.up_proj.weight", normal(shape.intermediate_size, h, std=h ** -0.5)
        yield p + "mlp.down_proj.weight", normal(h, shape.intermediate_size, std=shape.intermediate_size ** -0.5)
    yield "model.norm.weight", norm_weight(h)
    if not shape.tie_word_embeddings:
        yield "lm_head.weight", normal(vocab_size, h, std=h ** -0.5)


def save_weights(tensors, dest: Path, shards: int, total_bytes: int) -> None:
    if shards <= 1:
        save_file(dict(tensors), dest / "model.safetensors", metadata={"format": "pt"})
        return
    limit, shard, size, done, weight_map = total_bytes / shards, {}, 0, [], {}

    def flush():
        name = f"model-{len(done) + 1:05d}-of-{shards:05d}.safetensors"
        save_file(shard, dest / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        done.append(name)

    for name, tensor in tensors:
        shard[name] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= limit * (len(done) + 1) and len(done) < shards - 1:
            flush()
            shard = {}
    if shard:
        flush()
    for i, old in enumerate(done):       # rename so the "-of-N" count is the real one
        new = f"model-{i + 1:05d}-of-{len(done):05d}.safetensors"
        (dest / old).rename(dest / new)
        weight_map = {k: (new if v == old else v) for k, v in weight_map.items()}
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def make_model(shape: ModelShape, dest: str | Path, dtype: str = "float32", seed: int = 0,
               tokenizer: str = "auto", shards: int = 1, weights: bool = True) -> Path:
    """Write the model into `dest` (built in a temporary sibling, then renamed into place). Without
    `weights`, only config and tokenizer files: for runners that draw random weights on the device."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        source = write_tokenizer_files(shape.family, tmp, tokenizer)
        raw = RawTokenizer.from_file(str(tmp / "tokenizer.json"))
        vocab_size = -(-raw.get_vocab_size(with_added_tokens=True) // 64) * 64
        tokens = special_token_ids(tmp)
        cfg = model_config(shape, vocab_size, dtype, tokens)
        cfg["radixgate"] = {"random_weights": True, "seed": seed, "tokenizer": source}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        gen_cfg = {**tokens, "do_sample": False}
        (tmp / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2))
        if weights:
            tensors = list(checkpoint_tensors(shape, vocab_size, DTYPE_NAMES[dtype], seed))
            save_weights(tensors, tmp, shards, sum(t.numel() * t.element_size() for _, t in tensors))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
