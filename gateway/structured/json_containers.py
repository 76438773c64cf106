"""Objects and arrays of a schema grammar: the keywords read into ObjectShape / ArrayShape
(json_blocks builds the automata), with a member or element rule per key or position.

Declared keys are properties, required, and the keys dependentRequired names; each key's value
schema is its property schema (additionalProperties when it has none and no pattern matches it)
and every patternProperties schema whose pattern matches it (decided with Python's re, as
jsonschema decides). The other keys fall in classes by the patterns they match, one member rule
each. Counts (min/maxProperties) and dependencies are enforced where the object's state tracks
them (any-order objects; counts only without other keys) or where they hold anyway (minProperties
1 is "not {}"); otherwise refused.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from gateway.structured.json_blocks import ArrayShape, array_piece
from gateway.structured.json_leaves import Piece, count
from gateway.structured.json_keywords import UnsupportedSchema
from gateway.structured.json_members import element, member, plain_member
from gateway.structured.json_objects import ANY_ORDER_KEYS, ObjectShape, object_piece
from gateway.structured.json_other_keys import other_keys_member
from gateway.structured.json_strings import ESCAPABLE, json_string
from gateway.structured.json_text import FORMATS, LITERAL_PATTERN, MAX_COUNT, key_classes, names_text, one_spelling
from gateway.structured.json_values import key_dfa

if TYPE_CHECKING:
    from gateway.structured.json_schema import Compiler

UNTRACKED = f"enforced only on objects of at most {ANY_ORDER_KEYS} declared keys and no other keys"


def compile_object(c: Compiler, alt: dict) -> Piece | None:
    required = list(alt.get("required", []))
    depends = {**alt.get("dependencies", {}), **alt.get("dependentRequired", {})}
    if any(not isinstance(v, list) for v in depends.values()):
        raise UnsupportedSchema("dependencies", "schema dependencies are not supported")
    names = list(dict.fromkeys([*alt.get("properties", {}), *required, *depends, *sum(depends.values(), [])]))
    spec = _names_spec(c, alt.get("propertyNames", True))
    names_ok = None if spec is None else names_text(spec)
    values = {n: c.rule(_property(c, alt, n)) if spec is None or (names_ok is not None and names_ok.matches(n.encode()))
              else None for n in names}
    absent = {n for n in names if values[n] is None}
    while grown := {k for k, v in depends.items() if k not in absent and absent & set(v)}:
        absent |= grown                         # a key whose dependency cannot be present cannot be
    if absent & set(required):
        return None
    present = [n for n in names if n not in absent]
    index = {n: i for i, n in enumerate(present)}
    members = [c.part(("member", n, values[n]), lambda n=n: _member(n, values[n], c.max_ws)) for n in present]
    shape = ObjectShape(members, {index[r] for r in required}, _others(c, alt, tuple(names), spec),
                        depends={index[k]: {index[d] for d in v} for k, v in depends.items() if k in index},
                        ordered=c.ordered)
    lo, hi = count(alt, "minProperties", 0), count(alt, "maxProperties", None)
    if (hi is not None and hi < max(lo, len(shape.required))) or (not shape.others and lo > len(members)):
        return None
    if shape.any_order and not shape.others:
        shape.min_props, shape.max_props = lo, hi
        return object_piece(shape, c.max_ws)
    must = set(shape.required)                  # counts are not tracked: what must hold anyway
    while grown := set().union(*(shape.depends.get(k, set()) for k in must)) - must:
        must |= grown
    if lo > max(len(must), 1):
        raise UnsupportedSchema("minProperties", f"beyond 1 {UNTRACKED}")
    if hi is not None and (shape.others or hi < len(members)):
        raise UnsupportedSchema("maxProperties", UNTRACKED)
    if not shape.any_order and any(d - must for d in shape.depends.values()):
        raise UnsupportedSchema("dependentRequired", f"enforced only on objects of at most {ANY_ORDER_KEYS} "
                                                     "declared keys")
    shape.nonempty = lo > len(must)
    return object_piece(shape, c.max_ws)


def compile_array(c: Compiler, alt: dict) -> Piece | None:
    prefix = [_element(c, s) for s in alt.get("prefixItems", [])]
    items = _element(c, alt.get("items", True))
    lo, hi = count(alt, "minItems", 0), count(alt, "maxItems", None)
    if lo > MAX_COUNT:
        raise UnsupportedSchema("minItems", f"at most {MAX_COUNT} is supported")
    hi = None if hi is None else min(hi, MAX_COUNT)
    if alt.get("uniqueItems") is True and (hi is None or hi > 1):
        raise UnsupportedSchema("uniqueItems")
    return array_piece(ArrayShape(prefix, items, lo, hi), c.max_ws)


def _member(name: str, value: int, max_ws: int) -> Piece:
    return plain_member(name, value, max_ws) if one_spelling(name) else member((key_dfa(name), {}), value, max_ws)


def _element(c: Compiler, schema) -> int | None:
    value = c.rule(schema)
    return None if value is None else c.part(("element", value), lambda: element(value, c.max_ws))


def _property(c: Compiler, alt: dict, name: str):
    """The schema a declared key's value must match (see the module doc)."""
    patterns = alt.get("patternProperties", {})
    matched = [p for p in patterns if _python_search(p, name)]
    schema = alt.get("properties", {}).get(name, True if matched else alt.get("additionalProperties", True))
    for p in matched:
        schema = c.schemas.both(schema, patterns[p])
    return schema


def _others(c: Compiler, alt: dict, declared: tuple[str, ...], spec: tuple | None) -> list[int]:
    """A member rule per class of undeclared keys, by the patternProperties they match."""
    patterns = alt.get("patternProperties", {})
    literal = {p: m.group(1) for p in patterns if (m := LITERAL_PATTERN.fullmatch(p))}
    if spec is None and len(literal) == len(patterns) and (declared or literal) and all(map(one_spelling, declared)):
        return _plain_others(c, alt, declared, literal)
    out = []
    for inside, text in key_classes(declared, tuple(patterns), spec):
        schema = True if inside else alt.get("additionalProperties", True)
        for p in inside:
            schema = c.schemas.both(schema, patterns[p])
        value = c.rule(schema)
        if value is not None:
            out.append(c.part(("other", declared, tuple(patterns), inside, spec, value),
                              lambda: member(json_string(text, c.escapes), value, c.max_ws)))
    return out


def _plain_others(c: Compiler, alt: dict, declared: tuple[str, ...], literal: dict[str, str]) -> list[int]:
    """_others where every declared key is plain and every pattern one key (`^key$`), as key_classes
    splits them (a one-key class per pattern key not declared, then the rest), each member laid out
    from the keys (json_members, json_other_keys) instead of lifted from a key automaton."""
    patterns = tuple(literal)
    out = []
    for key in dict.fromkeys(literal.values()):
        if key in declared:
            continue
        inside = tuple(p for p in patterns if literal[p] == key)
        schema = True
        for p in inside:
            schema = c.schemas.both(schema, alt["patternProperties"][p])
        value = c.rule(schema)
        if value is not None:
            out.append(c.part(("other", declared, patterns, inside, None, value),
                              lambda key=key, value=value: plain_member(key, value, c.max_ws)))
    value = c.rule(alt.get("additionalProperties", True))
    if value is not None:
        keys = declared + tuple(literal.values())
        out.append(c.part(("other", declared, patterns, (), None, value), lambda: other_keys_member(
            keys, value, c.escapes.rule_for(ESCAPABLE), c.max_ws)))
    return out


def _names_spec(c: Compiler, schema) -> tuple | None:
    """propertyNames as a names_text spec (None: no constraint)."""
    alts = c.schemas.alternatives(schema)
    if alts == [c.schemas.empty]:
        return None
    if len(alts) > 1:
        raise UnsupportedSchema("propertyNames", "only one alternative is supported")
    alt = alts[0] if alts else {"enum": []}
    if set(alt) - {"type", "enum", "const", "pattern", "format", "minLength", "maxLength"} or \
            "string" not in c.types(alt) or alt.get("format", "date") not in FORMATS:
        raise UnsupportedSchema("propertyNames", "only string keywords are supported")
    if "enum" in alt or "const" in alt:
        values = [alt["const"]] if "const" in alt else alt["enum"]
        return ("enum", tuple(sorted({v for v in values if isinstance(v, str)})))
    return ("text", alt.get("pattern"), alt.get("format"), count(alt, "minLength", 0), count(alt, "maxLength", None))


def _python_search(pattern: str, text: str) -> bool:
    """Whether jsonschema finds the pattern in text (it uses Python's re)."""
    try:
        return re.search(pattern, text) is not None
    except re.error as err:
        raise UnsupportedSchema("patternProperties", f"{pattern!r} is not a pattern Python's re reads: {err}") from None
