"""JSON numbers as byte automata: `-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?`, bounded, and
optionally held to a range and a whole divisor.

Digits are bounded so generation ends and so the value jsonschema compares is the value written:
- integers: at most 20 digits (Python parses them exactly; ranges are exact at any size);
- numbers without bounds: 20 integer digits, 15 fraction digits, exponent of at most 2 digits
  (|x| < 1e120, so nothing parses to infinity);
- numbers with bounds: no exponent and at most 15 digits in all. A decimal of 15 significant digits
  round-trips through a double (DBL_DIG), so two such decimals compare as their floats do, and the
  bound is read as the shortest decimal of its float (`repr`), which must have 15 digits or fewer.

The automaton is built breadth-first over prefixes. A prefix is identified with every other prefix
that has the same future: in the integer part, for each count m of further integer digits, the
interval that the rest of the value (scaled to [0, 1)) must fall in, plus the remainder modulo the
divisor; in the fraction, that one interval. Prefixes in the middle of a range all share the key
"anything goes" (given the digits left), so the automaton stays small.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from gateway.structured.grammar import Dfa
from gateway.structured.json_cache import shared
from gateway.structured.json_text import trim

MAX_INT_DIGITS = 20
MAX_FRAC_DIGITS = 15
MAX_EXP_DIGITS = 2
BOUNDED_DIGITS = 15
DIGITS = b"0123456789"


class Range:
    """lo <= x <= hi (either end open when its flag is set; None: unbounded)."""
    __slots__ = ("_ends", "hi", "hi_open", "lo", "lo_open")

    def __init__(self, lo: Fraction | None = None, lo_open: bool = False,
                 hi: Fraction | None = None, hi_open: bool = False):
        self.lo, self.lo_open, self.hi, self.hi_open = lo, lo_open, hi, hi_open
        self._ends = None               # window's bounds as whole numbers, per sign (set at its first call)

    @property
    def bounded(self) -> bool:
        return self.lo is not None or self.hi is not None

    def magnitudes(self, negative: bool):
        """(low, low open, high) bounds on |x| for a number of this sign (None: unbounded)."""
        if negative:
            return (None if self.hi is None else -self.hi), self.hi_open, (None if self.lo is None else -self.lo)
        return self.lo, self.lo_open, self.hi

    def window(self, negative: bool, base: int, scale: int, den: int = 1):
        """Where u in [0, 1) may lie so that the value sign * (base + u * scale) / den is in range:
        'all', None (nowhere) or (a, a_open, b, b_open) inside [0, 1]. Whole-number arithmetic: a
        bound p/q compares as p * den against base * q, and Fractions are made only for a window
        that cuts [0, 1) (the automaton's construction asks this for every prefix and digit count)."""
        if self._ends is None:
            pq = lambda x: None if x is None else (x.numerator, x.denominator)
            neg = lambda x: None if x is None else -x
            self._ends = {False: (pq(self.lo), self.lo_open, pq(self.hi), self.hi_open),
                          True: (pq(neg(self.hi)), self.hi_open, pq(neg(self.lo)), self.lo_open)}
        lo, lo_open, hi, hi_open = self._ends[negative]     # negative: base + u s in [-hi, -lo]
        a_cut = b_cut = None               # (numerator, denominator) of a or b where it cuts [0, 1)
        if lo is not None:
            num, q = lo[0] * den - base * lo[1], scale * lo[1]
            if num > 0 or (num == 0 and lo_open):
                a_cut = (num, q)
        if hi is not None:
            num, q = hi[0] * den - base * hi[1], scale * hi[1]
            if num < 0:
                return None                # b < 0 <= a
            if num < q:
                b_cut = (num, q)
        if a_cut is None and b_cut is None:
            return "all"
        a, a_open = (Fraction(0), False) if a_cut is None else (Fraction(*a_cut), lo_open)
        b, b_open = (Fraction(1), True) if b_cut is None else (Fraction(*b_cut), hi_open)
        if a > b or (a == b and (a_open or b_open)):
            return None
        return (a, a_open, b, b_open)


def _contains_zero(window) -> bool:
    return window == "all" or (window is not None and window[0] == 0 and not window[1])


def number_dfa(bounds: Range | None = None, *, integer: bool = False, multiple_of: int | None = None) -> Dfa:
    """The JSON numbers in bounds (integers only when `integer`; multiples of `multiple_of`, which
    implies integer). Read-only and shared: built once per distinct request."""
    bounds = bounds or Range()
    return _number_dfa(bounds.lo, bounds.lo_open, bounds.hi, bounds.hi_open, integer, multiple_of)


@shared
def _number_dfa(lo, lo_open, hi, hi_open, integer, multiple_of) -> Dfa:
    bounds = Range(lo, lo_open, hi, hi_open)
    integer = integer or multiple_of is not None
    if integer:
        max_int, max_frac, budget, exponent = MAX_INT_DIGITS, 0, MAX_INT_DIGITS, False
    elif bounds.bounded:
        max_int, max_frac, budget, exponent = BOUNDED_DIGITS, MAX_FRAC_DIGITS, BOUNDED_DIGITS, False
    else:
        max_int, max_frac, budget, exponent = MAX_INT_DIGITS, MAX_FRAC_DIGITS, MAX_INT_DIGITS + MAX_FRAC_DIGITS, True
    mod = multiple_of or 1

    powers = [10 ** m for m in range(max(max_int, budget) + 2)]

    def sides(negative: bool):
        """(low, low open, high, above high, above low) on |x| for one sign (key's tests, made once)."""
        low, low_open, high = bounds.magnitudes(negative)
        above_high = None if high is None else lambda n: n * high.denominator > high.numerator
        above_low = (lambda n: True) if low is None else lambda n: n * low.denominator > low.numerator
        return low, low_open, high, above_high, above_low

    by_sign = {False: sides(False), True: sides(True)}

    def key(prefix):
        """The prefix's future (see the module doc); None when it has none."""
        kind = prefix[0]
        if kind in ("start", "minus", "e", "esign", "exp"):
            return prefix
        _, negative, ipart, fpart = prefix
        k = len(ipart)
        if fpart is None:
            windows = []
            more = 0 if ipart == "0" else min(max_int, budget) - k
            low, low_open, high, above_high, above_low = by_sign[negative]
            value, live = int(ipart), False
            for m in range(more + 1):
                base = value * powers[m]
                if above_high is not None and above_high(base):          # and so for every longer integer part
                    windows += [None] * (more + 1 - m)
                    break
                if high is None and ipart != "0" and (above_low(base) or (base == low and not low_open)):
                    windows += ["all"] * (more + 1 - m)
                    live = True
                    break
                w = bounds.window(negative, base, powers[m])
                live = live or w is not None
                windows.append(w)
            if not live:
                return None
            return ("int", ipart == "0", budget - k, tuple(windows), value % mod)
        j = len(fpart)
        room = min(max_frac - j, budget - k - j)
        if room < 0:
            return None
        window = bounds.window(negative, int(ipart + fpart), 1, 10 ** j)
        if window is None or (room == 0 and not (j and _contains_zero(window))):
            return None
        return ("frac", j == 0, room, window)

    def accepting(prefix, k) -> bool:
        if k[0] == "int":
            return _contains_zero(k[3][0]) and k[4] == 0
        if k[0] == "frac":
            return not k[1] and _contains_zero(k[3])
        return k[0] == "exp"

    def step(prefix, byte: int):
        kind = prefix[0]
        if kind in ("start", "minus") and byte in DIGITS:
            return ("num", kind == "minus", chr(byte), None)
        if kind == "start" and byte == ord("-"):
            return ("minus",)
        if kind == "num":
            _, negative, ipart, fpart = prefix
            if byte in DIGITS:
                if fpart is None:
                    return None if ipart == "0" else ("num", negative, ipart + chr(byte), None)
                return ("num", negative, ipart, fpart + chr(byte))
            if byte == ord(".") and fpart is None and not integer:
                return ("num", negative, ipart, "")
            if byte in b"eE" and exponent and fpart != "":
                return ("e",)
            return None
        if kind == "e" and byte in b"+-":
            return ("esign",)
        if kind in ("e", "esign") and byte in DIGITS:
            return ("exp", 1)
        if kind == "exp" and byte in DIGITS and prefix[1] < MAX_EXP_DIGITS:
            return ("exp", prefix[1] + 1)
        return None

    start = ("start",)
    ids = {key(start): 0}
    reps = [(start, key(start))]
    rows = np.full((64, 256), -1, dtype=np.int32)
    accept: list[bool] = []
    for i, (prefix, prefix_key) in enumerate(reps):        # grows while we walk it
        if i == len(rows):
            rows = np.vstack([rows, np.full_like(rows, -1)])
        for byte in b"-0123456789.eE+":
            nxt = step(prefix, byte)
            nk = key(nxt) if nxt is not None else None
            if nk is None:
                continue
            if nk not in ids:
                ids[nk] = len(reps)
                reps.append((nxt, nk))
            rows[i, byte] = ids[nk]
        accept.append(accepting(prefix, prefix_key))
    return trim(Dfa(rows[:len(reps)].copy(), np.array(accept, dtype=np.bool_)))
