"""Regular expressions, literals and choices compiled to minimal byte-level `Dfa`s.

`regex_dfa(pattern)` reads ECMAScript syntax (JSON Schema "pattern") over code points and accepts
the UTF-8 bytes of the texts the pattern matches. With search=False the whole text must match; with
search=True (JSON Schema's reading) the pattern may match anywhere, as if it were
[\\s\\S]*(?:pattern)[\\s\\S]*, except that a top-level alternative starting with ^ / ending with $
is held to that end. ^ and $ are accepted only there: elsewhere they, lookarounds and backreferences
raise UnsupportedRegex naming the construct.

The JSON Schema compiler builds on the NFA combinators re-exported here (literal, chars, concat,
union, optional, plus, star, repeat) and finishes with to_dfa, which minimises.
"""
from __future__ import annotations

from functools import lru_cache

from gateway.structured.dfa_build import (EMPTY, NOTHING, Nfa, chars, concat, literal, optional, plus,
                                          repeat, star, to_dfa, union)
from gateway.structured.grammar import Dfa
from gateway.structured.regex_parse import ANY, Alt, Anchor, Chars, Node, Repeat, Seq, UnsupportedRegex, parse

__all__ = ["EMPTY", "NOTHING", "Nfa", "UnsupportedRegex", "chars", "choice_dfa", "concat", "literal",
           "literal_dfa", "nfa_from_regex", "optional", "plus", "regex_dfa", "regex_to_dfa_cached",
           "repeat", "star", "to_dfa", "union"]


def nfa_from_regex(pattern: str, *, search: bool = False) -> Nfa:
    tree = parse(pattern)
    alternatives = tree.items if isinstance(tree, Alt) else (tree,)
    any_text = star(chars(ANY))
    options = []
    for alt in alternatives:
        items = list(alt.items) if isinstance(alt, Seq) else [alt]
        at_start = bool(items) and items[0] == Anchor("^")
        items = items[1:] if at_start else items
        at_end = bool(items) and items[-1] == Anchor("$")
        items = items[:-1] if at_end else items
        body = concat(*map(_build, items))
        if search:
            body = concat(*([] if at_start else [any_text]), body, *([] if at_end else [any_text]))
        options.append(body)
    return options[0] if len(options) == 1 else union(*options)


def _build(node: Node) -> Nfa:
    match node:
        case Chars(ranges):
            return chars(ranges)
        case Seq(items):
            return concat(*map(_build, items))
        case Alt(items):
            return union(*map(_build, items))
        case Repeat(item, lo, hi):
            return repeat(_build(item), lo, hi)
        case Anchor(kind):
            raise UnsupportedRegex(f"{kind!r} anchor in the middle of a pattern "
                                   "(only at the start/end of the pattern or of a top-level alternative)")
    raise TypeError(node)


def regex_dfa(pattern: str, *, search: bool = False) -> Dfa:
    return to_dfa(nfa_from_regex(pattern, search=search))


def literal_dfa(text: str) -> Dfa:
    """Exactly this string."""
    return to_dfa(literal(text))


def choice_dfa(options: list[str]) -> Dfa:
    """Exactly one of these strings (none: a DFA that accepts nothing)."""
    return to_dfa(union(*map(literal, options)))


def regex_to_dfa_cached(pattern: str, *, search: bool = False) -> Dfa:
    """regex_dfa, shared across requests: the arrays are read-only. Failures are remembered too, so
    a client repeating a pattern that is too complex costs the compile once."""
    result = _compile_cached(pattern, search)
    if isinstance(result, str):
        raise UnsupportedRegex(result)
    return result


@lru_cache(maxsize=4096)
def _compile_cached(pattern: str, search: bool) -> Dfa | str:
    try:
        dfa = regex_dfa(pattern, search=search)
    except UnsupportedRegex as e:
        return str(e)
    dfa.trans.flags.writeable = False
    dfa.accept.flags.writeable = False
    return dfa
