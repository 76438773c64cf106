"""A multi-turn chat: each answer is generated in its turn and the next question sees it; the
program runs in the background and each answer is printed as it streams (`text_iter`).

    python -m sdk.examples.multi_turn_chat --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

import sys

from sdk import ProgramState, assistant, function, gen, system, user
from sdk.examples.cli import parse

QUESTIONS = ["What is a radix tree?", "How is it different from a trie?", "Give one use of it in one sentence."]


@function
def chat(s: ProgramState, questions: list[str], max_tokens: int = 48):
    s += system("You are a helpful, concise assistant.")
    for i, question in enumerate(questions):
        s += user(question)
        s += assistant(gen(f"answer{i}", max_tokens=max_tokens))     # filled in order, when needed


def main(argv: list[str] | None = None) -> ProgramState:
    args, backend = parse("A multi-turn chat, streamed.", argv, [("--max-tokens", {"type": int, "default": 48})])
    state = chat.run(QUESTIONS, max_tokens=args.max_tokens, backend=backend, stream=True)
    for i, question in enumerate(QUESTIONS):
        print(f"user: {question}\nassistant: ", end="")
        for piece in state.text_iter(f"answer{i}"):
            print(piece, end="")
            sys.stdout.flush()
        print()
    return state.wait().check()


if __name__ == "__main__":
    main()
