"""JSON Schema -> Grammar against jsonschema (the schema's own draft, 2020-12 by default) as the
reference. The hard rule: text the grammar accepts is valid. Completeness is measured (MaskBench)
and asserted where the compiler promises it (hypothesis schemas rendered in schema order)."""
from __future__ import annotations

import json
import os
import random
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from jsonschema import validators

from gateway.structured.json_schema import UnsupportedSchema, compile_json_schema
from gateway.structured.matcher import Matcher

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschemabench"
MASKBENCH_COMPILED_FLOOR = 213          # of 250
RAW_COMPILED_FLOOR = 329                # of 400 parseable
RAW_SAMPLES_FLOOR = 60
EXAMPLES = int(os.environ.get("JSON_SCHEMA_EXAMPLES", 150))     # generated schemas (raise it to fuzz longer)


def accepts(grammar, text: str) -> bool:
    m = Matcher(grammar)
    return m.advance(text.encode()) and m.accepting


class validator:
    """jsonschema's validator for the schema's own draft (2020-12 when it names none), quiet."""

    def __init__(self, schema):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._validator = validators.validator_for(schema, default=validators.Draft202012Validator)(schema)

    def is_valid(self, instance) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._validator.is_valid(instance)


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


def sample_text(grammar, rng: random.Random, soft: int = 100, hard: int = 600) -> bytes | None:
    """A random text the grammar accepts (None: gave up): random bytes, then past `soft` the
    closing byte that leaves the shallowest call stack (ends a string, an object, an array)."""
    m, out = Matcher(grammar), bytearray()
    while len(out) < hard:
        if m.accepting and rng.random() < (0.3 if len(out) < soft else 1.0):
            return bytes(out)
        options = m.next_bytes()
        if not options:
            return bytes(out) if m.accepting else None
        if len(out) >= soft:
            closing = [b for b in options if b in b'"}]'] or [b for b in options if b in b"0123456789ntf"]
            options = [min(closing, key=lambda b: min(map(len, m.step(m.configs, b))))] if closing else options
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
        if i % 5:
            continue                         # sample a fifth of them (time)
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
    print(f"\nraw schemas: {compiled} compiled, {refused} refused, {samples} sampled texts, all valid")
    assert not invalid, invalid
    assert compiled >= RAW_COMPILED_FLOOR and samples >= RAW_SAMPLES_FLOOR


# -- generated schemas and instances --------------------------------------------------------------

NAMES = ["a", "b", "key", "é", "x y", 'q"', "/"]
PATTERNS = ["^[a-z]+$", "^[0-9]{2,4}$", "ab", "^x", "y$", "^(foo|bar)$", "[A-Z]", "^\\S*$", "^[^\\d]*$"]
FORMATS = ["date", "time", "date-time", "uuid", "email", "ipv4", "ipv6", "uri", "hostname"]
SIMPLE_FLOATS = [-2.5, -0.5, 0.25, 1.5, 3.75, 10.125]
TEXTS = st.text(st.sampled_from(list("abxyzAB09 -_/\"\\\n\té東😀") + ["\u2028", "\x00"]), max_size=7)
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-60, 60) | st.sampled_from(SIMPLE_FLOATS) | TEXTS,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner,
                                                                                  max_size=3), max_leaves=6)


def leaf_schemas():
    bound = st.integers(-40, 40) | st.sampled_from(SIMPLE_FLOATS)
    integer = st.fixed_dictionaries({"type": st.just("integer")}, optional={
        "minimum": st.integers(-40, 40), "maximum": st.integers(-40, 40), "exclusiveMinimum": st.integers(-40, 40),
        "exclusiveMaximum": st.integers(-40, 40), "multipleOf": st.integers(2, 5)})
    number = st.fixed_dictionaries({"type": st.just("number")}, optional={
        "minimum": bound, "maximum": bound, "exclusiveMinimum": bound, "exclusiveMaximum": bound})
    string = st.fixed_dictionaries({"type": st.just("string")}, optional={
        "minLength": st.integers(0, 3), "maxLength": st.integers(0, 6), "pattern": st.sampled_from(PATTERNS)})
    enum = st.lists(st.none() | st.booleans() | st.integers(-3, 3) | TEXTS | st.lists(st.integers(0, 2), max_size=2)
                    | st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2), max_size=1),
                    min_size=1, max_size=4).map(lambda v: {"enum": v})
    const = VALUES.filter(lambda v: not isinstance(v, dict) or len(v) <= 1).map(lambda v: {"const": v})
    kinds = st.sampled_from([{"type": "null"}, {"type": "boolean"}, {}, {"type": ["string", "null"]}])
    return kinds | integer | number | string | enum | const


def schemas():
    def extend(inner):
        obj = st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)},
            optional={"additionalProperties": st.booleans() | inner, "patternProperties": st.just({"^x": {"type": "integer"}}),
                      "minProperties": st.integers(0, 2), "maxProperties": st.integers(1, 3),
                      "propertyNames": st.just({"maxLength": 2}), "dependentRequired": st.just({"a": ["b"]})}).flatmap(
            lambda o: st.lists(st.sampled_from(sorted(o["properties"]) or ["a"]), unique=True).map(
                lambda req: {**o, "required": req} if req else o))
        arr = st.fixed_dictionaries({"type": st.just("array")}, optional={
            "items": inner | st.just(False), "prefixItems": st.lists(inner, max_size=2),
            "minItems": st.integers(0, 2), "maxItems": st.integers(0, 4)})
        combos = st.lists(inner, min_size=2, max_size=3).map(lambda xs: {"anyOf": xs}) | \
            st.tuples(obj, obj).map(lambda ab: {"allOf": list(ab)}) | \
            st.just({"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "null"}]})
        recursive = st.just({"type": ["object", "null"], "properties": {"a": {"type": "integer"}, "next": {"$ref": "#"}}})
        return obj | arr | combos | recursive
    tree = st.recursive(leaf_schemas(), extend, max_leaves=5)
    return tree | tree.map(lambda x: {"$defs": {"d": x}, "$ref": "#/$defs/d"})


def instances_of(schema):
    """Values shaped like the schema wants (often valid), with properties in schema order."""
    if not isinstance(schema, dict):
        return VALUES
    if "$ref" in schema:
        return instances_of(schema["$defs"]["d"]) if "$defs" in schema else VALUES
    if "const" in schema:
        return st.just(schema["const"]) | VALUES
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | VALUES
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([instances_of(s) for s in schema[key]])
    if "allOf" in schema:
        parts = [instances_of(s) for s in schema["allOf"]]
        return st.tuples(*parts).map(lambda vs: {k: v for d in vs if isinstance(d, dict) for k, v in d.items()}
                                     if all(isinstance(d, dict) for d in vs) else vs[0])
    t = schema.get("type")
    if t == "object" or t == ["object", "null"]:
        props = schema["properties"]
        fields = {k: instances_of(s) for k, s in props.items()}
        extra = st.dictionaries(st.sampled_from(["zz", "x1", "xy"]), VALUES, max_size=2)
        return st.tuples(st.fixed_dictionaries({}, optional=fields), extra).map(
            lambda fe: {**{k: fe[0][k] for k in props if k in fe[0]}, **fe[1]})
    if t == "array":
        items = schema.get("items", True)
        prefix = [instances_of(s) for s in schema.get("prefixItems", [])]
        rest = st.lists(VALUES if items is True or items is False else instances_of(items), max_size=3)
        return st.tuples(st.tuples(*prefix), rest).map(lambda pr: list(pr[0]) + pr[1])
    if t == "integer":
        return st.integers(-60, 60)
    if t == "number":
        return st.integers(-60, 60) | st.sampled_from(SIMPLE_FLOATS)
    if t == "string":
        return TEXTS | st.sampled_from(["abc", "12", "foo", "xAy", "aby"])
    return VALUES


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_generated_schemas_sound_and_complete(data):
    schema = data.draw(schemas(), label="schema")
    try:
        grammar = compile_ok(schema)
    except UnsupportedSchema as err:
        event(f"refused: {err.keyword}")
        return
    check = validator(schema)
    for value in data.draw(st.lists(instances_of(schema) | VALUES, min_size=4, max_size=8), label="values"):
        text = json.dumps(value)
        valid = check.is_valid(value)
        accepted = accepts(grammar, text)
        event("valid" if valid else "invalid")
        assert valid or not accepted, f"accepted an invalid instance: {text}"
        assert accepted or not valid, f"rejected a valid instance: {text}"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(FORMATS), st.sampled_from(PATTERNS + [None]), st.integers(0, 12), st.integers(0, 40),
       st.lists(TEXTS | st.sampled_from(["2024-02-29", "23:59:60Z", "2024-01-01T00:00:00+01:00", "a@b.co",
                                         "123e4567-e89b-12d3-a456-426614174000", "10.0.0.255", "::1", "fe80::1:2",
                                         "https://x.org/a?b#c", "x.example"]), min_size=3, max_size=6))
def test_generated_string_schemas_sound(fmt, pattern, lo, hi, texts):
    schema = {"type": "string", "format": fmt, "minLength": lo, "maxLength": hi, **({"pattern": pattern} if pattern else {})}
    try:
        grammar = compile_ok(schema)
    except UnsupportedSchema:
        return
    check = validator(schema)
    for value in texts:
        if accepts(grammar, json.dumps(value)):
            assert check.is_valid(value), value


# -- particular keywords --------------------------------------------------------------------------


def check_texts(schema, texts, narrowed=(), **kw):
    """Each text: accepted exactly when it parses and jsonschema finds it valid; the `narrowed`
    ones (spellings the grammar leaves out on purpose, see json_schema's doc) are rejected."""
    grammar, check = compile_ok(schema, **kw), validator(schema)
    for text in texts:
        try:
            valid = check.is_valid(json.loads(text))
        except ValueError:
            valid = False
        assert accepts(grammar, text) == valid, (schema, text, valid)
    for text in narrowed:
        assert not accepts(grammar, text), (schema, text)
    return grammar
