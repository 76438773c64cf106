"""API keys: which configured key a request's `Authorization: Bearer ...` header holds.

Callers get a key id (`key-` + 8 hex of its sha256), never the key, which is safe to use as a
radix-cache namespace and as a metrics or rate-limit label.

A key that passed the check is remembered (at most one entry per configured key: only a key whose digest
matched is entered), so a returning client's key costs one dict lookup instead of a SHA-256 (~40 us of
a proxied request with cold caches). The lookup says nothing a wrong key could use: a miss costs the
string's hash (its length only) and goes on to the full digest comparison; strings are compared only when
their randomised 64-bit hashes match.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from gateway.api.errors import ApiError
from gateway.config import ServeConfig

ANONYMOUS = "anonymous"

MISSING_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
               "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can get an API key from the "
               "operator of this gateway.")


def key_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def mask(key: str) -> str:
    """What OpenAI echoes of a wrong key: enough to recognise it, too little to reuse it."""
    return f"{key[:5]}***{key[-2:]}" if len(key) >= 10 else "***"


def read_key_file(path: Path) -> list[str]:
    """One key per line; blank lines and '#' comments (whole-line or trailing) are skipped."""
    keys = []
    for line in path.read_text().splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.append(key)
    return keys


class KeyStore:
    def __init__(self, keys: Iterable[str]):
        unique = list(dict.fromkeys(k for k in keys if k))
        # Keys are compared as sha256 digests, so every comparison has the same length and the
        # time it takes says nothing about a configured key's length either.
        self._keys = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in unique]
        self._passed: dict[str, str] = {}      # presented key -> key id, for keys that matched
        ids = [kid for _, kid in self._keys]
        if len(set(ids)) != len(ids):
            # Two tenants sharing an id would share a radix-cache namespace and a rate limit.
            raise ValueError("two configured API keys share a key id; replace one of them")

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> KeyStore:
        keys = list(cfg.api_keys)
        if cfg.api_keys_file:
            keys += read_key_file(Path(cfg.api_keys_file))
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None) -> str:
        """The key id for an `Authorization` header value, or ApiError 401; `anonymous` without keys."""
        if not self._keys:
            return ANONYMOUS
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, MISSING_KEY, code="invalid_api_key")
        found = self._passed.get(presented)
        if found is not None:
            return found
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for configured, kid in self._keys:       # every key is compared: no early exit to time
            if hmac.compare_digest(digest, configured):
                found = kid
        if found is None:
            raise ApiError(401, f"Incorrect API key provided: {mask(presented)}. You can find your API key "
                                "with the operator of this gateway.", code="invalid_api_key")
        if len(self._passed) < len(self._keys):
            self._passed[presented] = found
        return found
