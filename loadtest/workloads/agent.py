"""A ReAct agent (HotpotQA-style): a long few-shot instruction, a question, then 3 to 6 steps, each a
thought and an action the model writes, followed by the tool's observation, which the next step's
prompt carries. Every step depends on the previous answer and re-reads the whole trajectory."""
from __future__ import annotations

import random

from loadtest.workloads.base import Chat, Options, Session, Workload, chat_call, program, spawn
from loadtest.workloads.text import around, name, words

ACTIONS = ["Search", "Lookup", "Finish"]


def example(rng: random.Random, opts: Options) -> str:
    steps = []
    for k in range(1, 4):
        steps.append(f"Thought {k}: {words(rng, opts.tokens(around(rng, 30)))}\n"
                     f"Action {k}: {rng.choice(ACTIONS)}[{name(rng)}]\n"
                     f"Observation {k}: {words(rng, opts.tokens(around(rng, 120)))}\n")
    return f"Question: {words(rng, opts.tokens(around(rng, 25)))}\n" + "".join(steps)


def step(opts: Options, k: int) -> dict:
    return program(opts, [{"text": f"Thought {k}: "}, {"gen": "thought", "max_tokens": opts.tokens(48), "stop": "\n"},
                          {"text": f"\nAction {k}: "}, {"select": "action", "choices": ACTIONS},
                          {"text": "["}, {"gen": "argument", "max_tokens": opts.tokens(12), "stop": "]"},
                          {"text": "]"}])


def react(rng: random.Random, n: int, opts: Options) -> list[Session]:
    instruction = ("Solve a question answering task with interleaving Thought, Action, Observation steps. "
                   "Action can be Search[entity], Lookup[keyword] or Finish[answer]. Here are examples.\n\n"
                   + "\n".join(example(rng, opts) for _ in range(4)))

    def session(r: random.Random) -> Session:
        chat = Chat().add("system", instruction).add("user", "Question: " + words(r, opts.tokens(around(r, 25))))
        for k in range(1, r.randint(3, 6) + 1):
            (reply,) = yield [chat_call(chat, step(opts, k))]
            chat.add("assistant", reply).add("user", f"Observation {k}: {words(r, opts.tokens(around(r, 120)))}")
    return [session(spawn(rng)) for _ in range(n)]


REACT = Workload("react", "ReAct agent: ~2,000-token few-shot instruction, 3-6 dependent steps (thought, "
                          "select among 3 actions, argument), ~120-token observations", react, structured=True)
