"""JSON on the request path: orjson where installed, the standard library otherwise, and the same
answers either way.

orjson takes only strict JSON (no NaN literals, integers within 64 bits, no lone surrogates, at most
1,024 levels); what it refuses goes to the standard library, so a body the stdlib reads (or refuses)
reads (or is refused) the same here. Output is compact UTF-8, as the stdlib's with
ensure_ascii=False and separators (",", ":"), except that orjson writes a NaN float as null where the
stdlib would write the invalid token NaN.
"""
from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:                         # pragma: no cover - orjson is a dependency, but optional
    orjson = None

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def loads(data: bytes | str) -> Any:
    """Raises ValueError (or RecursionError) where json.loads does."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(obj: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:                   # int keys, integers past 64 bits, lone surrogates
            pass
    return _encode(obj).encode()
