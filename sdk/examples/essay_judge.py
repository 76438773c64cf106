"""A multi-dimensional essay judge by branch-solve-merge: the essay is read once, one branch per
dimension judges it (the branches run concurrently and share the essay's prefix in the radix
cache), then one turn merges the judgments into a verdict and a grade.

    python -m sdk.examples.essay_judge --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

from sdk import ProgramState, assistant, function, gen, select, system, user
from sdk.examples.cli import parse

DIMENSIONS = ("clarity", "originality", "evidence", "structure")
GRADES = ["A", "B", "C", "D"]
ESSAY = ("Cities should plant more trees. Trees cool the streets in summer, clean the air and give birds a home. "
         "Studies of several cities found that shaded streets were up to five degrees cooler. Trees cost little "
         "next to air conditioning, and people walk more where the streets are green.")


@function
def judge_essay(s: ProgramState, essay: str, dimensions=DIMENSIONS, max_tokens: int = 48):
    s += system("You are an expert essay judge. Be brief and concrete.")
    s += user(f"Here is an essay.\n\n{essay}")
    branches = s.fork(len(dimensions))
    for branch, dimension in zip(branches, dimensions):
        branch += user(f"Judge only the essay's {dimension}, in one or two sentences.")
        branch += assistant(gen("judgment", max_tokens=max_tokens, stop="\n\n"))
    s.join(branches)                                  # s["judgment"]: one per dimension
    notes = "\n".join(f"- {d}: {j.strip()}" for d, j in zip(dimensions, s["judgment"]))
    s += user(f"The judgments were:\n{notes}\nMerge them into a final verdict and grade the essay.")
    s += assistant("Verdict: " + gen("verdict", max_tokens=max_tokens, stop="\n") + "\nGrade: "
                   + select("grade", GRADES))
    return dict(zip(dimensions, s["judgment"]))


def main(argv: list[str] | None = None) -> ProgramState:
    args, backend = parse("Judge an essay on several dimensions at once (branch-solve-merge).", argv,
                          [("--max-tokens", {"type": int, "default": 48})])
    state = judge_essay.run(ESSAY, max_tokens=args.max_tokens, backend=backend).check()
    for dimension, judgment in state.returned.items():
        print(f"{dimension:>12}: {judgment.strip()}")
    print(f"     verdict: {state['verdict'].strip()}\n       grade: {state['grade']}  scores {state.scores.get('grade')}")
    return state


if __name__ == "__main__":
    main()
