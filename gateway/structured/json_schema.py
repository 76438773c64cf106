"""JSON Schema -> Grammar: one rule per schema node; leaves are single automata, objects and arrays
call the rules of their members and elements, so `$ref` recursion is a call to the rule being built.

Text the grammar accepts, read by json.loads, is valid under jsonschema for the schema's own draft
(2020-12 when it names none). Enforced exactly: type, enum, const, properties, required,
additionalProperties, patternProperties, propertyNames (string keywords), items, prefixItems (items
arrays and additionalItems before 2020-12), minItems, maxItems, anyOf, oneOf (when its branches are
provably disjoint), allOf (merged where exact), $ref to local JSON pointers, pattern, format (see
json_formats), minLength, maxLength, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
multipleOf (whole divisors), dependentRequired, minProperties / maxProperties (see json_containers),
uniqueItems when at most one item fits. Any other keyword that constrains a type the node allows
raises UnsupportedSchema naming it; annotations and unknown keywords are ignored, as jsonschema
ignores them.

The grammar accepts a subset of the valid texts where the full set cannot be an automaton or would
be too large, never more:
- whitespace: at most max_ws bytes at each place, none around the top-level value (json_blocks);
- numbers: bounded digits, no exponent when bounded (json_numbers); a whole multipleOf writes an
  integer; "integer" is written without fraction or exponent;
- strings: lengths and item counts above MAX_COUNT (1024) held to it; no \\u escape of printable
  ASCII, no lone surrogate (json_strings); pattern texts where ECMA and Python's re could disagree
  left out (json_text);
- objects: with more than ANY_ORDER_KEYS (8) declared keys, or in strict mode, those keys in schema
  order; no duplicate declared key;
- strict mode (OpenAI's rules): keys in schema order, as OpenAI documents, and no whitespace;
- enum / const: json.dumps spellings, keys in the value's own order (json_values).
"""
from __future__ import annotations

import numpy as np

from gateway.structured.grammar import Dfa, Grammar, Rule
from gateway.structured.json_blocks import Builder, union_pieces
from gateway.structured.json_containers import compile_array, compile_object
from gateway.structured.json_leaves import NUMBER_FORMATS, enum_piece, keyword_dfa, number_piece, string_piece
from gateway.structured.json_keywords import (ARRAY_KEYWORDS, CONSTRAINING, NUMBER_KEYWORDS, OBJECT_KEYWORDS,
                                              STRING_KEYWORDS, UnsupportedSchema, check_strict)
from gateway.structured.json_normal import Schemas
from gateway.structured.json_strings import EscapeRules
from gateway.structured.json_text import FORMATS

__all__ = ["UnsupportedSchema", "compile_json_schema", "json_object_grammar"]

TYPE_ORDER = ["null", "boolean", "object", "array", "string", "number", "integer"]
SUPPORTED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
             "minItems", "maxItems", "uniqueItems", "pattern", "format", "minLength", "maxLength", "minimum",
             "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "dependentRequired", "dependencies",
             "minProperties", "maxProperties", "patternProperties", "propertyNames"}
SHAPES = {"properties": dict, "patternProperties": dict, "required": list, "enum": list, "type": (str, list),
          "dependentRequired": dict, "dependencies": dict, "prefixItems": list, "pattern": str, "format": str}
MOOT = {"then", "else", "maxContains", "minContains"}       # no effect without if / contains
LARGE_PIECE = 256      # states: a larger alternative (a long counted string) stays its own rule, called by
#                        a union instead of copied into its table (megabytes per copy, and masks walk it as is)


def compile_json_schema(schema: dict | bool, *, strict: bool = False, max_ws: int = 2) -> Grammar:
    """The grammar of the JSON texts valid under schema (see the module doc for what is enforced).
    Strict mode, as OpenAI's: keys in schema order, compact separators (no whitespace)."""
    try:
        if strict:
            check_strict(schema)
        grammar = Compiler(Schemas(schema), 0 if strict else max_ws, ordered=strict).grammar_of(schema)
    except (TypeError, AttributeError, KeyError, IndexError) as err:     # a keyword's value of the wrong shape
        raise UnsupportedSchema("schema", f"malformed schema ({type(err).__name__}: {err})") from None
    if grammar is None:
        raise UnsupportedSchema("schema", "no JSON value satisfies this schema")
    return grammar


def json_object_grammar(max_ws: int = 2) -> Grammar:
    """Any JSON object (response_format json_object)."""
    return compile_json_schema({"type": "object"}, max_ws=max_ws)


class Compiler:
    """Rules of one schema's grammar, built on demand and cached by node and by content."""

    def __init__(self, schemas: Schemas, max_ws: int, ordered: bool = False):
        self.schemas, self.max_ws, self.ordered = schemas, max_ws, ordered
        self.rules: list[Rule] = []
        self.escapes = EscapeRules(self._add)
        self._by_node: dict[int, int | None] = {}
        self._by_alts: dict[tuple[int, ...], int | None] = {}
        self._by_content: dict[object, int | None] = {}
        self._parts: dict[tuple, int] = {}              # member / element rules

    def fresh(self) -> "Compiler":
        """A compiler of its own rules over the same schemas (to test enum values with)."""
        return Compiler(self.schemas, 0)

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
        """One automaton when the options are built, start on different bytes and are small; else calls."""
        rules = [self.rules[r] for r in options]
        if _embeddable(rules) and all(r.dfa.num_states <= LARGE_PIECE for r in rules):
            return union_pieces([(r.dfa, r.calls) for r in rules])
        return _calling(options)

    def _alt_rule(self, alt: dict) -> int | None:
        key = id(alt)
        if key not in self._by_node:
            content = self.schemas.contents.key({k: sorted(v) if k == "type" and isinstance(v, list) else v
                                                 for k, v in alt.items() if k in CONSTRAINING})
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
        types = self.types(alt)
        for k in alt:
            if k in CONSTRAINING and k not in SUPPORTED | MOOT and _applies(k, types):
                raise UnsupportedSchema(k)
        fmt = alt.get("format")
        if fmt is not None and fmt not in FORMATS and fmt not in NUMBER_FORMATS and \
                ("string" in types or "number" in types or "integer" in types):
            raise UnsupportedSchema(f"format: {fmt}", f"supported formats: {', '.join([*FORMATS, *NUMBER_FORMATS])}")
        if "enum" in alt or "const" in alt:
            return enum_piece(self, alt, types)
        pieces = []
        for t in types:
            if t in ("null", "boolean"):
                pieces.append((keyword_dfa(t), {}))
            elif t in ("number", "integer"):
                pieces.append(number_piece(alt, integer=t == "integer"))
            else:
                pieces.append({"object": compile_object, "array": compile_array, "string": string_piece}[t](self, alt))
        pieces = [p for p in pieces if p is not None]
        if len(pieces) <= 1:
            return pieces[0] if pieces else None
        if any(dfa.num_states > LARGE_PIECE for dfa, _ in pieces):
            return _calling([self._add(_describe(alt), *piece) for piece in pieces])
        return union_pieces(pieces)

    @staticmethod
    def types(alt: dict) -> list[str]:
        """The JSON types an alternative allows (integer only when number is not among them)."""
        t = alt.get("type", TYPE_ORDER[:-1])
        types = {t} if isinstance(t, str) else set(t)
        if types - set(TYPE_ORDER):
            raise UnsupportedSchema("type", f"unknown type {sorted(types - set(TYPE_ORDER))}")
        if "number" in types:
            types.discard("integer")
        return [x for x in TYPE_ORDER if x in types]

    # -- rules ----------------------------------------------------------------------------------

    def part(self, key: tuple, build) -> int:
        """A member / element / other-key rule, built once per key."""
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



def _applies(keyword: str, types: list[str]) -> bool:
    """Whether a keyword can matter to a node allowing these types."""
    for family, kinds in ((STRING_KEYWORDS, {"string"}), (ARRAY_KEYWORDS, {"array"}), (OBJECT_KEYWORDS, {"object"}),
                          (NUMBER_KEYWORDS, {"number", "integer"})):
        if keyword in family:
            return bool(kinds & set(types))
    return True


def _calling(options: list[int]) -> tuple[Dfa, dict]:
    """A rule that calls one of the options from its start and accepts on return."""
    b = Builder()
    ret = b.call([b.state()], options[0])
    b.calls[0] += [(r, ret) for r in options[1:]]
    b.accepting.add(ret)
    return b.build()


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
    """The rules reachable from start, start first: as built when that is all of them and start
    is the first (no call to renumber); else renumbered, in the order built when start is the
    first, in order of discovery otherwise."""
    order, number = [start], {start: 0}
    for r in order:
        for targets in rules[r].calls.values():
            for callee, _ in targets:
                if callee not in number:
                    number[callee] = len(order)
                    order.append(callee)
    if start == 0:
        if len(order) == len(rules):
            return Grammar(rules)
        order = sorted(order)
        number = {r: i for i, r in enumerate(order)}
    return Grammar([Rule(rules[r].name, rules[r].dfa, {s: [(number[c], ret) for c, ret in t]
                                                       for s, t in rules[r].calls.items()}) for r in order])


def _describe(alt: dict) -> str:
    t = alt.get("type", "any")
    return "|".join(t) if isinstance(t, list) else t
