"""The program state without a server: a scripted backend shows which turns go out together, what
each request carries, how fork/join, run_batch, streaming and errors behave."""
from __future__ import annotations

import threading
import time

import pytest

from sdk import ProgramError, TurnResult, Usage, assistant, function, gen, select, system, user
from sdk.backends.radixgate import _Router
from sdk.primitives import Gen, Select, Text


class Scripted:
    """Fills each gen with "<name>" (or `values[name]`) and each select with its last choice."""

    def __init__(self, values=None, fail_on: str | None = None, delay: float = 0.0):
        self.values, self.fail_on, self.delay = values or {}, fail_on, delay
        self.calls: list[tuple[list[dict], list]] = []
        self.prefills: list[tuple[list[dict], str]] = []
        self.in_flight = self.most = 0
        self.lock = threading.Lock()

    def run_turn(self, messages, segments, on_text=None) -> TurnResult:
        with self.lock:
            self.calls.append((messages, segments))
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(self.delay)
            values = {}
            for seg in segments:
                if isinstance(seg, Text):
                    continue
                if seg.name == self.fail_on:
                    raise RuntimeError(f"backend failed on {seg.name}")
                value = seg.choices[-1] if isinstance(seg, Select) else self.values.get(seg.name, f"<{seg.name}>")
                if on_text is not None:
                    on_text(seg.name, value[:2])
                    on_text(seg.name, value[2:])
                values[seg.name] = value
            return TurnResult(values, usage=Usage(10, 1, 5, 1))
        finally:
            with self.lock:
                self.in_flight -= 1

    def prefill(self, messages, partial):
        self.prefills.append((messages, partial))
        return Usage(requests=1)


def shapes(segments) -> list:
    return [s.text if isinstance(s, Text) else (type(s).__name__, s.name) for s in segments]


def test_an_assistant_turn_with_several_fields_is_one_request():
    b = Scripted()

    @function
    def prog(s):
        s += system("sys")
        s += user("q")
        s += "A: " + gen("a", max_tokens=3) + " B: " + select("b", ["x", "y"])
        s += "."

    state = prog.run(backend=b).check()
    assert len(b.calls) == 1
    messages, segments = b.calls[0]
    assert messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}]
    assert shapes(segments) == ["A: ", ("Gen", "a"), " B: ", ("Select", "b"), "."]
    assert state.messages()[-1] == {"role": "assistant", "content": "A: <a> B: y."}
    assert state["a"] == "<a>" and state.usage.requests == 1


def test_reading_a_field_mid_turn_sends_the_turn_so_far_as_text():
    b = Scripted()

    @function
    def prog(s):
        s += user("q")
        s += "A: " + gen("a")
        first = s["a"]
        s += f" ({first}) then " + gen("b")

    prog.run(backend=b).check()
    assert [shapes(seg) for _, seg in b.calls] == [["A: ", ("Gen", "a")], ["A: <a> (<a>) then ", ("Gen", "b")]]
    assert b.calls[1][0] == [{"role": "user", "content": "q"}]


def test_later_turns_see_earlier_ones_and_a_reused_name_is_filled_in_order():
    b = Scripted()

    @function
    def prog(s):
        for i in range(2):
            s += user(f"q{i}")
            s += assistant(gen("answer"))
        s += " and " + gen("answer")                 # the name again, in the same turn: filled after the first

    state = prog.run(backend=b).check()
    assert [m for m, _ in b.calls][1] == [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "<answer>"},
                                          {"role": "user", "content": "q1"}]
    assert len(b.calls) == 3 and state.text() == "<answer> and <answer>"


def test_gen_outside_the_assistants_turn_is_refused():
    with pytest.raises(ValueError):
        user("x" + gen("a"))
    with pytest.raises(ValueError):
        select("a", ["x", "x"])

    @function
    def prog(s):
        with s.user():
            s += "hello " + gen("a")

    state = prog.run(backend=Scripted())
    assert isinstance(state.error, ValueError)


def test_errors_are_recorded_and_raised_on_request():
    b = Scripted(fail_on="b")

    @function
    def prog(s):
        s += user("q")
        s += assistant(gen("a"))
        s += user("more")
        s += assistant(gen("b"))

    state = prog.run(backend=b)
    assert isinstance(state.error, RuntimeError) and "failed on b" in str(state.error)
    assert state.values == {"a": "<a>"}
    with pytest.raises(RuntimeError):
        state["b"]
    with pytest.raises(RuntimeError):
        state.check()
    with pytest.raises(RuntimeError):
        prog.run(backend=b, check=True)


def test_a_backend_that_drops_a_field_is_an_error():
    class Dropping(Scripted):
        def run_turn(self, messages, segments, on_text=None):
            return TurnResult({})

    @function
    def prog(s):
        s += gen("a")

    state = prog.run(backend=Dropping())
    assert isinstance(state.error, ProgramError) and "no value for a" in str(state.error)


def test_fork_runs_branches_concurrently_and_join_gathers_or_concatenates():
    b = Scripted(delay=0.2)

    @function
    def prog(s, mode):
        s += user("q")
        s += "Shared " + gen("first")
        branches = s.fork(4)
        for i, br in enumerate(branches):
            br += f" [{i}] " + gen("part")
        s.join(branches, mode)

    started = time.monotonic()
    state = prog.run("gather", backend=b).check()
    assert time.monotonic() - started < 0.2 * 4          # the four branch turns overlapped
    assert b.most == 4 and len(b.prefills) == 1
    assert b.prefills[0] == ([{"role": "user", "content": "q"}], "Shared <first>")
    assert state["part"] == ["<part>"] * 4 and state["first"] == "<first>"
    assert state.usage.requests == 1 + 1 + 4               # the first turn, the prefill, the branches
    concat = prog.run("concat", backend=Scripted()).check()
    assert concat.text() == "Shared <first>" + "".join(f" [{i}] <part>" for i in range(4))


def test_a_failing_branch_fails_the_join():
    b = Scripted(values={}, fail_on="bad")

    @function
    def prog(s):
        s += user("q")
        branches = s.fork(2)
        branches[0] += assistant(gen("good"))
        branches[1] += assistant(gen("bad"))
        s.join(branches)

    state = prog.run(backend=b)
    assert isinstance(state.error, ProgramError) and "branch 1" in str(state.error)


def test_run_batch_keeps_order_and_bounds_concurrency(capsys):
    b = Scripted(delay=0.05)

    @function
    def prog(s, i):
        s += user(f"q{i}")
        s += assistant(gen("a"))
        return i

    states = prog.run_batch([{"i": i} for i in range(10)], b, max_concurrency=3, progress=True)
    assert [s.returned for s in states] == list(range(10)) and b.most <= 3
    assert "10/10" in capsys.readouterr().err


def test_text_iter_streams_a_field_while_the_program_runs():
    b = Scripted(values={"story": "once upon a time"}, delay=0.05)

    @function
    def prog(s):
        s += user("tell")
        s += assistant(gen("story"))
        s += user("again")
        s += assistant(gen("story2"))

    state = prog.run(backend=b, stream=True)
    assert list(state.text_iter("story")) == ["on", "ce upon a time"]
    assert "".join(state.text_iter("story2")) == "<story2>"
    assert state.wait().check()["story"] == "once upon a time"
    # Outside a background run, text_iter fills the pending turn itself.
    s2 = function(lambda s: None).run(backend=b)
    s2 += gen("x")
    assert "".join(s2.text_iter("x")) == "<x>"
    b.values["x"] = "second"                              # the name filled again streams its new value
    s2 += " " + gen("x")
    assert "".join(s2.text_iter("x")) == "second" and s2.text() == "<x> second"


def test_radixgate_streamed_pieces_go_to_their_fields():
    got: list[tuple[str, str]] = []
    segs = [Text("A: "), Gen("a"), Text("\n"), Select("b", ["x", "yy"]), Text("!"), Gen("c")]
    route = _Router(segs, lambda name, piece: got.append((name, piece)))
    for piece in ["A: ", "he", "llo", "\n", "yy", "!", "end"]:
        route.feed(piece)
    assert got == [("a", "he"), ("a", "llo"), ("b", "yy"), ("c", "end")]
