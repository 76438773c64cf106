"""gateway/api/jsonio.py reads and refuses what the standard library does, and writes the same JSON
(compact UTF-8), whether or not orjson takes the input itself."""
from __future__ import annotations

import json
import random
import re

import pytest

from gateway.api import jsonio

READ = [b'{"a": [1, 2.5, "x\\u00e9"], "b": null}',
        b'{"temperature": NaN}',                              # stdlib-only: NaN literal
        b'{"seed": 123456789012345678901234567890}',          # past 64 bits: an int, not a float
        b'{"seed": 18446744073709551616, "b": -9223372036854775809}',
        '{"seed": 123456789012345678901234567890}',           # text, not bytes
        b'{"s": "\\ud800"}',                                  # lone surrogate
        b'{"a": 1e400}',                                      # float overflow: inf in the stdlib
        '{"k": "v"}'.encode("utf-16"),                        # UTF-16 with a BOM
        b'{"a": 1, "a": 2}']                                  # duplicate key: the last wins
REFUSED = [b"{", b'{"a": 1,}', b"\xff\xfe\xfd", b"[" * 5000 + b"]" * 5000, b""]


@pytest.mark.parametrize("raw", READ)
def test_reads_what_the_stdlib_reads(raw):
    got, want = jsonio.loads(raw), json.loads(raw)
    assert repr(got) == repr(want)                           # repr: NaN != NaN


@pytest.mark.parametrize("raw", REFUSED, ids=["cut", "trailing-comma", "bad-utf8", "deep", "empty"])
def test_refuses_what_the_stdlib_refuses(raw):
    with pytest.raises((ValueError, RecursionError)):
        json.loads(raw)
    with pytest.raises((ValueError, RecursionError)):
        jsonio.loads(raw)


@pytest.mark.parametrize("obj", [{"a": [1, 2.5, None, True], "é": "ü\n\"", "n": -3},
                                 {1: "int key"}, {"big": 2 ** 70}, []])
def test_writes_compact_utf8_as_the_stdlib_would(obj):
    assert jsonio.dumps(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def test_a_run_of_twenty_digits_is_found_as_the_regular_expression_finds_it():
    rng = random.Random(0)
    pattern = re.compile(rb"[0-9]{20}")
    for _ in range(2000):
        data = bytes(rng.choice(b"0123456789 /:a\x00\xff") for _ in range(rng.randrange(0, 60)))
        assert jsonio.long_digits(data) == (pattern.search(data) is not None), data
        assert jsonio.long_digits(data.decode("latin-1")) == (pattern.search(data) is not None)
