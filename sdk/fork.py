"""Branches: `s.fork(n)` copies the state n times after filling what is pending (the branches share
those values), and the branches' pending turns run concurrently, all of them at once, whenever any
branch needs a value or the parent joins them.

On radixgate the branches' requests share the parent's prompt, which the radix cache holds once:
before they go out, one short request computes it (`Backend.prefill`), so that the branches, sent
together, find it cached instead of each computing it in the same step.

Joining (`s.join(branches, mode)`):
    gather   every field a branch filled after the fork becomes, in the parent, the list of the
             branches' values (None where a branch did not fill it); scores likewise
    concat   also that, and the text each branch added to its last turn after the fork is appended,
             branch by branch, to the parent's assistant turn
A branch's failure fails the join (the branch keeps its own error).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sdk.backends.base import ProgramError, Usage

if TYPE_CHECKING:
    from sdk.state import ProgramState

MODES = ("gather", "concat")


def fork(parent: ProgramState, n: int) -> list[ProgramState]:
    if not isinstance(n, int) or n < 1:
        raise ValueError("fork needs n >= 1")
    parent.flush()
    if n > 1 and parent.turns:
        last = parent.turns[-1]
        open_turn = last.role == "assistant"
        before = parent.turns[:-1] if open_turn else parent.turns
        try:
            parent.usage.add(parent.backend.prefill([t.message() for t in before], last.text if open_turn else ""))
        except BaseException as err:
            parent.error = err
            raise
    branches = []
    for _ in range(n):
        b = type(parent)(parent.backend)
        b.turns = [t.copy() for t in parent.turns]
        b.values, b.scores, b.streaming = dict(parent.values), dict(parent.scores), parent.streaming
        b.forked_at = (len(parent.turns), len(parent.turns[-1].text) if parent.turns else 0)
        branches.append(b)
    for b in branches:
        b.group = branches
    return branches


def flush_all(states: list[ProgramState]) -> None:
    """Fill every state's pending turns concurrently; raise the first failure after all are done."""
    pending = [s for s in states if s.error is None and any(t.pending for t in s.turns)]
    if len(pending) > 1:
        with ThreadPoolExecutor(max_workers=len(pending), thread_name_prefix="sdk-branch") as pool:
            list(pool.map(lambda s: s.fill_recorded(), pending))
    elif pending:
        pending[0].fill_recorded()
    for i, s in enumerate(states):
        if s.error is not None:
            raise ProgramError(f"branch {i} failed: {s.error}") from s.error


def join(parent: ProgramState, branches: list[ProgramState], mode: str = "gather") -> None:
    if mode not in MODES:
        raise ValueError(f"join mode must be one of {', '.join(MODES)}")
    try:
        flush_all(branches)
    except BaseException as err:
        parent.error = err
        raise
    names: list[str] = []
    for b in branches:
        names += [n for n in b.filled if n not in names]
        parent.usage.add(b.usage)
        b.usage = Usage()                   # counted once, even if joined again
    for name in names:
        parent.values[name] = [b.values.get(name) for b in branches]
        if any(name in b.scores for b in branches):
            parent.scores[name] = [b.scores.get(name) for b in branches]
    if mode == "concat":
        parent += "".join(_added_text(b) for b in branches)


def _added_text(b: ProgramState) -> str:
    """The text a branch added to its turns after the fork, all in one."""
    turns, chars = b.forked_at
    parts = []
    for i, t in enumerate(b.turns):
        if i == turns - 1 and t.role == "assistant":
            parts.append(t.text[chars:])
        elif i >= turns:
            parts.append(t.text)
    return "".join(p for p in parts if p)
