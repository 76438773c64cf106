"""The embedded default model: a small random-weight Qwen3 built once into the cache directory,
so `radixgate serve` runs with no checkpoint and no network (after the first tokenizer fetch, or
never with the trained-tokenizer fallback)."""
from __future__ import annotations

import fcntl
from pathlib import Path

from gateway.config import cache_dir
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS

DEFAULT_MODEL_NAME = "radixgate-demo-random-weights"
_VERSION = 1          # bump when the preset changes so stale caches are rebuilt


def default_model_dir(tokenizer: str = "auto") -> Path:
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"demo-qwen3-v{_VERSION}"
    with open(root / ".lock", "w") as lock:          # two servers starting at once build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / "config.json").is_file():
            make_model(PRESETS["demo-qwen3"], dest, tokenizer=tokenizer)
    return dest
