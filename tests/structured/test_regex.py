"""regex_dfa against Python's `re` as the reference, on realistic and generated patterns.

ECMAScript and Python differ in a few places, so each pattern is translated for the reference:
. excludes four line terminators in ECMA (one in Python), ECMA's \\s has its own Unicode list, \\d
and \\w are ASCII (re.ASCII), $ is the very end (Python's $ also matches before a final newline),
and named groups and \\u{...} are spelled differently.
"""
from __future__ import annotations

import random
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gateway.structured.grammar import Dfa
from gateway.structured.regex import (UnsupportedRegex, chars, choice_dfa, concat, literal, literal_dfa,
                                      nfa_from_regex, optional, plus, regex_dfa, regex_to_dfa_cached, repeat,
                                      star, to_dfa, union)

PY_SPACE = "\\t\\n\\v\\f\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
PY_DOT = "[^\\n\\r\\u2028\\u2029]"
ALPHABET = ["a", "b", "c", "A", "0", "7", "_", "-", ".", "/", " ", "\n", "\r", "\t", "\u2028", "\xa0",
            "\ufeff", "é", "東", "😀", "\U0010ffff", "$", "@", "x"]
TEXT = st.text(st.sampled_from(ALPHABET) | st.characters(exclude_categories=("Cs",)), max_size=12)


def to_python(pattern: str) -> str:
    """The ECMA pattern in Python syntax (for the subset these tests use)."""
    out, i, in_class, depth = [], 0, False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1]
            if e == "u" and pattern[i + 2] == "{":
                end = pattern.index("}", i)
                out.append("\\U%08x" % int(pattern[i + 3:end], 16))
                i = end + 1
                continue
            out.append(PY_SPACE if e == "s" and in_class else
                       f"[{PY_SPACE}]" if e == "s" else f"[^{PY_SPACE}]" if e == "S" else c + e)
            assert not (e == "S" and in_class)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif not in_class and c == "(":
            depth += 1
            if pattern.startswith("(?<", i) and pattern[i + 3] not in "=!":
                out.append("(?P<")
                i += 3
                continue
        elif not in_class and c == ")":
            depth -= 1
        elif not in_class and c == ".":
            c = PY_DOT
        elif not in_class and c == "$" and depth == 0:
            c = "\\Z"
        out.append(c)
        i += 1
    return "".join(out)


def check_against_re(pattern: str, texts: list[str]) -> None:
    ref = re.compile(to_python(pattern), re.ASCII)
    full, search = regex_to_dfa_cached(pattern), regex_to_dfa_cached(pattern, search=True)
    for text in texts:
        data = text.encode()
        assert full.matches(data) == (ref.fullmatch(text) is not None), (pattern, text)
        assert search.matches(data) == (ref.search(text) is not None), (pattern, text, "search")


def is_minimal(dfa: Dfa) -> bool:
    """Every state reachable and live, and no two equivalent (Moore's refinement, as a reference)."""
    n = dfa.num_states
    if not dfa.accept.any():
        return n == 1
    trans = np.where(dfa.trans < 0, n, dfa.trans)
    trans = np.vstack([trans, np.full((1, 256), n)])
    reach = {0}
    todo = [0]
    while todo:
        for t in set(trans[todo.pop()].tolist()) - reach:
            reach.add(t)
            todo.append(t)
    part = np.append(dfa.accept, False).astype(np.int64)
    while True:
        _, new = np.unique(np.column_stack([part, part[trans]]), axis=0, return_inverse=True)
        if new.max() == part.max():
            break
        part = new.ravel()
    return reach >= set(range(n)) and len(set(part.tolist())) == n + 1


REALISTIC = [
    (r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$", ["a.b+c@x-y.com", "@x.com", "a@b.", "a@b.c\n"]),
    (r"^[a-zA-Z0-9_.-]+@[a-zA-Z0-9-]+\.[a-z]{2,}$", ["me@host.io", "me@host.i", "me@@host.io"]),
    (r"^\d{4}-\d{2}-\d{2}$", ["2024-01-31", "2024-1-31", "2024-01-311", "２０２４-01-31"]),
    (r"[A-Z]{3}", ["ABC", "xABCx", "AB", "ABCD", "abc"]),
    (r"^\+?[1-9]\d{1,14}$", ["+14155552671", "0123", "+1", "12"]),
    (r"^(\([0-9]{3}\))?[0-9]{3}-[0-9]{4}$", ["(888)555-1212", "555-1212", "(888)555-1212 ext. 532"]),
    (r"^[a-z0-9]+(?:-[a-z0-9]+)*$", ["my-slug-1", "-slug", "slug-", "a--b"]),
    (r"^#?([a-fA-F0-9]{6}|[a-fA-F0-9]{3})$", ["#fff", "a1b2c3", "#ffff", "#ggg"]),
    (r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[\w.-]+)?$", ["1.2.3", "1.02.3", "0.0.1-rc.1", "1.2"]),
    (r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
     ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-62d3-a456-426614174000"]),
    (r"^https?://[^\s/$.?#].[^\s]*$", ["https://example.com/a?b", "http://", "ftp://x.y", "https://a\u2028b"]),
    (r"^(?<year>\d{4})/(?<month>\d\d)$", ["2024/05", "2024/5"]),
    (r"^\S+$", ["abc", "a b", "a\xa0b", "a\ufeffb", "東京"]),
    (r"^[^\x00-\x1f]*$", ["ok", "tab\there", ""]),
    (r"^\u{1F600}+$", ["😀", "😀😀", "😁"]),
    (r"^[\u4e00-\u9fff]+$", ["東京", "東x", ""]),
    (r"^[^aeiou]{2,4}?x", ["bcx", "bx", "bcdfx", "aex"]),
    (r"ab|^cd$|ef$", ["xaby", "cd", "xcd", "xef", "efx"]),
    (r"^$", ["", "a", "\n"]),
    ("", ["", "abc"]),
    (r"a\/b", ["a/b", "ab"]),
    (r"^[\w.\-]+$", ["a.b-c_d", "a b"]),
    (r"^.*$", ["anything", "two\nlines", "cr\r", "ls\u2028"]),
    (r"colou?r", ["color", "colour", "colouur"]),
    (r"[\d\s]+", ["12 34", "\u3000", "x"]),
]


@pytest.mark.parametrize("pattern,examples", REALISTIC, ids=[p for p, _ in REALISTIC])
@settings(max_examples=40, deadline=None)
@given(texts=st.lists(TEXT, max_size=5))
def test_realistic_patterns_agree_with_re(pattern: str, examples: list[str], texts: list[str]) -> None:
    check_against_re(pattern, examples + texts)


# Generated patterns: a tree of small tuples, rendered to ECMA syntax, plus a sampler that draws
# texts likely (not certain) to match, so that both answers are exercised.
LITERALS = ["a", "b", "c", "0", "é", "東", "😀", "-", ".", "/", "$", "(", "*"]
ESCAPED = {"a": r"\x61", "é": r"\u00e9", "😀": r"\u{1F600}", "\n": r"\n", "\t": r"\t"}
CLASS_ITEMS = ["a", "b", "a-c", "0-9", "é", "\\u4e00-\\u9fff", "\\d", "\\w", "\\s", "\\W", "\\-", "\\]", "😀"]
SYNTAX = set("^$\\.*+?()[]{}|/")

leaves = (st.sampled_from(LITERALS).map(lambda c: ("lit", c, False))
          | st.sampled_from(list(ESCAPED)).map(lambda c: ("lit", c, True))
          | st.just(("dot",))
          | st.sampled_from("dDwWsS").map(lambda e: ("esc", e))
          | st.tuples(st.just("class"), st.booleans(),
                      st.lists(st.sampled_from(CLASS_ITEMS), min_size=1, max_size=3)))
quantifiers = st.sampled_from([(0, None), (1, None), (0, 1), (2, 2), (1, 3), (2, None), (0, 2)])
trees = st.recursive(leaves, lambda sub: (
    st.tuples(st.just("seq"), st.lists(sub, min_size=2, max_size=3))
    | st.tuples(st.just("alt"), st.lists(sub, min_size=2, max_size=3))
    | st.tuples(st.just("rep"), sub, quantifiers, st.booleans())
    | st.tuples(st.just("group"), st.sampled_from(["(", "(?:"]), sub)), max_leaves=6)


def render(node: tuple) -> str:
    match node:
        case ("lit", c, escaped):
            return ESCAPED[c] if escaped else "\\" + c if c in SYNTAX else c
        case ("dot",):
            return "."
        case ("esc", e):
            return "\\" + e
        case ("class", negate, items):
            return "[" + "^" * negate + "".join(items) + "]"
        case ("seq", items):
            return "".join(f"(?:{render(i)})" if i[0] == "alt" else render(i) for i in items)
        case ("alt", items):
            return "|".join(render(i) for i in items)
        case ("rep", item, (lo, hi), lazy):
            inner = render(item)
            atom = inner if item[0] in ("lit", "dot", "esc", "class", "group") else f"(?:{inner})"
            q = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((lo, hi)) or (
                f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi is None else hi}}}")
            return atom + q + "?" * lazy
        case ("group", kind, item):
            return f"{kind}{render(item)})"
    raise AssertionError(node)


def sample(node: tuple, rnd: random.Random) -> str:
    match node:
        case ("lit", c, _):
            return c
        case ("seq", items):
            return "".join(sample(i, rnd) for i in items)
        case ("alt", items):
            return sample(rnd.choice(items), rnd)
        case ("rep", item, (lo, hi), _):
            return "".join(sample(item, rnd) for _ in range(rnd.randint(lo, lo + 2 if hi is None else hi)))
        case ("group", _, item):
            return sample(item, rnd)
    ref = re.compile(to_python(render(node)), re.ASCII)
    return rnd.choice([c for c in ALPHABET if ref.fullmatch(c)] or ALPHABET)


@settings(max_examples=300, deadline=None)
@given(tree=trees, anchors=st.sampled_from(["", "^", "$", "^$"]), rnd=st.randoms(use_true_random=False),
       texts=st.lists(TEXT, max_size=3))
def test_generated_patterns_agree_with_re(tree: tuple, anchors: str, rnd: random.Random,
                                          texts: list[str]) -> None:
    body = render(tree)
    pattern = ("^" if "^" in anchors else "") + f"(?:{body})" + ("$" if "$" in anchors else "")
    samples = [sample(tree, rnd) for _ in range(4)]
    samples += [rnd.choice(texts + [""]) + s + rnd.choice(ALPHABET) for s in samples]
    check_against_re(pattern, samples + texts)
    assert is_minimal(regex_dfa(pattern)) and is_minimal(regex_dfa(pattern, search=True))


def test_minimal_dfa_of_textbook_example() -> None:
    dfa = regex_dfa("(a|b)*abb")
    assert dfa.num_states == 4 and is_minimal(dfa)


VALID = np.array([c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF])


def accepted_code_points(dfa: Dfa) -> np.ndarray:
    """The code points whose UTF-8 encoding the DFA accepts, run over all of them at once."""
    data = np.frombuffer("".join(map(chr, VALID)).encode(), dtype=np.uint8)
    length = 1 + (VALID >= 0x80) + (VALID >= 0x800) + (VALID >= 0x10000)
    offset = np.cumsum(length) - length
    trans = np.vstack([dfa.trans, np.full((1, 256), -1, dtype=np.int32)])     # row -1: dead
    state = np.zeros(len(VALID), dtype=np.int64)
    for i in range(4):
        more = length > i
        state[more] = trans[state[more], data[offset[more] + i]]
    return VALID[np.append(dfa.accept, False)[state]]


def count_accepted_by_length(dfa: Dfa, max_len: int) -> list[int]:
    n = dfa.num_states
    steps = np.zeros((n, n), dtype=np.int64)
    src, byte = np.nonzero(dfa.trans >= 0)
    np.add.at(steps, (src, dfa.trans[src, byte]), 1)
    counts, out = np.eye(n, dtype=np.int64)[0], []
    for _ in range(max_len + 1):
        out.append(int(counts[dfa.accept].sum()))
        counts = counts @ steps
    return out


@pytest.mark.parametrize("pattern,excluded", [(".", [0x0A, 0x0D, 0x2028, 0x2029]), ("[^a]", [0x61]),
                                              (r"[\s\S]", []), (r"[^\u{1F600}\u00e9]", [0x1F600, 0xE9])])
def test_one_code_point_is_exactly_its_utf8_encodings(pattern: str, excluded: list[int]) -> None:
    dfa = regex_dfa(pattern)
    expected = np.setdiff1d(VALID, excluded)
    assert np.array_equal(accepted_code_points(dfa), expected)
    # Every expected encoding is accepted and no more strings than that exist: so no overlong,
    # surrogate (ED A0..BF ..) or truncated sequence is accepted, at any length.
    counts = count_accepted_by_length(dfa, 8)
    assert sum(counts) == len(expected) and counts[5:] == [0, 0, 0, 0]
    assert not dfa.matches(b"\xed\xa0\x80") and not dfa.matches(b"\xc0\x80") and not dfa.matches(b"\xf4\x90\x80\x80")


def test_negated_class_and_dot_take_every_utf8_length() -> None:
    for text in ["é", "東", "😀", "\x7f", "\u0080", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff"]:
        assert regex_dfa("[^a]").matches(text.encode()) and regex_dfa(".").matches(text.encode())
    assert not regex_dfa("[^a]").matches(b"a") and not regex_dfa(".").matches("\u2028".encode())
    assert not regex_dfa(r"\uD800").accept.any()                      # a lone surrogate: nothing
    assert regex_dfa(r"^\uD83D\uDE00$").matches("😀".encode())        # a pair: one code point


@pytest.mark.parametrize("pattern,named", [
    ("a(?=b)", "lookahead"), ("a(?!b)", "negative lookahead"), ("(?<=a)b", "lookbehind"),
    ("(?<!a)b", "negative lookbehind"), (r"(a)\1", "backreference"), (r"(?<x>a)\k<x>", "backreference"),
    ("a^b", "'^' anchor in the middle"), ("a$b", "'$' anchor in the middle"), ("(^a|b)c", "'^' anchor"),
    (r"\bword", "word boundary"), (r"\p{L}", "Unicode property"), ("(?i)a", "inline flags"),
    ("a**", "nothing to repeat"), ("(a", "missing ')'"), ("a)", "unmatched ')'"), ("[a", "unterminated"),
    ("[z-a]", "out of order"), ("a{3,1}", "out of order"), (r"\q", "unknown escape"), (r"\u12", "hex digits"),
    ("(" * 200 + ")" * 200, "nested too deep"), (r"[ab]*a[ab]{14}", "too complex"),
    ("a{200000}", "too complex"), ("((a{100}){100}){100}", "too complex"),
])
def test_unsupported_constructs_are_named(pattern: str, named: str) -> None:
    with pytest.raises(UnsupportedRegex, match=re.escape(named)):
        regex_dfa(pattern)


@pytest.mark.parametrize("pattern,yes,no", [
    (r"\x41\u0042\u{43}", "ABC", "abc"), (r"\n\t\r\f\v\0", "\n\t\r\f\v\0", ""), (r"\cJ", "\n", "cJ"),
    (r"\/\.\*\\", "/.*\\", ""), ("a{", "a{", "a"), ("a{x}", "a{x}", "a"), ("x{,2}", "x{,2}", "xx"),
    ("]}", "]}", ""), (r"[\b]", "\b", "b"), (r"[\d-z]", "-", "y"), ("[a-]", "-", "b"), ("[]", None, ""),
    ("[^]", "\n", ""), ("a{2}?", "aa", "a"), ("(?<n>a)|b", "a", ""), (r"\é", "é", ""),
])
def test_escapes_and_lenient_syntax(pattern: str, yes: str | None, no: str) -> None:
    dfa = regex_dfa(pattern)
    assert yes is None or dfa.matches(yes.encode())
    assert not dfa.matches(no.encode())


@settings(max_examples=60, deadline=None)
@given(options=st.lists(TEXT, max_size=6), probes=st.lists(TEXT, max_size=4))
def test_literal_and_choice_match_exactly_their_strings(options: list[str], probes: list[str]) -> None:
    choice = choice_dfa(options)
    assert is_minimal(choice)
    for text in options + probes + [a + b for a in options for b in options] + [o[:-1] for o in options]:
        assert choice.matches(text.encode()) == (text in options)
        if options:
            assert literal_dfa(options[0]).matches(text.encode()) == (text == options[0])


def same_language(a: Dfa, b: Dfa) -> bool:
    # Minimal DFAs numbered breadth-first in byte order are canonical: equal languages, equal arrays.
    return np.array_equal(a.trans, b.trans) and np.array_equal(a.accept, b.accept)


def test_combinators_compose_like_the_regex_they_spell() -> None:
    ab = literal("ab")
    assert same_language(to_dfa(repeat(ab, 2, 4)), regex_dfa("(?:ab){2,4}"))
    assert same_language(to_dfa(repeat(ab, 0, None)), regex_dfa("(?:ab)*"))
    assert same_language(to_dfa(repeat(ab, 3, None)), regex_dfa("(?:ab){3,}"))
    spelled = concat(nfa_from_regex("x+"), optional(ab), star(literal("é")))
    assert same_language(to_dfa(spelled), regex_dfa("x+(?:ab)?é*"))
    assert same_language(to_dfa(union(plus(ab), chars(((0x61, 0x63),)))), regex_dfa("(?:ab)+|[a-c]"))
    assert same_language(to_dfa(nfa_from_regex("[0-9]", search=True)), regex_dfa(r"[\s\S]*\d[\s\S]*"))
    assert not to_dfa(union()).accept.any() and to_dfa(concat()).matches(b"")


def test_cache_shares_read_only_dfas_and_remembers_failures() -> None:
    a = regex_to_dfa_cached(r"^\d+$")
    assert a is regex_to_dfa_cached(r"^\d+$") and not a.trans.flags.writeable and not a.accept.flags.writeable
    assert regex_to_dfa_cached(r"^\d+$", search=True) is a or same_language(a, regex_dfa(r"^\d+$"))
    for _ in range(2):
        with pytest.raises(UnsupportedRegex, match="lookahead"):
            regex_to_dfa_cached("(?=x)")
