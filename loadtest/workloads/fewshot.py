"""Few-shot selection, as in the SGLang evaluation: the shots are a long prefix shared by many
questions, the answer a `select` among fixed options (a one-token letter, or whole endings)."""
from __future__ import annotations

import random

from loadtest.workloads.base import Options, Session, Workload, completion_call, select, spawn
from loadtest.workloads.text import around, words

LETTERS = ["A", "B", "C", "D"]
SUBJECTS = 57


def mmlu_question(rng: random.Random, opts: Options, answer: str | None) -> str:
    options = "".join(f"{letter}. {words(rng, opts.tokens(around(rng, 8)))}\n" for letter in LETTERS)
    return f"{words(rng, opts.tokens(around(rng, 40)))}\n{options}Answer:" + (f" {answer}\n\n" if answer else "")


def mmlu(rng: random.Random, n: int, opts: Options) -> list[Session]:
    """5-shot: each subject's header and five answered questions, then the question; select A-D."""
    subjects = max(1, min(SUBJECTS, n // 4))
    headers = [f"The following are multiple choice questions (with answers) about {words(rng, 2).rstrip('.')}.\n\n"
               + "".join(mmlu_question(rng, opts, rng.choice(LETTERS)) for _ in range(5)) for _ in range(subjects)]

    def session(r: random.Random, i: int) -> Session:
        prompt = headers[i % subjects] + mmlu_question(r, opts, None)
        yield [completion_call(prompt, select(opts, [f" {x}" for x in LETTERS]))]
    return [session(spawn(rng), i) for i in range(n)]


def hellaswag(rng: random.Random, n: int, opts: Options) -> list[Session]:
    """20-shot: twenty contexts with their endings shared by every question, then a context; select
    among four endings of about 25 tokens."""
    shots = "".join(f"{words(rng, opts.tokens(around(rng, 45)))} {words(rng, opts.tokens(around(rng, 25)))}\n\n"
                    for _ in range(20))

    def session(r: random.Random) -> Session:
        prompt = shots + words(r, opts.tokens(around(r, 45)))
        endings = list(dict.fromkeys(" " + words(r, opts.tokens(around(r, 25))) for _ in range(4)))
        yield [completion_call(prompt, select(opts, endings))]
    return [session(spawn(rng)) for _ in range(n)]


MMLU = Workload("mmlu", "5-shot multiple choice (shots shared per subject, ~600-token prompts), select among A-D",
                mmlu, structured=True)
HELLASWAG = Workload("hellaswag", "20-shot (~1,400-token shared shots), select among 4 endings of ~25 tokens",
                     hellaswag, structured=True)
