"""JSON Schema -> Grammar: one rule per schema node; leaves are single automata, objects and arrays
call the rules of their values, so `$ref` recursion is a call to the rule being built.

Enforced exactly (anything else that constrains instances raises UnsupportedSchema naming it):
type, enum, const, properties, required, additionalProperties, items, prefixItems (and draft 4-2019
items arrays / additionalItems), minItems, maxItems, anyOf, oneOf (when provably disjoint), allOf
(merged, see json_normal), $ref to local pointers, pattern, format (FORMATS), minLength, maxLength,
minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf (whole divisors: integers only),
dependentRequired and minProperties/maxProperties (where the object's state tracks them, or when
they hold trivially), uniqueItems (when at most one item fits). Annotations and unknown keywords are
ignored, as jsonschema ignores them. Keywords of a type the node does not allow are moot.

Narrowings (the grammar accepts a subset, never more): whitespace and digits are bounded (see
json_blocks, json_numbers); string lengths and item counts above MAX_COUNT are held to MAX_COUNT;
objects with more than ANY_ORDER_KEYS declared keys take them in schema order; a number with a
whole multipleOf is written as an integer; enum values in json.dumps form (keys in their order).
Text the grammar accepts, parsed by json.loads, is valid under jsonschema; pattern follows ECMA-262
(regex.py), which differs from Python's re (jsonschema's) only on non-ASCII \\d \\w \\s classes.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

import numpy as np


from gateway.structured.grammar import Dfa, Grammar, Rule
from gateway.structured.json_blocks import (ANY_ORDER_KEYS, ArrayShape, Builder, ObjectShape, array_piece, element, key_dfa, member,
                                            object_piece, value_dfa)
from gateway.structured.json_normal import (ARRAY_KEYWORDS, CONSTRAINING, NUMBER_KEYWORDS, OBJECT_KEYWORDS,
                                            STRING_KEYWORDS, Schemas, UnsupportedSchema, check_strict, json_equal,
                                            value_type)
from gateway.structured.json_numbers import BOUNDED_DIGITS, Range, number_dfa
from gateway.structured.json_strings import EscapeRules, json_string
from gateway.structured.json_text import FORMATS, MAX_COUNT, key_classes, names_text, pattern_dfa, string_text
from gateway.structured.matcher import Matcher
from gateway.structured.regex import choice_dfa, literal_dfa

__all__ = ["UnsupportedSchema", "compile_json_schema", "json_object_grammar"]

TYPE_ORDER = ["null", "boolean", "object", "array", "string", "number", "integer"]
NUMBER_FORMATS = {"int32": 32, "int64": 64, "float": None, "double": None}
MAX_DIVISOR = 1000
SUPPORTED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
             "minItems", "maxItems", "uniqueItems", "pattern", "format", "minLength", "maxLength", "minimum",
             "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "dependentRequired", "dependencies",
             "minProperties", "maxProperties", "patternProperties", "propertyNames"}
SHAPES = {"properties": dict, "patternProperties": dict, "required": list, "enum": list, "type": (str, list),
          "dependentRequired": dict, "dependencies": dict, "prefixItems": list, "pattern": str, "format": str}
MOOT = {"then", "else", "maxContains", "minContains"}       # no effect without if / contains


def compile_json_schema(schema: dict | bool, *, strict: bool = False, max_ws: int = 2) -> Grammar:
    """The grammar of the JSON texts valid under schema (see the module doc for what is enforced)."""
    try:
        if strict:
            check_strict(schema)
        grammar = _Compiler(Schemas(schema), max_ws).grammar_of(schema)
    except (TypeError, AttributeError, KeyError, IndexError) as err:     # a keyword's value of the wrong shape
        raise UnsupportedSchema("schema", f"malformed schema ({type(err).__name__}: {err})") from None
    if grammar is None:
        raise UnsupportedSchema("schema", "no JSON value satisfies this schema")
    return grammar


def json_object_grammar(max_ws: int = 2) -> Grammar:
    """Any JSON object (response_format json_object)."""
    return compile_json_schema({"type": "object"}, max_ws=max_ws)


class _Compiler:
    def __init__(self, schemas: Schemas, max_ws: int):
        self.schemas, self.max_ws = schemas, max_ws
        self.rules: list[Rule] = []
        self.escapes = EscapeRules(self._add)
        self._by_node: dict[int, int | None] = {}
        self._by_alts: dict[tuple[int, ...], int | None] = {}
        self._by_content: dict[str, int | None] = {}
        self._parts: dict[tuple, int] = {}              # member / element rules

    def grammar_of(self, node) -> Grammar | None:
        start = self.rule(node)
        return None if start is None else _reachable(self.rules, start)

    def rule(self, node) -> int | None:
        """The rule of a schema node (None: no value satisfies it)."""
        key = id(node)
        if key not in self._by_node:
            alts = self.schemas.alternatives(node)
            self._by_node[key] = self._alt_rule(alts[0]) if len(alts) == 1 else self._union_rule(alts)
        return self._by_node[key]

    def _union_rule(self, alts: list[dict]) -> int | None:
        key = tuple(map(id, alts))
        if key not in self._by_alts:
            index = self._by_alts[key] = self._reserve("anyOf") if alts else None
            options = list(dict.fromkeys(r for r in map(self._alt_rule, alts) if r is not None))
            if index is not None and options:
                self._fill(index, self._union(options))
            elif index is not None:
                self._by_alts[key] = None
        return self._by_alts[key]

    def _union(self, options: list[int]) -> tuple[Dfa, dict]:
        """One automaton when the options are built and start on different bytes; else calls."""
        rules = [self.rules[r] for r in options]
        b = Builder()
        start = b.state()
        if _embeddable(rules):
            for r in rules:
                b.accepting.update(b.embed([start], r.dfa, r.calls))
        else:
            ret = b.call([start], options[0])
            b.calls[start] += [(r, ret) for r in options[1:]]
            b.accepting.add(ret)
        return b.build()

    def _alt_rule(self, alt: dict) -> int | None:
        key = id(alt)
        if key not in self._by_node:
            content = json.dumps({k: v for k, v in alt.items() if k in CONSTRAINING}, sort_keys=True)
            if content not in self._by_content:
                index = self._by_content[content] = self._reserve(_describe(alt))
                piece = self._piece(alt)
                if piece is None:
                    self._by_content[content] = None
                else:
                    self._fill(index, piece)
            self._by_node[key] = self._by_content[content]
        return self._by_node[key]

    def _piece(self, alt: dict) -> tuple[Dfa, dict] | None:
        for k, kind in SHAPES.items():
            if k in alt and not isinstance(alt[k], kind):
                raise UnsupportedSchema(k, f"malformed value {alt[k]!r}")
        types = self._types(alt)
        for k in alt:
            if k in CONSTRAINING and k not in SUPPORTED | MOOT and _applies(k, types):
                raise UnsupportedSchema(k)
        fmt = alt.get("format")
        if fmt is not None and fmt not in FORMATS and fmt not in NUMBER_FORMATS and \
                ("string" in types or "number" in types or "integer" in types):
            raise UnsupportedSchema(f"format: {fmt}", f"supported formats: {', '.join([*FORMATS, *NUMBER_FORMATS])}")
        if "enum" in alt or "const" in alt:
            return self._enum(alt, types)
        pieces = []
        for t in types:
            if t in ("null", "boolean"):
                pieces.append((_keyword_dfa(t), {}))
            else:
                pieces.append({"object": self._object, "array": self._array, "string": self._string,
                               "number": self._number, "integer": self._integer}[t](alt))
        pieces = [p for p in pieces if p is not None]
        if len(pieces) <= 1:
            return pieces[0] if pieces else None
        b = Builder()
        start = b.state()
        for dfa, calls in pieces:
            b.accepting.update(b.embed([start], dfa, calls))
        return b.build()

    def _types(self, alt: dict) -> list[str]:
        t = alt.get("type", TYPE_ORDER[:-1])
        types = {t} if isinstance(t, str) else set(t)
        if types - set(TYPE_ORDER):
            raise UnsupportedSchema("type", f"unknown type {sorted(types - set(TYPE_ORDER))}")
        if "number" in types:
            types.discard("integer")
        return [x for x in TYPE_ORDER if x in types]

    # -- leaves ---------------------------------------------------------------------------------

    def _enum(self, alt: dict, types: list[str]) -> tuple[Dfa, dict] | None:
        values = [alt["const"]] if "const" in alt else list(alt["enum"])
        if "const" in alt and "enum" in alt:
            values = [v for v in values if any(json_equal(v, w) for w in alt["enum"])]
        values = [v for v in values if any(_is_type(v, t, self.schemas.draft) for t in types)]
        rest = {k: v for k, v in alt.items() if k in CONSTRAINING and k not in ("enum", "const", "type")}
        if rest and values:
            checker = _Compiler(self.schemas, 0).grammar_of(self.schemas.intern(rest))
            values = [v for v in values if checker is not None and _accepts(checker, v)]
        try:
            json.dumps(values, allow_nan=False)
        except ValueError:
            raise UnsupportedSchema("enum", "values must be finite JSON numbers") from None
        return (value_dfa(values, self.max_ws), {}) if values else None

    def _integer(self, alt: dict) -> tuple[Dfa, dict] | None:
        return self._number(alt, integer=True)

    def _number(self, alt: dict, integer: bool = False) -> tuple[Dfa, dict] | None:
        bounds, divisor = Range(), alt.get("multipleOf")
        bits = NUMBER_FORMATS.get(alt.get("format"))
        if bits:
            integer, bounds = True, Range(Fraction(-2 ** (bits - 1)), False, Fraction(2 ** (bits - 1) - 1), False)
        if divisor is not None:
            if not _is_number(divisor) or divisor <= 0 or divisor != int(divisor) or divisor > MAX_DIVISOR:
                raise UnsupportedSchema("multipleOf", f"only whole divisors up to {MAX_DIVISOR} are supported")
            divisor, integer = int(divisor), True
        for key, lower, open_ in (("minimum", True, False), ("exclusiveMinimum", True, True),
                                  ("maximum", False, False), ("exclusiveMaximum", False, True)):
            if key not in alt:
                continue
            value = _bound(alt[key], key, integer)
            if lower and (bounds.lo is None or value > bounds.lo or (value == bounds.lo and open_)):
                bounds.lo, bounds.lo_open = value, open_
            if not lower and (bounds.hi is None or value < bounds.hi or (value == bounds.hi and open_)):
                bounds.hi, bounds.hi_open = value, open_
        dfa = number_dfa(bounds, integer=integer, multiple_of=divisor)
        return (dfa, {}) if dfa.accept.any() else None

    def _string(self, alt: dict) -> tuple[Dfa, dict] | None:
        fmt = alt.get("format") if alt.get("format") in FORMATS else None
        lo, hi = _count(alt, "minLength", 0), _count(alt, "maxLength", None)
        text = string_text(alt.get("pattern"), fmt, lo, hi)
        return None if text is None else json_string(text, self.escapes)

    # -- containers -----------------------------------------------------------------------------

    def _object(self, alt: dict) -> tuple[Dfa, dict] | None:
        required = list(alt.get("required", []))
        depends = {**alt.get("dependencies", {}), **alt.get("dependentRequired", {})}
        if any(not isinstance(v, list) for v in depends.values()):
            raise UnsupportedSchema("dependencies", "schema dependencies are not supported")
        names = list(dict.fromkeys([*alt.get("properties", {}), *required, *depends, *sum(depends.values(), [])]))
        spec = self._names_spec(alt.get("propertyNames", True))
        allowed = (lambda n: True) if spec is None else (lambda n: (t := names_text(spec)) is not None and t.matches(n.encode()))
        values = {n: self.rule(self._property(alt, n)) if allowed(n) else None for n in names}
        absent = {n for n in names if values[n] is None}
        while grown := {k for k, v in depends.items() if k not in absent and absent & set(v)}:
            absent |= grown                     # a key whose dependency cannot be present cannot be
        if absent & set(required):
            return None
        present = [n for n in names if n not in absent]
        index = {n: i for i, n in enumerate(present)}
        members = [self._part(("member", n, values[n]), lambda n=n: member((key_dfa(n), {}), values[n], self.max_ws))
                   for n in present]
        shape = ObjectShape(members, {index[r] for r in required}, self._others(alt, tuple(names), spec),
                            depends={index[k]: {index[d] for d in v} for k, v in depends.items() if k in index})
        lo, hi = _count(alt, "minProperties", 0), _count(alt, "maxProperties", None)
        if (hi is not None and hi < len(shape.required)) or (not shape.others and lo > len(members)):
            return None
        if shape.any_order and not shape.others:
            shape.min_props, shape.max_props = lo, hi
            return object_piece(shape, self.max_ws)
        must = set(shape.required)                # counts are not tracked: what must hold anyway
        while grown := set().union(*(shape.depends.get(k, set()) for k in must)) - must:
            must |= grown
        if lo > max(len(must), 1):
            raise UnsupportedSchema("minProperties", f"enforced beyond 1 only on objects of at most "
                                                     f"{ANY_ORDER_KEYS} declared keys and no other keys")
        if hi is not None and (shape.others or hi < len(members)):
            raise UnsupportedSchema("maxProperties", f"enforced only on objects of at most {ANY_ORDER_KEYS} "
                                                     "declared keys and no other keys")
        if not shape.any_order and any(d - must for k, d in shape.depends.items()):
            raise UnsupportedSchema("dependentRequired", f"enforced only on objects of at most {ANY_ORDER_KEYS} "
                                                         "declared keys")
        shape.nonempty = lo > len(must)
        return object_piece(shape, self.max_ws)

    def _property(self, alt: dict, name: str):
        """The schema a declared key's value must match: its own (or additionalProperties when no
        pattern matches it) and every patternProperties schema whose pattern it matches."""
        patterns = alt.get("patternProperties", {})
        matched = [p for p in patterns if pattern_dfa(p).matches(name.encode())]
        schema = alt.get("properties", {}).get(name, True if matched else alt.get("additionalProperties", True))
        for p in matched:
            schema = self.schemas.both(schema, patterns[p])
        return schema

    def _others(self, alt: dict, declared: tuple[str, ...], spec: tuple | None) -> list[int]:
        """A member rule per class of undeclared keys, by the patternProperties they match."""
        patterns = alt.get("patternProperties", {})
        out = []
        for inside, text in key_classes(declared, tuple(patterns), spec):
            schema = True if inside else alt.get("additionalProperties", True)
            for p in inside:
                schema = self.schemas.both(schema, patterns[p])
            value = self.rule(schema)
            if value is not None:
                out.append(self._part(("other", declared, tuple(patterns), inside, spec, value),
                                      lambda: member(json_string(text, self.escapes), value, self.max_ws)))
        return out

    def _names_spec(self, schema) -> tuple | None:
        """propertyNames as a names_text spec (None: no constraint)."""
        alts = self.schemas.alternatives(schema)
        if alts == [self.schemas.empty]:
            return None
        if len(alts) > 1:
            raise UnsupportedSchema("propertyNames", "only one alternative is supported")
        alt = alts[0] if alts else {"enum": []}
        if set(alt) - {"type", "enum", "const", "pattern", "format", "minLength", "maxLength"} or \
                "string" not in self._types(alt) or alt.get("format", "date") not in FORMATS:
            raise UnsupportedSchema("propertyNames", "only string keywords are supported")
        if "enum" in alt or "const" in alt:
            values = [alt["const"]] if "const" in alt else alt["enum"]
            return ("enum", tuple(sorted({v for v in values if isinstance(v, str)})))
        return ("text", alt.get("pattern"), alt.get("format"), _count(alt, "minLength", 0), _count(alt, "maxLength", None))

    def _array(self, alt: dict) -> tuple[Dfa, dict] | None:
        prefix = [self._element(s) for s in alt.get("prefixItems", [])]
        items = self._element(alt.get("items", True))
        lo, hi = _count(alt, "minItems", 0), _count(alt, "maxItems", None)
        if lo > MAX_COUNT:
            raise UnsupportedSchema("minItems", f"at most {MAX_COUNT} is supported")
        hi = None if hi is None else min(hi, MAX_COUNT)
        if alt.get("uniqueItems") is True and (hi is None or hi > 1):
            raise UnsupportedSchema("uniqueItems")
        return array_piece(ArrayShape(prefix, items, lo, hi), self.max_ws)

    def _element(self, schema) -> int | None:
        value = self.rule(schema)
        return None if value is None else self._part(("element", value), lambda: element(value, self.max_ws))

    # -- rules ----------------------------------------------------------------------------------

    def _part(self, key: tuple, build) -> int:
        if key not in self._parts:
            self._parts[key] = self._add(key[0], *build())
        return self._parts[key]

    def _add(self, name: str, dfa: Dfa, calls: dict | None = None) -> int:
        self.rules.append(Rule(name, dfa, calls or {}))
        return len(self.rules) - 1

    def _reserve(self, name: str) -> int:
        """A rule to be filled once built (calls to it may be made before); until then it matches
        nothing, which it keeps doing if it turns out no value fits."""
        return self._add(name, Dfa(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=np.bool_)))

    def _fill(self, index: int, piece: tuple[Dfa, dict]) -> None:
        self.rules[index].dfa, self.rules[index].calls = piece


@lru_cache(maxsize=None)
def _keyword_dfa(kind: str) -> Dfa:
    return literal_dfa("null") if kind == "null" else choice_dfa(["true", "false"])


def _applies(keyword: str, types: list[str]) -> bool:
    """Whether a keyword can matter to a node allowing these types."""
    for family, kinds in ((STRING_KEYWORDS, {"string"}), (ARRAY_KEYWORDS, {"array"}), (OBJECT_KEYWORDS, {"object"}),
                          (NUMBER_KEYWORDS, {"number", "integer"})):
        if keyword in family:
            return bool(kinds & set(types))
    return True


def _embeddable(rules: list[Rule]) -> bool:
    """Built rules, none calling from or returning to its start, whose first bytes differ."""
    seen: set[int] = set()
    for r in rules:
        if not r.dfa.accept.any() or 0 in r.calls or r.dfa.accept[0] or (r.dfa.trans == 0).any():
            return False
        firsts = set(np.flatnonzero(r.dfa.trans[0] >= 0).tolist())
        if firsts & seen:
            return False
        seen |= firsts
    return True


def _reachable(rules: list[Rule], start: int) -> Grammar:
    """The rules reachable from start, renumbered in order of discovery (start first)."""
    order, number = [start], {start: 0}
    for r in order:
        for targets in rules[r].calls.values():
            for callee, _ in targets:
                if callee not in number:
                    number[callee] = len(order)
                    order.append(callee)
    return Grammar([Rule(rules[r].name, rules[r].dfa, {s: [(number[c], ret) for c, ret in t]
                                                       for s, t in rules[r].calls.items()}) for r in order])


def _describe(alt: dict) -> str:
    t = alt.get("type", "any")
    return "|".join(t) if isinstance(t, list) else t


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_type(v, t: str, draft: int) -> bool:
    if t == "number":
        return _is_number(v)
    return value_type(v, draft) == t


def _accepts(grammar: Grammar, value) -> bool:
    m = Matcher(grammar)
    return m.advance(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) and m.accepting


def _count(alt: dict, key: str, default):
    value = alt.get(key, default)
    if value is default:
        return value
    if not _is_number(value) or value < 0 or value != int(value):
        raise UnsupportedSchema(key, f"must be a non-negative integer, not {value!r}")
    return int(value)


def _bound(value, key: str, integer: bool) -> Fraction:
    """A numeric bound as the exact value jsonschema compares against (see json_numbers)."""
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise UnsupportedSchema(key, f"must be a finite number, not {value!r}")
    if integer or isinstance(value, int):
        return Fraction(value)
    text = repr(value)
    digits = len(Decimal(text).as_tuple().digits)
    if digits <= BOUNDED_DIGITS or abs(value) >= 10 ** BOUNDED_DIGITS:
        return Fraction(text) if digits <= BOUNDED_DIGITS else Fraction(value)
    raise UnsupportedSchema(key, f"{value!r} has more than {BOUNDED_DIGITS} significant digits")
