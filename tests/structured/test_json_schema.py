"""JSON Schema -> Grammar against jsonschema (the schema's own draft, 2020-12 by default) as the
reference. The hard rule: text the grammar accepts is valid. Completeness is measured (MaskBench)
and asserted where the compiler promises it (hypothesis schemas rendered in schema order)."""
from __future__ import annotations

import json
import random
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jsonschema import validators

from gateway.structured.json_schema import UnsupportedSchema, compile_json_schema, json_object_grammar
from gateway.structured.matcher import Matcher

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschemabench"
MASKBENCH_COMPILED_FLOOR = 212          # of 250
RAW_COMPILED_FLOOR = 329                # of 400 parseable


def accepts(grammar, text: str) -> bool:
    m = Matcher(grammar)
    return m.advance(text.encode()) and m.accepting


def validator(schema):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return validators.validator_for(schema, default=validators.Draft202012Validator)(schema)


def compile_ok(schema, **kw):
    grammar = compile_json_schema(schema, **kw)
    grammar.check()
    return grammar


# -- real-world schemas ---------------------------------------------------------------------------

def test_maskbench_accepts_only_valid_instances():
    files = sorted((DATA / "maskbench").glob("*/*.json"))
    if not files:
        pytest.skip(f"{DATA / 'maskbench'} is missing")
    counts, refused, times = Counter(), Counter(), []
    invalid_accepted = []
    for path in files:
        case = json.loads(path.read_text())
        schema = case["schema"]
        start = time.perf_counter()
        try:
            grammar = compile_ok(schema)
        except UnsupportedSchema as err:
            refused[err.keyword] += 1
            continue
        times.append(time.perf_counter() - start)
        check = validator(schema)
        for test in case["tests"]:
            try:
                valid = check.is_valid(test["data"])
            except Exception:               # jsonschema itself cannot evaluate it (bad regex, ...)
                counts["reference error"] += 1
                continue
            accepted = accepts(grammar, json.dumps(test["data"]))
            counts[("valid" if valid else "invalid", "accepted" if accepted else "rejected")] += 1
            if accepted and not valid:
                invalid_accepted.append((path.name, json.dumps(test["data"])[:200]))
    times.sort()
    print(f"\nMaskBench: {len(times)} schemas compiled, {sum(refused.values())} refused {dict(refused.most_common())}")
    print(f"  compile p50 {times[len(times) // 2] * 1e3:.1f} ms, p99 {times[int(len(times) * 0.99)] * 1e3:.1f} ms")
    print(f"  valid accepted {counts['valid', 'accepted']}, valid rejected {counts['valid', 'rejected']}, "
          f"invalid rejected {counts['invalid', 'rejected']}, invalid accepted {counts['invalid', 'accepted']}")
    assert not invalid_accepted, invalid_accepted
    assert len(times) >= MASKBENCH_COMPILED_FLOOR


def sample_text(grammar, rng: random.Random, soft: int = 200, hard: int = 4000) -> bytes | None:
    """A random text the grammar accepts: random bytes, steered towards closing past `soft`."""
    m, out = Matcher(grammar), bytearray()
    while len(out) < hard:
        if m.accepting and rng.random() < (0.3 if len(out) < soft else 1.0):
            return bytes(out)
        options = m.next_bytes()
        if not options:
            return bytes(out) if m.accepting else None
        if len(out) >= soft and rng.random() < 0.9:
            for preferred in (b'"', b"}", b"]", b"0123456789", b"ntf"):
                closing = [b for b in options if b in preferred]
                if closing:
                    options = closing
                    break
        byte = rng.choice(options)
        m.configs = m.step(m.configs, byte)
        out.append(byte)
    return None


def test_raw_schemas_sampled_texts_validate():
    files = sorted((DATA / "schemas").glob("*/*.json"))
    if not files:
        pytest.skip(f"{DATA / 'schemas'} is missing")
    rng, compiled, refused, samples, invalid = random.Random(7), 0, 0, 0, []
    for i, path in enumerate(files):
        try:
            schema = json.loads(path.read_text())
        except ValueError:
            continue
        try:
            grammar = compile_ok(schema)
        except UnsupportedSchema:
            refused += 1
            continue
        compiled += 1
        if i % 3:
            continue                         # sample a third of them (time)
        check = validator(schema)
        for _ in range(2):
            text = sample_text(grammar, rng)
            if text is None:
                continue
            samples += 1
            data = json.loads(text)
            try:
                if not check.is_valid(data):
                    invalid.append((path.name, text[:200]))
            except Exception:
                pass
    print(f"\nraw schemas: {compiled} compiled, {refused} refused, {samples} sampled texts")
    assert not invalid, invalid
    assert compiled >= RAW_COMPILED_FLOOR
