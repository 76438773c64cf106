"""Few-shot multiple choice with `select`: worked examples as earlier turns, then each question's
answer chosen among the letters. On radixgate each letter is scored by its log-probability after
the exact prompt, and the scores come back; the few-shot prefix is computed once for the batch.

    python -m sdk.examples.multiple_choice --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

from sdk import ProgramState, assistant, function, select, system, user
from sdk.examples.cli import parse

LETTERS = ["A", "B", "C", "D"]
SHOTS = [("What is the boiling point of water at sea level?", ["50 C", "100 C", "150 C", "200 C"], "B"),
         ("Which planet is closest to the Sun?", ["Mercury", "Venus", "Earth", "Mars"], "A")]
QUESTIONS = [("How many legs does a spider have?", ["Six", "Four", "Eight", "Ten"], "C"),
             ("Which gas do plants take in?", ["Oxygen", "Helium", "Nitrogen", "Carbon dioxide"], "D"),
             ("What is 7 times 6?", ["42", "36", "48", "56"], "A")]


def ask(question: str, choices: list[str]) -> str:
    return question + "\n" + "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, choices)) + "\nAnswer:"


@function
def multiple_choice(s: ProgramState, question: str, choices: list[str]):
    s += system("Answer each question with the letter of the correct choice only.")
    for q, cs, answer in SHOTS:
        s += user(ask(q, cs))
        s += assistant(answer)
    s += user(ask(question, choices))
    s += assistant(select("answer", LETTERS[:len(choices)]))


def main(argv: list[str] | None = None) -> list[ProgramState]:
    _, backend = parse("Few-shot multiple choice with select.", argv)
    states = multiple_choice.run_batch([(q, cs) for q, cs, _ in QUESTIONS], backend, progress=True)
    right = 0
    for (q, _, truth), state in zip(QUESTIONS, states):
        state.check()
        right += state["answer"] == truth
        print(f"{q} -> {state['answer']} (truth {truth}) scores {state.scores.get('answer')}")
    print(f"accuracy {right}/{len(QUESTIONS)}")
    return states


if __name__ == "__main__":
    main()
