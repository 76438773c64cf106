"""A program's conversation as turns, and a field's text as a stream for `text_iter`.

A turn is one message: its role and its segments, of which `segments[:done]` are filled and their
text is `text`. Fields run lazily: adding a gen or select only records it, and the turn stays
pending until a value is needed (reading a field, a fork, a join, the program's end), so every field
of one turn goes to the backend together (one request on radixgate).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sdk.primitives import Field, Segment, Text


@dataclass(slots=True)
class Turn:
    role: str
    segments: list[Segment] = field(default_factory=list)
    done: int = 0                       # segments[:done] are filled
    text: str = ""                      # their text

    def add(self, seg: Segment) -> None:
        self.segments.append(seg)
        self.advance()

    def advance(self) -> None:
        """Literals after the last filled segment are known at once."""
        while self.done < len(self.segments) and isinstance(self.segments[self.done], Text):
            self.text += self.segments[self.done].text
            self.done += 1

    @property
    def pending(self) -> list[Segment]:
        return self.segments[self.done:]

    def pending_names(self) -> set[str]:
        return {s.name for s in self.pending if not isinstance(s, Text)}

    def to_run(self) -> list[Segment]:
        """What the backend fills: the text so far as one literal, then the pending segments."""
        return ([Text(self.text)] if self.text else []) + self.pending

    def fill(self, values: dict[str, str]) -> None:
        for seg in self.pending:
            self.text += seg.text if isinstance(seg, Text) else values[seg.name]
        self.done = len(self.segments)

    def message(self) -> dict:
        return {"role": self.role, "content": self.text}

    def copy(self) -> Turn:
        return Turn(self.role, list(self.segments), self.done, self.text)


def fields_of(segments: list[Segment]) -> list[Field]:
    return [s for s in segments if not isinstance(s, Text)]


class FieldStream:
    """A field's text in pieces as the backend generates it; iterating waits for more until the
    field is filled (or the program ended without it)."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.done = False
        self._cond = threading.Condition()

    def push(self, piece: str) -> None:
        with self._cond:
            self.pieces.append(piece)
            self._cond.notify_all()

    def finish(self, value: str | None = None) -> None:
        """The field is filled with `value`: what the pieces lack of it is pushed (a backend that
        does not stream a field gives it whole here)."""
        with self._cond:
            if self.done:
                return
            seen = "".join(self.pieces)
            if value is not None and value.startswith(seen) and len(value) > len(seen):
                self.pieces.append(value[len(seen):])
            self.done = True
            self._cond.notify_all()

    def __iter__(self):
        i = 0
        while True:
            with self._cond:
                while i >= len(self.pieces) and not self.done:
                    self._cond.wait()
                if i >= len(self.pieces):
                    return
                piece = self.pieces[i]
            i += 1
            yield piece
