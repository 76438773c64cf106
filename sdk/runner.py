"""`@function` programs and running them: `prog.run(...)` for one, `prog.run_batch([...])` for many
with bounded concurrency.

    @function
    def qa(s, question):
        s += user(question)
        s += assistant(gen("answer", max_tokens=64))

    state = qa.run(question="...", backend=RadixGate("http://127.0.0.1:8000"))
    state["answer"]

`run` fills whatever is still pending when the program returns. A failure is recorded on the
state (`state.error`) and never swallowed: reading a field of a failed state raises it, and
`state.check()` (or `check=True`) raises it at once.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from sdk.backends.base import Backend
from sdk.progress import Progress
from sdk.state import ProgramState

_default: list[Backend | None] = [None]


def set_default_backend(backend: Backend | None) -> None:
    _default[0] = backend


def _backend(backend: Backend | None) -> Backend:
    chosen = backend or _default[0]
    if chosen is None:
        raise ValueError("no backend: pass backend=... or call sdk.set_default_backend(...)")
    return chosen


class Function:
    def __init__(self, fn: Callable[..., object]):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, s: ProgramState, *args, **kwargs):
        """Call the program on an existing state (a program inside another)."""
        return self.fn(s, *args, **kwargs)

    def run(self, *args, backend: Backend | None = None, stream: bool = False, check: bool = False,
            **kwargs) -> ProgramState:
        """Run the program on a fresh state. `stream=True` runs it in the background and returns at
        once: read fields as they are generated with `state.text_iter(name)`, wait with `state.wait()`."""
        state = ProgramState(_backend(backend))
        if stream:
            state.streaming = True
            state.thread = threading.Thread(target=self._execute, args=(state, args, kwargs), daemon=True,
                                            name=f"sdk-{self.fn.__name__}")
            state.thread.start()
            return state
        self._execute(state, args, kwargs)
        return state.check() if check else state

    def run_batch(self, batch: Iterable[Mapping | tuple], backend: Backend | None = None, *,
                  max_concurrency: int = 8, progress: bool = False, check: bool = False) -> list[ProgramState]:
        """Run the program once per argument set (a dict of keyword arguments, or a tuple of
        positional ones), at most `max_concurrency` at a time; the states come back in order."""
        jobs = list(batch)
        chosen = _backend(backend)
        bar = Progress(len(jobs), progress)

        def one(job) -> ProgramState:
            args, kwargs = (job, {}) if isinstance(job, tuple) else ((), dict(job))
            state = ProgramState(chosen)
            self._execute(state, args, kwargs)
            bar.advance(failed=state.error is not None)
            return state

        with ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="sdk-batch") as pool:
            states = list(pool.map(one, jobs))
        if check:
            for s in states:
                s.check()
        return states

    def _execute(self, state: ProgramState, args: tuple, kwargs: dict) -> None:
        try:
            state.returned = self.fn(state, *args, **kwargs)
            state.flush()
        except Exception as err:               # noqa: BLE001 (any failure of the program is the state's)
            if state.error is None:
                state.error = err
        finally:
            state.close_streams()


def function(fn: Callable[..., object]) -> Function:
    """Make `fn(s, ...)` a program: `fn.run(...)`, `fn.run_batch([...])`."""
    return Function(fn)
