"""The generated shared-prefix set (SGLang's bench_serving `generated-shared-prefix`): groups of 16
prompts, each the group's 2,048-token system prompt and a 128-token question, 256-token answers.
Sessions come group by group interleaved, so a group's prompts arrive close together."""
from __future__ import annotations

import random

from loadtest.workloads.base import Options, Session, Workload, completion_call, gen, spawn
from loadtest.workloads.text import words

PER_GROUP = 16


def shared_prefix(rng: random.Random, n: int, opts: Options) -> list[Session]:
    groups = max(1, -(-n // PER_GROUP))
    systems = [words(rng, opts.tokens(2048)) for _ in range(groups)]

    def session(r: random.Random, i: int) -> Session:
        yield [completion_call(systems[i % groups] + "\n\n" + words(r, opts.tokens(128)), gen(opts, opts.tokens(256)))]
    return [session(spawn(rng), i) for i in range(n)]


SHARED_PREFIX = Workload("shared-prefix", f"groups of {PER_GROUP}: 2,048-token shared system prompt + 128-token "
                                          "question, 256-token answers", shared_prefix)
