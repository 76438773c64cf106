"""Upstreams and the router's settings, from a YAML or JSON file or from `radixgate serve` flags.

    upstreams:
      - name: openai
        base_url: https://api.example.com/v1
        api_key_env: EXAMPLE_API_KEY      # the key itself never sits in the file
        models: {gpt-small: gpt-4o-mini}  # served name -> upstream name (a list: the same names)
        timeout: 30                       # seconds to connect, and to wait for each part of the answer
        max_retries: 1                    # more attempts at this upstream once the others are used up
        supports_json_schema: true        # false: the schema goes in as an instruction and is validated here
        extensions: false                 # true for another radixgate: top_k, regex, choices, ... pass on
        weight: 1                         # share of load relative to the others
    router:
      affinity: true
      breaker_failures: 5
      breaker_cooldown: 10
      max_retry_wait: 5
      schema_retries: 2
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class UpstreamConfig:
    name: str
    base_url: str
    models: dict[str, str]
    api_key_env: str | None = None
    timeout: float = 60.0
    max_retries: int = 1
    supports_json_schema: bool = True
    extensions: bool = False
    weight: float = 1.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError(f"upstream {self.name!r}: no models")
        if self.timeout <= 0 or self.weight <= 0 or self.max_retries < 0:
            raise ValueError(f"upstream {self.name!r}: timeout and weight must be > 0, max_retries >= 0")


@dataclass(slots=True)
class RouterConfig:
    affinity: bool = True             # requests sharing a prompt prefix go to the same backend
    affinity_chars: int = 2048        # how much of the prompt's start makes the prefix key
    affinity_slack: int = 8           # the prefix's backend keeps it unless it has this many more in flight (and 2x)
    breaker_failures: int = 5         # consecutive failures that open a backend's circuit
    breaker_cooldown: float = 10.0    # seconds before a half-open probe
    max_retry_wait: float = 5.0       # longest Retry-After honoured; longer ones go back to the client
    backoff: float = 0.05             # first pause before retrying the same backend, doubling
    schema_retries: int = 2           # repair rounds for upstreams without json_schema support


@dataclass(slots=True)
class PoolConfig:
    upstreams: list[UpstreamConfig] = field(default_factory=list)
    router: RouterConfig = field(default_factory=RouterConfig)

    @property
    def served(self) -> list[str]:
        return sorted({m for u in self.upstreams for m in u.models})


def model_map(models: Any, where: str) -> dict[str, str]:
    if isinstance(models, str):
        models = [models]
    if isinstance(models, list) and all(isinstance(m, str) for m in models):
        return dict(m.split("=", 1) if "=" in m else (m, m) for m in models)
    if isinstance(models, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        return dict(models)
    raise ValueError(f"{where}: 'models' must map served names to upstream names (or list names)")


def known(cls: type, data: dict, where: str) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    return data


def load_pool(path: str | Path) -> PoolConfig:
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("upstreams"), list) or not data["upstreams"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'upstreams' list")
    known(PoolConfig, data, str(path))
    ups = []
    for i, u in enumerate(data["upstreams"]):
        where = f"{path}: upstreams[{i}]"
        if not isinstance(u, dict) or not isinstance(u.get("base_url"), str):
            raise ValueError(f"{where}: needs a base_url")
        if "api_key" in u:
            raise ValueError(f"{where}: put the key in an environment variable and name it in api_key_env")
        u = known(UpstreamConfig, {"name": u.get("name", f"upstream{i}"), **u}, where)
        ups.append(UpstreamConfig(**{**u, "models": model_map(u.get("models"), where)}))
    if len({u.name for u in ups}) != len(ups):
        raise ValueError(f"{path}: upstream names must be unique")
    router = RouterConfig(**known(RouterConfig, data.get("router") or {}, f"{path}: router"))
    return PoolConfig(ups, router)


def pool_from_flags(urls: list[str], models: list[str], api_key_env: str | None = None,
                    timeout: float | None = None, supports_json_schema: bool = True,
                    extensions: bool = False) -> PoolConfig:
    """`--upstream URL` (repeatable), each serving every `--upstream-model NAME` (or SERVED=UPSTREAM)."""
    mapping = model_map(models, "--upstream-model")
    ups = [UpstreamConfig(f"upstream{i}", url, mapping, api_key_env, timeout or 60.0,
                          supports_json_schema=supports_json_schema, extensions=extensions)
           for i, url in enumerate(urls)]
    return PoolConfig(ups)


def discover_models(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """The model ids an upstream lists at GET /models (for `--upstream` without `--upstream-model`)."""
    import httpx
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    r.raise_for_status()
    return [m["id"] for m in r.json()["data"]]
