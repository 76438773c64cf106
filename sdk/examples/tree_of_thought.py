"""Tree-of-thought search: at each level every kept node forks into candidate next steps, a select
judges each step, and the best steps (by the judge's score where the backend scores, else by its
verdict) are kept; the best path then answers.

    python -m sdk.examples.tree_of_thought --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

from sdk import ProgramState, function, gen, select, system, user
from sdk.examples.cli import parse

PROBLEM = "Use the numbers 3, 4 and 5 once each, with + - * /, to make 17."


def promise(node: ProgramState) -> float:
    """How promising the judge found the node's last step: yes minus no where scored, else 1 or 0."""
    scores = node.scores.get("verdict")
    if isinstance(scores, list) and len(scores) == 2 and all(isinstance(x, float) for x in scores):
        return scores[0] - scores[1]
    return 1.0 if node["verdict"] == "yes" else 0.0


@function
def tree_of_thought(s: ProgramState, problem: str, breadth: int = 2, depth: int = 2, max_tokens: int = 24):
    s += system("Solve the problem step by step. Write one short step per line.")
    s += user(problem)
    frontier = [s]
    for level in range(1, depth + 1):
        candidates = []
        for node in frontier:
            children = node.fork(breadth)
            for child in children:
                child += f"Step {level}: " + gen("step", max_tokens=max_tokens, stop="\n") + \
                    "\nIs this step correct and useful? " + select("verdict", ["yes", "no"]) + "\n"
            candidates += children
        frontier = sorted(candidates, key=promise, reverse=True)[:breadth]
    best = frontier[0]
    best += "Answer: " + gen("answer", max_tokens=max_tokens, stop="\n")
    return {"answer": best["answer"], "path": best.text()}


def main(argv: list[str] | None = None) -> ProgramState:
    args, backend = parse("Tree-of-thought search with fork and select.", argv,
                          [("--breadth", {"type": int, "default": 2}), ("--depth", {"type": int, "default": 2}),
                           ("--max-tokens", {"type": int, "default": 24})])
    state = tree_of_thought.run(PROBLEM, breadth=args.breadth, depth=args.depth, max_tokens=args.max_tokens,
                                backend=backend).check()
    print(state.returned["path"])
    return state


if __name__ == "__main__":
    main()
