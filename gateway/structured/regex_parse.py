"""ECMAScript regular expressions (JSON Schema "pattern") parsed into a small tree over code points.

The tree knows nothing of bytes: a `Chars` leaf is a set of Unicode code points, and the caller
compiles it to UTF-8. Only the regular subset is accepted; assertions other than ^ and $,
lookarounds and backreferences raise `UnsupportedRegex` naming the construct, since a finite
automaton cannot express them. ^ and $ are kept as `Anchor` leaves for the caller to place.
Escapes follow the Unicode-mode (`u` flag) reading, plus the lenient Annex B forms every engine
accepts (a `{` that starts no quantifier is a literal, as are `]` and `}`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

MAX_CODE_POINT = 0x10FFFF
MAX_GROUP_DEPTH = 100               # the parser and the NFA builder recurse once per level
CodePoints = tuple[tuple[int, int], ...]    # sorted, disjoint, non-adjacent inclusive ranges


class UnsupportedRegex(ValueError):
    """The pattern uses a construct an automaton cannot express, is malformed, or is too complex."""


@dataclass(frozen=True, slots=True)
class Chars:
    ranges: CodePoints


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    item: Node
    min: int
    max: int | None                 # None: unbounded


@dataclass(frozen=True, slots=True)
class Anchor:
    kind: str                       # "^" or "$"


Node = Chars | Seq | Alt | Repeat | Anchor


def normalize(ranges: list[tuple[int, int]]) -> CodePoints:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def complement(ranges: CodePoints) -> CodePoints:
    out, nxt = [], 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


DIGIT = normalize([(0x30, 0x39)])
WORD = normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
LINE_TERMINATORS = normalize([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)])
# ECMA-262 WhiteSpace (TAB VT FF SP NBSP ZWNBSP and category Zs) plus LineTerminator.
SPACE = normalize([(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
                   (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)])
ANY = ((0, MAX_CODE_POINT),)
DOT = complement(LINE_TERMINATORS)
CLASS_ESCAPES = {"d": DIGIT, "D": complement(DIGIT), "w": WORD, "W": complement(WORD),
                 "s": SPACE, "S": complement(SPACE)}
CONTROL_ESCAPES = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B}
SYNTAX_CHARS = set("^$\\.*+?()[]{}|/-")
HEX = set("0123456789abcdefABCDEF")


def parse(pattern: str) -> Node:
    return _Parser(pattern).parse()


class _Parser:
    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self._disjunction()
        if self.i < len(self.p):
            self._fail("unmatched ')'")
        return node

    def _fail(self, what: str) -> NoReturn:
        raise UnsupportedRegex(f"{what} at offset {self.i} in pattern {self.p!r}")

    def _peek(self, text: str) -> bool:
        return self.p.startswith(text, self.i)

    def _disjunction(self) -> Node:
        alts = [self._alternative()]
        while self._peek("|"):
            self.i += 1
            alts.append(self._alternative())
        return alts[0] if len(alts) == 1 else Alt(tuple(alts))

    def _alternative(self) -> Node:
        items: list[Node] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            items.append(self._term())
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def _term(self) -> Node:
        c = self.p[self.i]
        if c in "^$":
            self.i += 1
            if self._quantifier() is not None:
                self._fail(f"quantifier on the anchor {c!r}")
            return Anchor(c)
        if c in "*+?":
            self._fail("nothing to repeat")
        if c == "{" and self._quantifier() is not None:
            self._fail("nothing to repeat")
        atom = self._atom()
        bounds = self._quantifier()
        if bounds is None:
            return atom
        if self.i < len(self.p) and self.p[self.i] in "*+?{" and self._quantifier() is not None:
            self._fail("nothing to repeat")
        return Repeat(atom, *bounds)

    def _quantifier(self) -> tuple[int, int | None] | None:
        """Consume a quantifier (and its lazy '?', which cannot change what matches) if one is here."""
        if self.i >= len(self.p):
            return None
        c, start = self.p[self.i], self.i
        if c in "*+?":
            self.i += 1
            bounds: tuple[int, int | None] = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        elif c == "{":
            j = self.p.find("}", self.i)
            body = self.p[self.i + 1:j] if j > 0 else ""
            lo, comma, hi = body.partition(",")
            if not lo.isascii() or not lo.isdigit() or not (hi == "" or hi.isascii() and hi.isdigit()):
                return None                                 # Annex B: a literal '{'
            bounds = (int(lo), int(hi) if hi else (None if comma else int(lo)))
            self.i = j + 1
            if bounds[1] is not None and bounds[1] < bounds[0]:
                self.i = start
                self._fail("numbers out of order in {} quantifier")
        else:
            return None
        if self._peek("?"):
            self.i += 1
        return bounds

    def _atom(self) -> Node:
        c = self.p[self.i]
        self.i += 1
        if c == ".":
            return Chars(DOT)
        if c == "[":
            return self._class()
        if c == "\\":
            return self._atom_escape()
        if c == "(":
            return self._group()
        return Chars(((ord(c), ord(c)),))

    def _group(self) -> Node:
        for prefix, name in (("?=", "lookahead"), ("?!", "negative lookahead"),
                             ("?<=", "lookbehind"), ("?<!", "negative lookbehind")):
            if self._peek(prefix):
                self._fail(f"{name} ({prefix}...)")
        if self._peek("?:"):
            self.i += 2
        elif self._peek("?<"):
            end = self.p.find(">", self.i)
            if end < 0:
                self._fail("unterminated group name")
            self.i = end + 1
        elif self._peek("?"):
            self._fail("inline flags or unknown group (?...)")
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            self._fail("groups nested too deep")
        node = self._disjunction()
        if not self._peek(")"):
            self._fail("missing ')'")
        self.i += 1
        self.depth -= 1
        return node

    def _atom_escape(self) -> Node:
        if self.i >= len(self.p):
            self._fail("trailing backslash")
        c = self.p[self.i]
        if c in "bB":
            self._fail(f"word boundary assertion \\{c}")
        if c in "123456789" or self._peek("k<"):
            self._fail("backreference")
        if c in CLASS_ESCAPES:
            self.i += 1
            return Chars(CLASS_ESCAPES[c])
        cp = self._char_escape()
        return Chars(((cp, cp),))

    def _char_escape(self) -> int:
        """The code point of the escape after a backslash (self.i is just past the backslash)."""
        c = self.p[self.i]
        self.i += 1
        if c in CONTROL_ESCAPES:
            return CONTROL_ESCAPES[c]
        if c == "0":
            if self.i < len(self.p) and self.p[self.i].isdigit():
                self._fail("octal escape")
            return 0
        if c == "c" and self.i < len(self.p) and self.p[self.i].isascii() and self.p[self.i].isalpha():
            self.i += 1
            return ord(self.p[self.i - 1]) % 32
        if c == "x":
            return self._hex(2)
        if c == "u":
            return self._unicode_escape()
        if c in "pP":
            self._fail(f"Unicode property escape \\{c}")
        if c.isascii() and c.isalnum() or c == "_":
            self._fail(f"unknown escape \\{c}")
        return ord(c)

    def _hex(self, n: int) -> int:
        digits = self.p[self.i:self.i + n]
        if len(digits) != n or not set(digits) <= HEX:
            self._fail(f"malformed escape (expected {n} hex digits)")
        self.i += n
        return int(digits, 16)

    def _unicode_escape(self) -> int:
        if self._peek("{"):
            end = self.p.find("}", self.i)
            digits = self.p[self.i + 1:end] if end > 0 else ""
            if not digits or not set(digits) <= HEX or int(digits, 16) > MAX_CODE_POINT:
                self._fail("malformed \\u{...} escape")
            self.i = end + 1
            return int(digits, 16)
        cp = self._hex(4)
        # A surrogate pair written as two escapes is one code point (Unicode mode); a lone surrogate
        # stays, and matches nothing, since valid UTF-8 cannot encode it.
        if 0xD800 <= cp <= 0xDBFF and self._peek("\\u") and not self._peek("\\u{"):
            low = self.p[self.i + 2:self.i + 6]
            if len(low) == 4 and set(low) <= HEX and 0xDC00 <= int(low, 16) <= 0xDFFF:
                self.i += 6
                return 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return cp

    def _class(self) -> Node:
        negate = self._peek("^")
        self.i += negate
        ranges: list[tuple[int, int]] = []
        while not self._peek("]"):
            if self.i >= len(self.p):
                self._fail("unterminated character class")
            lo = self._class_atom()
            if self._peek("-") and not self._peek("-]") and self.i + 1 < len(self.p):
                self.i += 1
                hi = self._class_atom()
                if isinstance(lo, int) and isinstance(hi, int):
                    if hi < lo:
                        self._fail("range out of order in character class")
                    ranges.append((lo, hi))
                    continue
                # Annex B: a range with a class escape at either end is the two sets and a '-'.
                ranges.append((0x2D, 0x2D))
                ranges.extend(hi if isinstance(hi, tuple) else [(hi, hi)])
            ranges.extend(lo if isinstance(lo, tuple) else [(lo, lo)])
        self.i += 1
        chars = normalize(ranges)
        return Chars(complement(chars) if negate else chars)

    def _class_atom(self) -> int | CodePoints:
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return ord(c)
        if self.i >= len(self.p):
            self._fail("trailing backslash")
        e = self.p[self.i]
        if e in CLASS_ESCAPES:
            self.i += 1
            return CLASS_ESCAPES[e]
        if e == "b":
            self.i += 1
            return 0x08
        if e == "-":
            self.i += 1
            return 0x2D
        if e in "123456789" or e == "k":
            self._fail("backreference")
        return self._char_escape()
