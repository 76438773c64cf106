"""Fixtures for the engine tests: tiny random-weight checkpoints of every supported family."""
from __future__ import annotations

import json
import shutil

import pytest

from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    dirs = {name: make_model(PRESETS[f"tiny-{name}"], root / name, tokenizer="trained") for name in ("llama", "qwen2", "qwen3")}
    # Llama with biases on every attention projection, and Mistral with a window shorter than the prompts.
    dirs["llama-bias"] = make_model(PRESETS["tiny-llama"].with_overrides(attention_bias=True), root / "llama-bias",
                                    tokenizer="trained", seed=1)
    mistral = root / "mistral"
    shutil.copytree(dirs["llama"], mistral)
    cfg = json.loads((mistral / "config.json").read_text())
    cfg |= {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 8, "rope_scaling": None}
    (mistral / "config.json").write_text(json.dumps(cfg))
    dirs["mistral"] = mistral
    return dirs
