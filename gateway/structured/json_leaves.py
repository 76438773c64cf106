"""The leaves of a schema grammar: enum/const values, numbers, strings, null and booleans, each one
automaton (strings with calls to the shared escape rules).

Numbers: bounds are exact (see json_numbers for the digits they allow); a whole multipleOf (up to
MAX_DIVISOR) makes the value an integer, since jsonschema tests floats against it in floating
point (0.07 is not a multiple of 0.01 there), which no automaton can follow; fractional divisors
are refused. Formats int32 and int64 bound an integer; float and double add nothing.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from gateway.structured.grammar import Dfa, Grammar
from gateway.structured.json_cache import shared
from gateway.structured.json_keywords import CONSTRAINING, UnsupportedSchema, json_equal, value_type
from gateway.structured.json_numbers import BOUNDED_DIGITS, Range, number_dfa
from gateway.structured.json_strings import json_string
from gateway.structured.json_text import FORMATS, string_text
from gateway.structured.json_values import value_dfa
from gateway.structured.matcher import Matcher
from gateway.structured.regex import choice_dfa, literal_dfa

if TYPE_CHECKING:
    from gateway.structured.json_schema import Compiler

NUMBER_FORMATS = {"int32": 32, "int64": 64, "float": None, "double": None}
MAX_DIVISOR = 1000
Piece = tuple[Dfa, dict]


def enum_piece(c: Compiler, alt: dict, types: list[str]) -> Piece | None:
    """The enum/const values that also meet the node's other keywords, spelled as json.dumps does."""
    values = [alt["const"]] if "const" in alt else list(alt["enum"])
    if "const" in alt and "enum" in alt:
        values = [v for v in values if any(json_equal(v, w) for w in alt["enum"])]
    values = [v for v in values if any(_is_type(v, t, c.schemas.draft) for t in types)]
    rest = {k: v for k, v in alt.items() if k in CONSTRAINING and k not in ("enum", "const", "type")}
    if rest and values:
        checker = c.fresh().grammar_of(c.schemas.intern(rest))
        values = [v for v in values if checker is not None and _accepts(checker, v)]
    try:
        json.dumps(values, allow_nan=False)
    except ValueError:
        raise UnsupportedSchema("enum", "values must be finite JSON numbers") from None
    return (value_dfa(values, c.max_ws), {}) if values else None


@shared
def keyword_dfa(kind: str) -> Dfa:
    return literal_dfa("null") if kind == "null" else choice_dfa(["true", "false"])


def number_piece(alt: dict, integer: bool = False) -> Piece | None:
    bounds, divisor = Range(), alt.get("multipleOf")
    bits = NUMBER_FORMATS.get(alt.get("format"))
    if bits:
        integer, bounds = True, Range(Fraction(-2 ** (bits - 1)), False, Fraction(2 ** (bits - 1) - 1), False)
    if divisor is not None:
        if not is_number(divisor) or divisor <= 0 or divisor != int(divisor) or divisor > MAX_DIVISOR:
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


def string_piece(c: Compiler, alt: dict) -> Piece | None:
    fmt = alt.get("format") if alt.get("format") in FORMATS else None
    text = string_text(alt.get("pattern"), fmt, count(alt, "minLength", 0), count(alt, "maxLength", None))
    return None if text is None else json_string(text, c.escapes)


def count(alt: dict, key: str, default):
    """A keyword that must be a non-negative integer (1.0 is one, as JSON Schema allows)."""
    value = alt.get(key, default)
    if value is default:
        return value
    if not is_number(value) or value < 0 or value != int(value):
        raise UnsupportedSchema(key, f"must be a non-negative integer, not {value!r}")
    return int(value)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(value, key: str, integer: bool) -> Fraction:
    """A numeric bound as the exact value jsonschema compares against (see json_numbers): exact
    for integers; for other numbers the shortest decimal of the float, which must have at most
    BOUNDED_DIGITS digits (unless it lies beyond every number of that many digits)."""
    if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise UnsupportedSchema(key, f"must be a finite number, not {value!r}")
    if integer or isinstance(value, int):
        return Fraction(value)
    text = repr(value)
    if len(Decimal(text).as_tuple().digits) <= BOUNDED_DIGITS:
        return Fraction(text)
    if abs(value) >= 10 ** BOUNDED_DIGITS:
        return Fraction(value)
    raise UnsupportedSchema(key, f"{value!r} has more than {BOUNDED_DIGITS} significant digits")


def _is_type(v, t: str, draft: int) -> bool:
    return is_number(v) if t == "number" else value_type(v, draft) == t


def _accepts(grammar: Grammar, value) -> bool:
    m = Matcher(grammar)
    return m.advance(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) and m.accepting
