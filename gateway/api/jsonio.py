"""JSON on the request path: orjson where installed, the standard library otherwise, and the same
answers either way.

orjson takes only strict JSON (no NaN literals, no lone surrogates, at most 1,024 levels); what it
refuses goes to the standard library, so a body the stdlib reads (or refuses) reads (or is refused)
the same here. orjson reads an integer past 64 bits as a float, so text with a run of 20 digits goes
to the standard library straight away (a long digit run in a string only costs the slower reader). Output is compact UTF-8, as the stdlib's with
ensure_ascii=False and separators (",", ":"), except that orjson writes a NaN float as null where the
stdlib would write the invalid token NaN.
"""
from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:                         # pragma: no cover - orjson is a dependency, but optional
    orjson = None

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_LONG_DIGITS = re.compile(rb"[0-9]{20}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{20}")


def loads(data: bytes | str) -> Any:
    """Raises ValueError (or RecursionError) where json.loads does."""
    long_digits = _LONG_DIGITS_TEXT if isinstance(data, str) else _LONG_DIGITS
    if orjson is not None and long_digits.search(data) is None:
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
