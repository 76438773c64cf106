"""Multi-turn chat: each turn's prompt is the whole conversation so far, answers included, so every
turn after the first finds its history in the cache. Short answers stress prefill and scheduling,
long ones decode."""
from __future__ import annotations

import random

from loadtest.workloads.base import Chat, Options, Session, Workload, chat_call, gen, spawn
from loadtest.workloads.text import around, words


def conversations(rng: random.Random, n: int, opts: Options, turns: int, user: int, answer: int) -> list[Session]:
    def session(r: random.Random) -> Session:
        chat = Chat().add("system", "You are a helpful assistant. " + words(r, opts.tokens(around(r, 40))))
        for _ in range(turns):
            chat.add("user", words(r, opts.tokens(around(r, user))))
            (reply,) = yield [chat_call(chat, gen(opts, opts.tokens(around(r, answer))))]
            chat.add("assistant", reply)
    return [session(spawn(rng)) for _ in range(n)]


def short(rng: random.Random, n: int, opts: Options) -> list[Session]:
    return conversations(rng, n, opts, turns=4, user=192, answer=16)


def long(rng: random.Random, n: int, opts: Options) -> list[Session]:
    return conversations(rng, n, opts, turns=4, user=96, answer=384)


CHAT_SHORT = Workload("chat-short", "4 turns, ~200-token user turns, ~16-token answers", short)
CHAT_LONG = Workload("chat-long", "4 turns, ~100-token user turns, ~400-token answers", long)
