"""What a workload is made of: sessions that yield batches of OpenAI calls and receive their answers.

A session is a generator. Each `yield` hands the runner a list of calls that may run at once (one call:
a plain step; several: a fork, whose branches share their prompt's prefix), and gets back their answer
texts in the same order, so the next step can be built from them (multi-turn chat, agent steps, merges).

Calls use radixgate's extensions only where the workload needs them and only when `extensions` is on:
`choices` (select), `regex`, the `program` chat extension, `ignore_eos`. With it off every call is a
plain OpenAI body that any compatible endpoint takes; a select or a regex field becomes a plain
generation of about the same length, so the token work stays comparable.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field


@dataclass(slots=True)
class Call:
    endpoint: str            # "chat" (/v1/chat/completions) or "completions" (/v1/completions)
    body: dict               # an OpenAI body without model and stream, which the runner adds


Session = Generator[list[Call], list[str], None]


@dataclass(frozen=True, slots=True)
class Options:
    scale: float = 1.0           # multiplies every prompt and output length of the published shape
    extensions: bool = True      # radixgate's choices / regex / program / ignore_eos; off: plain OpenAI bodies
    ignore_eos: bool = True      # free generations run to their shaped length (random-weight models)

    def tokens(self, n: float) -> int:
        return max(1, round(n * self.scale))


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    shape: str                                                        # the published shape, in words
    build: Callable[[random.Random, int, Options], list[Session]]     # (rng, sessions, options)
    structured: bool = False                                          # uses choices / regex / program

    def sessions(self, n: int, seed: int = 0, options: Options = Options()) -> list[Session]:
        return self.build(random.Random(f"{self.name}-{seed}"), n, options)


def spawn(rng: random.Random) -> random.Random:
    """A session's own generator, drawn when the session is built: sessions run in whatever order the
    server answers them, and each still makes the same requests."""
    return random.Random(rng.getrandbits(64))


@dataclass(slots=True)
class Chat:
    """A conversation that grows turn by turn; `call` builds the next request on it."""
    messages: list[dict] = field(default_factory=list)

    def add(self, role: str, content: str) -> Chat:
        self.messages.append({"role": role, "content": content})
        return self

    def fork(self) -> Chat:
        return Chat(list(self.messages))


def gen(opts: Options, max_tokens: int, temperature: float = 0.7, **extra) -> dict:
    """Sampling fields of a free generation of `max_tokens` tokens."""
    body = {"max_tokens": max_tokens, "temperature": temperature, **extra}
    if opts.ignore_eos and opts.extensions and "stop" not in extra:
        body["ignore_eos"] = True
    return body


def chat_call(chat: Chat, fields: dict) -> Call:
    return Call("chat", {"messages": list(chat.messages), **fields})


def completion_call(prompt: str, fields: dict) -> Call:
    return Call("completions", {"prompt": prompt, **fields})


def select(opts: Options, choices: list[str]) -> dict:
    """Pick one of `choices` (greedy under the choice grammar); plain: a greedy answer as long as the longest."""
    if opts.extensions:
        return {"choices": choices, "temperature": 0.0, "max_tokens": 2 * max(len(c.split()) for c in choices) + 8}
    return {"temperature": 0.0, "max_tokens": max(len(c.split()) for c in choices) + 2}


def regex(opts: Options, pattern: str, max_tokens: int) -> dict:
    return {"temperature": 0.0, "max_tokens": max_tokens, **({"regex": pattern} if opts.extensions else {})}


def program(opts: Options, segments: list[dict]) -> dict:
    """One assistant turn filled by segments; plain: a generation as long as the gens and selects together."""
    if opts.extensions:
        return {"program": segments, "temperature": 0.7}
    budget = sum(s.get("max_tokens") or 16 for s in segments if "gen" in s)
    budget += sum(max(len(c.split()) for c in s["choices"]) + 1 for s in segments if "select" in s)
    budget += sum(len(s["text"].split()) for s in segments if "text" in s)
    return {"max_tokens": budget, "temperature": 0.7}
