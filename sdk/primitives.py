"""What a program adds to its state: literal text, generated fields (`gen`), choices (`select`) and
whole messages (`system`, `user`, `assistant`).

Pieces concatenate with `+` into one `Pieces` sequence, so `"Score: " + gen("score", regex=r"\\d")`
is one piece of an assistant turn. Every piece knows its wire form, the segment of radixgate's
`program` chat extension (gateway/api/program.py) it compiles to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NORMALIZE = ("mean", "sum", "first_token")


class Piece:
    """Anything `s += ...` takes; `a + b` is the sequence of both."""

    def __add__(self, other: PieceLike) -> Pieces:
        return Pieces(as_pieces(self) + as_pieces(other))

    def __radd__(self, other: PieceLike) -> Pieces:
        return Pieces(as_pieces(other) + as_pieces(self))


@dataclass(slots=True)
class Text(Piece):
    text: str

    def segment(self) -> dict:
        return {"text": self.text}


@dataclass(slots=True)
class Gen(Piece):
    """A generated field. At most one of regex, json_schema and choices constrains it; None means
    the backend's (or the request's) default."""
    name: str
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    temperature: float | None = None
    regex: str | None = None
    json_schema: dict | None = None
    choices: list[str] | None = None

    def segment(self) -> dict:
        seg: dict[str, Any] = {"gen": self.name}
        for key in ("max_tokens", "temperature", "regex", "json_schema", "choices"):
            if getattr(self, key) is not None:
                seg[key] = getattr(self, key)
        if self.stop:
            seg["stop"] = list(self.stop)
        return seg


@dataclass(slots=True)
class Select(Piece):
    """One of `choices`, the most likely after the text so far: on radixgate scored by the mean
    log-probability of its tokens (or `normalize`: sum | first_token); the scores are kept."""
    name: str
    choices: list[str]
    normalize: str = "mean"

    def segment(self) -> dict:
        seg = {"select": self.name, "choices": list(self.choices)}
        if self.normalize != "mean":
            seg["normalize"] = self.normalize
        return seg


Field = Gen | Select
Segment = Text | Gen | Select


@dataclass(slots=True)
class Pieces(Piece):
    items: list[Segment]


@dataclass(slots=True)
class Message(Piece):
    """A whole message; its content may hold fields only when the role is the assistant's."""
    role: str
    content: list[Segment]


PieceLike = str | Piece


def as_pieces(x: PieceLike) -> list[Segment]:
    if isinstance(x, str):
        return [Text(x)] if x else []
    if isinstance(x, Pieces):
        return list(x.items)
    if isinstance(x, (Text, Gen, Select)):
        return [x]
    if isinstance(x, Message):
        raise TypeError(f"a {x.role}(...) message cannot be part of another piece; add it to the state alone")
    raise TypeError(f"cannot add {type(x).__name__} to a program state (expected str, gen, select or a message)")


def gen(name: str, max_tokens: int | None = None, stop: str | list[str] | None = None,
        temperature: float | None = None, regex: str | None = None, json_schema: dict | None = None,
        choices: list[str] | None = None) -> Gen:
    if not isinstance(name, str) or not name:
        raise ValueError("a gen needs a non-empty name")
    if sum(c is not None for c in (regex, json_schema, choices)) > 1:
        raise ValueError(f"gen {name!r}: give at most one of regex, json_schema and choices")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
    return Gen(name, max_tokens, stops, temperature, regex, json_schema, None if choices is None else list(choices))


def select(name: str, choices: list[str], normalize: str = "mean") -> Select:
    if not isinstance(name, str) or not name:
        raise ValueError("a select needs a non-empty name")
    if not choices or not all(isinstance(c, str) and c for c in choices) or len(set(choices)) != len(choices):
        raise ValueError(f"select {name!r}: choices must be distinct non-empty strings")
    if normalize not in NORMALIZE:
        raise ValueError(f"select {name!r}: normalize must be one of {', '.join(NORMALIZE)}")
    return Select(name, list(choices), normalize)


def _message(role: str, content: PieceLike | None) -> Message:
    items = as_pieces(content) if content is not None else []
    if role != "assistant" and any(not isinstance(p, Text) for p in items):
        raise ValueError(f"a {role} message holds text only; gen and select belong to the assistant's turn")
    return Message(role, items)


def system(content: PieceLike) -> Message:
    return _message("system", content)


def user(content: PieceLike) -> Message:
    return _message("user", content)


def assistant(content: PieceLike | None = None) -> Message:
    """A new assistant turn; `content` may mix text, gens and selects."""
    return _message("assistant", content)
