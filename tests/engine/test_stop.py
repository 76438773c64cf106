"""Stop strings are found across any split of the text into pieces and never leak."""
from __future__ import annotations

from hypothesis import given, strategies as st

from gateway.engine.stop import StopStrings


def reference(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text as if generated one character at a time, stopping as soon as a stop string ends."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if s and text[:end].endswith(s)]
        if done:
            return text[:end - max(map(len, done))], True
    return text, False


@given(st.text(alphabet="ab\nc😀", max_size=30), st.lists(st.text(alphabet="ab\nc😀", min_size=1, max_size=4), max_size=3),
       st.lists(st.integers(0, 30), max_size=8))
def test_any_split_gives_the_reference_cut(text, stops, cuts):
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    checker, out, stopped = StopStrings(stops), "", False
    for a, b in zip(bounds, bounds[1:]):
        emitted, stopped = checker.feed(text[a:b])
        out += emitted
        if stopped:
            break
    if not stopped:
        out += checker.flush()
    assert (out, stopped) == reference(text, stops)


def test_the_stop_that_completes_first_wins():
    assert StopStrings(["abcd", "c"]).feed("xabcd") == ("xab", True)


def test_partial_stop_is_held_then_released():
    checker = StopStrings(["</end>"])
    assert checker.feed("hello </e") == ("hello ", False)
    assert checker.feed("xtra") == ("</extra", False)
    assert checker.feed(" </en") == (" ", False)
    assert checker.feed("d> tail") == ("", True)
