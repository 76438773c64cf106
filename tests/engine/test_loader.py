"""A checkpoint that does not match its config fails to load with a message naming the tensor."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gateway.engine.attention import TorchAttention
from gateway.engine.kv_pool import KVPool
from gateway.engine.models import CheckpointError, ModelConfig, ModelConfigError, load_model
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_model(PRESETS["tiny-qwen3"], tmp_path_factory.mktemp("ckpt") / "m", tokenizer="trained")


def load(path):
    cfg = ModelConfig.from_dir(path)
    pool = KVPool(cfg.num_layers, 8, cfg.num_kv_heads, cfg.head_dim, torch.float32, "cpu")
    return load_model(path, cfg, TorchAttention(pool), torch.device("cpu"), torch.float32)


def edited(good, tmp_path, edit):
    """A copy of the good checkpoint with its tensors passed through `edit`."""
    path = tmp_path / "edited"
    path.mkdir()
    for f in good.iterdir():
        if f.name != "model.safetensors":
            (path / f.name).write_bytes(f.read_bytes())
    tensors = load_file(good / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors")
    return path


def test_good_checkpoint_loads(good):
    assert load(good).config.architecture == "Qwen3ForCausalLM"


def test_missing_tensor_is_named(good, tmp_path):
    path = edited(good, tmp_path, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor.*model\.layers\.1\.self_attn\.k_proj\.weight"):
        load(path)


def test_renamed_tensor_is_named(good, tmp_path):
    def rename(t):
        t["model.layers.0.mlp.gate_projection.weight"] = t.pop("model.layers.0.mlp.gate_proj.weight")
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.mlp\.gate_projection\.weight'"):
        load(edited(good, tmp_path, rename))


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                                  "model.embed_tokens.weight", "model.layers.0.self_attn.q_norm.weight"])
def test_wrongly_shaped_tensor_is_named(good, tmp_path, name):
    def reshape(t):
        t[name] = torch.zeros(*[n + 1 for n in t[name].shape])
    with pytest.raises(CheckpointError, match=rf"tensor '{name}'.*has shape .* expected"):
        load(edited(good, tmp_path, reshape))


def test_index_naming_a_missing_shard_is_an_error(tmp_path):
    path = make_model(PRESETS["tiny-qwen2"], tmp_path / "sharded", tokenizer="trained", shards=2)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        load(path)


def test_no_weights_is_an_error(good, tmp_path):
    (tmp_path / "config.json").write_text((good / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        load(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn'"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"architectures": ["GPT2LMHeadModel"]}, "architecture 'GPT2LMHeadModel'"),
    ({"num_key_value_heads": 3}, "multiple of num_key_value_heads"),
])
def test_unsupported_config_is_refused_by_name(good, tmp_path, change, message):
    cfg = json.loads((good / "config.json").read_text()) | change
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match=message):
        load(tmp_path)


def test_transformers5_config_layout_is_read(good):
    cfg = json.loads((good / "config.json").read_text())
    theta = cfg.pop("rope_theta")
    cfg.pop("rope_scaling")
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    cfg["dtype"] = cfg.pop("torch_dtype")
    parsed = ModelConfig.from_dict(cfg)
    assert parsed.rope_theta == theta and parsed.rope_scaling is None and parsed.dtype == torch.float32
