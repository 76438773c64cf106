"""Forks: branches that share their parent's prompt run at once and their answers are merged.
Tree-of-thought (GSM8K-style: plans, each expanded, then a vote) and an LLM judge (branch-solve-merge:
six criteria forked from one question and answer, then a verdict)."""
from __future__ import annotations

import random

from loadtest.workloads.base import Chat, Options, Session, Workload, chat_call, gen, select, spawn
from loadtest.workloads.text import around, words

CRITERIA = ["helpfulness", "relevance", "accuracy", "depth", "creativity", "level of detail"]


def tree_of_thought(rng: random.Random, n: int, opts: Options, width: int = 3) -> list[Session]:
    def session(r: random.Random) -> Session:
        root = Chat().add("user", "Solve the math problem step by step. " + words(r, opts.tokens(around(r, 80))))
        plans = yield [chat_call(root.fork().add("user", f"Propose plan {i + 1}."), gen(opts, opts.tokens(96)))
                       for i in range(width)]
        leaves = [root.fork().add("assistant", plan).add("user", f"Carry out the plan, attempt {j + 1}.")
                  for plan in plans for j in range(width)]
        answers = yield [chat_call(leaf, gen(opts, opts.tokens(128))) for leaf in leaves]
        vote = root.fork()
        for k, answer in enumerate(answers):
            vote.add("user", f"Solution {k + 1}: {answer}")
        vote.add("user", "Which solution is correct? Answer with its number.")
        yield [chat_call(vote, select(opts, [str(k + 1) for k in range(len(answers))]))]
    return [session(spawn(rng)) for _ in range(n)]


def judge(rng: random.Random, n: int, opts: Options) -> list[Session]:
    def session(r: random.Random) -> Session:
        base = Chat().add("system", "You are a fair judge of answers.").add(
            "user", f"Question: {words(r, opts.tokens(around(r, 80)))}\n"
                    f"Answer: {words(r, opts.tokens(around(r, 300)))}")
        verdicts = yield [chat_call(base.fork().add("user", f"Judge the answer's {c}."), gen(opts, opts.tokens(128)))
                          for c in CRITERIA]
        merge = base.fork()
        for c, v in zip(CRITERIA, verdicts):
            merge.add("user", f"On {c}: {v}")
        merge.add("user", "Overall score from 1 to 10?")
        yield [chat_call(merge, select(opts, [str(k) for k in range(1, 11)]))]
    return [session(spawn(rng)) for _ in range(n)]


TREE_OF_THOUGHT = Workload("tree-of-thought", "~100-token problem, 3 plans (~96 tokens) forked, each forked into "
                                              "3 attempts (~128 tokens), then a select among the 9", tree_of_thought,
                           structured=True)
JUDGE = Workload("judge", "branch-solve-merge: ~400-token question and answer forked 6 ways (one criterion each, "
                          "~128 tokens), then a 1-10 select over the six verdicts", judge, structured=True)
