"""A ReAct-style tool loop: the model thinks, selects an action among the tools (or finish) and
writes its input; the program runs the tool and adds the observation, until finish or the step limit.
Each step's thought, action and input are one assistant turn: one request on radixgate.

    python -m sdk.examples.react_agent --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

import ast
import operator

from sdk import ProgramState, function, gen, select, system, user
from sdk.examples.cli import parse

FACTS = {"radixgate": "an OpenAI-compatible gateway with a radix KV cache", "paris": "the capital of France"}
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculator(expression: str) -> str:
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("only numbers and + - * /")
    try:
        return str(value(ast.parse(expression.strip(), mode="eval").body))
    except (ValueError, SyntaxError, ZeroDivisionError) as err:
        return f"error: {err}"


def lookup(term: str) -> str:
    return FACTS.get(term.strip().lower(), "no entry")


TOOLS = {"calculator": calculator, "lookup": lookup}


@function
def react(s: ProgramState, question: str, max_steps: int = 3, max_tokens: int = 24):
    s += system("Answer the question. Each step: a Thought, then an Action (calculator, lookup or finish) and "
                "its Input; after finish, the Input is the final answer.")
    s += user(question)
    trace = []
    for step in range(1, max_steps + 1):
        s += f"Thought {step}: " + gen("thought", max_tokens=max_tokens, stop="\n") + \
            f"\nAction {step}: " + select("action", [*TOOLS, "finish"]) + \
            "\nInput: " + gen("input", max_tokens=max_tokens, stop="\n") + "\n"
        trace.append((s["thought"], s["action"], s["input"]))
        if s["action"] == "finish":
            return {"answer": s["input"], "trace": trace}
        s += f"Observation {step}: {TOOLS[s['action']](s['input'])}\n"
    return {"answer": None, "trace": trace}


def main(argv: list[str] | None = None) -> ProgramState:
    args, backend = parse("A ReAct tool loop.", argv, [("--max-steps", {"type": int, "default": 3}),
                                                      ("--max-tokens", {"type": int, "default": 24})])
    state = react.run("What is 12 * 7, and what is radixgate?", max_steps=args.max_steps, max_tokens=args.max_tokens,
                      backend=backend).check()
    for thought, action, arg in state.returned["trace"]:
        print(f"thought: {thought!r}\n  action: {action}({arg!r})")
    print(f"answer: {state.returned['answer']!r}")
    return state


if __name__ == "__main__":
    main()
