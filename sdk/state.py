"""The state `s` a program writes to: `s += piece`, `s[name]`, `s.fork(n)`, `s.join(...)`.

Where pieces go: a message (`system(...)`, `user(...)`, `assistant(...)`) starts a turn of its own;
bare text, gens and selects continue the last turn if it is the assistant's, else start one;
inside `with s.user():` (or `s.system()`, `s.assistant()`) they go to that block's turn.

Errors: a backend's failure is recorded in `s.error` and raised where the program needed the value
(reading the field, a fork, a join, the end of `run`); once failed, the state raises that error on
every use. `run` returns the failed state with `error` set; `check()` raises it.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sdk.backends.base import Backend, ProgramError, Usage
from sdk.fork import flush_all, fork, join
from sdk.primitives import Message, PieceLike, Text, as_pieces
from sdk.turns import FieldStream, Turn, fields_of


class ProgramState:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.turns: list[Turn] = []
        self.values: dict[str, Any] = {}              # filled fields by name (joined branches: lists)
        self.scores: dict[str, list[float]] = {}      # select scores by name, where the backend scores
        self.usage = Usage()                          # this state's requests (and its joined branches')
        self.error: BaseException | None = None
        self.returned: Any = None                     # what the program function returned
        self.group: list[ProgramState] | None = None  # the branches this one was forked with
        self.forked_at = (0, 0)                       # (turns, characters of the last turn) at the fork
        self.filled: list[str] = []                   # fields filled by this state, in order
        self.streaming = False                        # fields stream into text_iter
        self.thread: threading.Thread | None = None   # the program's, when it runs in the background
        self._role: str | None = None
        self._streams: dict[str, FieldStream] = {}
        self._lock = threading.RLock()

    # ----- writing ----------------------------------------------------------------------------

    def __iadd__(self, piece: PieceLike | Message) -> ProgramState:
        self._raise_if_failed()
        if isinstance(piece, Message):
            self.turns.append(Turn(piece.role))
            for seg in piece.content:
                self._add(self.turns[-1], seg)
            return self
        if self._role is not None or (self.turns and self.turns[-1].role == "assistant"):
            turn = self.turns[-1]
        else:
            turn = Turn("assistant")
            self.turns.append(turn)
        for seg in as_pieces(piece):
            if turn.role != "assistant" and not isinstance(seg, Text):
                raise ValueError(f"a {turn.role} turn holds text only; gen and select belong to the assistant's")
            self._add(turn, seg)
        return self

    def _add(self, turn: Turn, seg) -> None:
        if not isinstance(seg, Text) and seg.name in turn.pending_names():
            self.flush()                      # a field name reused in one turn: fill the first use first
        turn.add(seg)

    @contextlib.contextmanager
    def _block(self, role: str) -> Iterator[ProgramState]:
        self.turns.append(Turn(role))
        self._role = role
        try:
            yield self
        finally:
            self._role = None

    def system(self):
        return self._block("system")

    def user(self):
        return self._block("user")

    def assistant(self):
        return self._block("assistant")

    # ----- reading ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        if any(name in t.pending_names() for t in self.turns):
            self.flush()
        self._raise_if_failed()
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def messages(self) -> list[dict]:
        """The conversation as chat messages, every field filled."""
        self.flush()
        return [t.message() for t in self.turns]

    def text(self) -> str:
        """The last assistant turn's text."""
        self.flush()
        return next((t.text for t in reversed(self.turns) if t.role == "assistant"), "")

    def check(self) -> ProgramState:
        """Raise the error the program failed with, if any."""
        self._raise_if_failed()
        return self

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def text_iter(self, name: str) -> Iterator[str]:
        """The text of field `name` as it is generated. Runs the pending turns in a helper thread
        unless the program itself runs in the background (`run(..., stream=True)`)."""
        pending = any(name in t.pending_names() for t in self.turns)
        stream = self._stream(name) if pending or name not in self._streams else self._streams[name]
        helper = None
        if self.thread is None or not self.thread.is_alive():
            if pending:
                self.streaming = True
                helper = threading.Thread(target=self.fill_recorded, name=f"sdk-stream-{name}", daemon=True)
                helper.start()
            elif name in self.values:
                stream.finish(str(self.values[name]))
            elif not stream.done:
                raise KeyError(name)
        yield from stream
        if helper is not None:
            helper.join()
        self._raise_if_failed()

    # ----- running ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Fill every pending turn, in order; a branch fills its whole group at once (concurrently)."""
        self._raise_if_failed()
        if self.group is not None and any(t.pending for t in self.turns):
            flush_all(self.group)
        self._flush_own()

    def fill_recorded(self) -> None:
        """Fill this state's own pending turns; a failure stays in `error` for whoever reads next."""
        with contextlib.suppress(Exception):
            self._flush_own()
        if self.error is not None:
            self.close_streams()

    def _flush_own(self) -> None:
        with self._lock:
            self._raise_if_failed()
            for i, turn in enumerate(self.turns):
                if not turn.pending:
                    continue
                on_text = self._push if self.streaming else None
                try:
                    result = self.backend.run_turn([t.message() for t in self.turns[:i]], turn.to_run(), on_text)
                    missing = [f.name for f in fields_of(turn.pending) if f.name not in result.values]
                    if missing:
                        raise ProgramError(f"the backend returned no value for {', '.join(missing)}")
                except BaseException as err:
                    self.error = err
                    self.close_streams()
                    raise
                self.usage.add(result.usage)
                for f in fields_of(turn.pending):
                    self.values[f.name] = result.values[f.name]
                    self.filled.append(f.name)
                    if f.name in result.scores:
                        self.scores[f.name] = result.scores[f.name]
                    if f.name in self._streams:
                        self._stream(f.name).finish(result.values[f.name])
                turn.fill(result.values)

    def _push(self, name: str, piece: str) -> None:
        self._stream(name).push(piece)

    def _stream(self, name: str) -> FieldStream:
        """The stream of field `name`'s next value (a field filled again, in a loop, streams anew)."""
        stream = self._streams.get(name)
        if stream is None or stream.done:
            stream = self._streams[name] = FieldStream()
        return stream

    def close_streams(self) -> None:
        for name, stream in self._streams.items():
            stream.finish(self.values.get(name) if isinstance(self.values.get(name), str) else None)

    # ----- fork and join (sdk/fork.py) ----------------------------------------------------------

    def fork(self, n: int) -> list[ProgramState]:
        return fork(self, n)

    def join(self, branches: list[ProgramState], mode: str = "gather") -> ProgramState:
        join(self, branches, mode)
        return self

    def __repr__(self) -> str:
        state = f"error={self.error!r}" if self.error is not None else f"values={self.values!r}"
        return f"ProgramState({len(self.turns)} turns, {state})"

    def wait(self, timeout: float | None = None) -> ProgramState:
        """A program run in the background (`run(..., stream=True)`): wait until it ends."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self
