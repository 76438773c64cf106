"""Every example runs end to end, as `python -m sdk.examples.X` would (its main with command-line
arguments): on radixgate over the tiny CPU engine, on a fake OpenAI upstream through the
OpenAICompatible backend, and on radixgate in front of that fake (programs by speculative execution)."""
from __future__ import annotations

import json
import re

import pytest

from sdk.examples import essay_judge, json_extraction, multi_turn_chat, multiple_choice, react_agent, tree_of_thought
from tests.sdk.conftest import Answers

# Per example: extra arguments (kept small for the CPU engine) and what the fake model answers.
EXAMPLES = {
    "essay_judge": (essay_judge, ["--max-tokens", "6"],
                    Answers({"verdict": "A fine essay.", "grade": "B"}, "Clear enough.")),
    "multiple_choice": (multiple_choice, [], Answers({"answer": "C"})),
    "tree_of_thought": (tree_of_thought, ["--max-tokens", "6"],
                        Answers({"step": "3 * 4 = 12", "verdict": "yes", "answer": "3 * 4 + 5 = 17"})),
    "json_extraction": (json_extraction, ["--max-tokens", "16"], Answers({"person": '{"name": "Maria Lopez", "age": 34, "city": "Lisbon"}'})),
    "multi_turn_chat": (multi_turn_chat, ["--max-tokens", "6"], Answers({}, "A short answer.")),
    "react_agent": (react_agent, ["--max-tokens", "6", "--max-steps", "2"],
                    Answers({"thought": "I know it.", "action": "finish", "input": "84"})),
}


def check(name: str, result, scored: bool) -> None:
    """What each example must have produced, whatever the model."""
    states = result if isinstance(result, list) else [result]
    for s in states:
        assert s.error is None, s.error
    if name == "essay_judge":
        s = states[0]
        assert len(s["judgment"]) == len(essay_judge.DIMENSIONS) and s["grade"] in essay_judge.GRADES
        assert (len(s.scores["grade"]) == 4) if scored else "grade" not in s.scores
    elif name == "multiple_choice":
        assert len(states) == len(multiple_choice.QUESTIONS)
        assert all(s["answer"] in multiple_choice.LETTERS for s in states)
        assert all(("answer" in s.scores) == scored for s in states)
    elif name == "tree_of_thought":
        assert "Answer: " in states[0].returned["path"]
    elif name == "json_extraction":
        for s in states:
            assert re.fullmatch(json_extraction.PERSON, s["person"]) and json.loads(s["person"]) == s.returned
    elif name == "multi_turn_chat":
        assert [m["role"] for m in states[0].messages()] == ["system"] + ["user", "assistant"] * 3
    elif name == "react_agent":
        trace = states[0].returned["trace"]
        assert 1 <= len(trace) <= 2 and all(action in ("calculator", "lookup", "finish") for _, action, _ in trace)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_on_the_local_engine(name, local, capsys):
    module, argv, _ = EXAMPLES[name]
    result = module.main(["--base-url", local, *argv])
    check(name, result, scored=True)
    out = capsys.readouterr().out
    assert out.strip()
    if name == "multi_turn_chat":                # each answer as streamed, piece by piece, is the final one
        for i, question in enumerate(multi_turn_chat.QUESTIONS):
            assert f"user: {question}\nassistant: {result[f'answer{i}']}\n" in out


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("through", ["openai", "radixgate"])
def test_example_on_a_fake_upstream(name, through, fake_model, capsys):
    module, argv, answers = EXAMPLES[name]
    upstream, gateway, fake = fake_model(answers)
    base = upstream if through == "openai" else gateway
    result = module.main(["--base-url", base, "--backend", through, *argv])
    check(name, result, scored=False)
    assert fake.calls >= 1 and capsys.readouterr().out.strip()
    if name == "react_agent":
        assert result.returned["answer"] == "84"
    if name == "json_extraction":
        assert [s.returned["city"] for s in result] == ["Lisbon", "Lisbon"]
