"""Settings shared by the CLI and the server: flags and RADIXGATE_* environment variables."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    """Where radixgate keeps what it builds or fetches once: tokenizer files, the default model."""
    root = os.environ.get("RADIXGATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "radixgate")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(slots=True)
class ServeConfig:
    model: str | None = None          # a checkpoint directory; None means the embedded demo model
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    dtype: str = "auto"               # auto | float32 | float16 | bfloat16
    served_model_name: str | None = None
    api_keys: tuple[str, ...] = ()        # none: no authentication
    api_keys_file: str | None = None      # one key per line ('#' comments); merged with api_keys
    max_body_bytes: int = 8 << 20
    requests_per_minute: int = 0          # per API key (or per client address without keys); 0: unlimited
    tokens_per_minute: int = 0            # prompt + completion tokens per key; 0: unlimited
    kv_slots: int = 16384
    max_running: int = 256
    attention: str = "auto"               # auto | triton | torch
    cuda_graphs: bool = True              # replay decode steps from CUDA graphs (CUDA + Triton attention)
    mem_fraction: float = 0.0             # > 0: weights + KV cache take this share of GPU memory (not kv_slots)
    drain_timeout: float = 300.0          # on SIGTERM, seconds requests in flight may take to finish
    access_log: bool = False              # a log line per request (uvicorn's): ~0.15 ms each; /metrics counts them
    radix_cache: bool = True              # false: no prefix reuse across requests (the ablation baseline)
    jump_forward: bool = True             # false: constrained decoding samples every forced token too
    random_weights: bool = False          # draw weights on the device instead of reading them (benchmarks)
    decode_steps: int = 8                 # decode steps per host round at most (engine/decode_window.py)
    # Serving upstream APIs instead of the local engine (gateway/spec_api/upstream_config.py):
    upstreams_config: str | None = None   # a YAML/JSON file of upstreams and router settings
    upstreams: tuple[str, ...] = ()       # base URLs, each serving every one of upstream_models
    upstream_models: tuple[str, ...] = () # NAME or SERVED=UPSTREAM; none: the first upstream's /models
    upstream_api_key_env: str | None = None   # the environment variable holding the upstreams' key
    upstream_timeout: float = 60.0        # seconds to connect, and to wait for each part of an answer
    upstream_json_schema: bool = True     # false: schemas go in as instructions and are validated here
    upstream_extensions: bool = False     # true when the upstreams are radixgates (top_k, regex, ... pass on)

    @property
    def proxies(self) -> bool:
        return bool(self.upstreams or self.upstreams_config)

    @classmethod
    def from_env(cls, **flags) -> ServeConfig:
        """Flags win over RADIXGATE_<FIELD> environment variables, which win over defaults."""
        cfg = cls()
        for name in cls.__dataclass_fields__:
            env = os.environ.get(f"RADIXGATE_{name.upper()}")
            if env is not None:
                default = getattr(cfg, name)
                setattr(cfg, name, tuple(env.split(",")) if isinstance(default, tuple) else
                        env if default is None else env.lower() in ("1", "true", "yes", "on")
                        if isinstance(default, bool) else type(default)(env))
            if flags.get(name) is not None:
                setattr(cfg, name, flags[name])
        return cfg
