"""Constrained generation in the engine: sampled outputs always match, and jump-forward saves
forward passes without changing what is valid."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

from gateway.engine.engine import Engine
from gateway.protocol import Constraint, GenerateRequest, InvalidRequest, SamplingParams
from tests.engine.test_engine import assert_no_leak, run_all

PHONE = r"(\+1 )?\(\d{3}\) \d{3}-\d{4}"
DATE = r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z"


@pytest.fixture(scope="module")
def engine(model_dirs):
    eng = Engine(model_dirs["qwen3"], device="cpu", dtype="float32", debug_checks=True)
    yield eng
    eng.shutdown()


def sample(engine: Engine, constraint: Constraint, count: int, tag: str, max_tokens: int = 64) -> list[dict]:
    reqs = [GenerateRequest(f"{tag}{i}", SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=i),
                            prompt="Answer:", constraint=constraint) for i in range(count)]
    return run_all(engine, reqs)


@pytest.mark.parametrize("pattern", [PHONE, DATE, r"[a-z]{3,8}( [a-z]{3,8}){0,3}\.", r"(yes|no)!?"])
def test_sampled_outputs_match_the_regex(engine, pattern):
    for out in sample(engine, Constraint("regex", pattern), 12, f"re{hash(pattern)}"):
        assert out["finish"] == ["stop"] and re.fullmatch(pattern, out["text"][0]), out["text"][0]
    assert_no_leak(engine)


def test_choices_are_exact(engine):
    options = ["positive", "negative", "neutral", "mixed feelings"]
    outs = sample(engine, Constraint("choice", options), 16, "choice")
    assert all(o["text"][0] in options and o["finish"] == ["stop"] for o in outs)
    assert len({o["text"][0] for o in outs}) > 1, "temperature 1 explores more than one choice"


def test_jump_forward_saves_forward_passes_and_keeps_validity(engine):
    """Forward passes per output token with and without jump-forward, on the same requests."""
    ratios = {}
    for jump in (False, True):
        engine.constraints.jump_forward = jump
        before = engine.timings.prefill.steps + engine.timings.decode.steps
        outs = sample(engine, Constraint("regex", DATE), 8, f"jf{jump}")
        passes = engine.timings.prefill.steps + engine.timings.decode.steps - before
        tokens = sum(len(o["tokens"][0]) for o in outs)
        assert all(re.fullmatch(DATE, o["text"][0]) for o in outs)
        ratios[jump] = passes / tokens
    engine.constraints.jump_forward = True
    print(f"\nforward passes per output token: {ratios[False]:.3f} without jump-forward, "
          f"{ratios[True]:.3f} with ({ratios[False] / ratios[True]:.2f}x fewer)")
    assert ratios[True] < 0.8 * ratios[False]


def test_max_tokens_cuts_honestly_and_bad_patterns_are_refused(engine):
    [out] = sample(engine, Constraint("regex", r"[a-z]{30}"), 1, "cut", max_tokens=3)
    assert out["finish"] == ["length"] and re.fullmatch(r"[a-z]*", out["text"][0])
    with pytest.raises(InvalidRequest) as err:
        sample(engine, Constraint("regex", r"(a)\1"), 1, "bad")
    assert err.value.param.startswith("regex")


def test_a_token_that_leaves_no_room_to_end_validly_is_replaced_by_the_ending(engine):
    """Strict schema, arrays of objects with many required keys: opening one more item near the end
    of the budget would need more tokens than are left; the output still ends validly."""
    item = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(10)},
            "required": [f"field_{i}" for i in range(10)], "additionalProperties": False}
    schema = {"type": "object", "properties": {"rows": {"type": "array", "items": item}}, "required": ["rows"],
              "additionalProperties": False}
    constraint = Constraint("json_schema", {"schema": schema, "strict": True})
    outs = []
    for budget in (40, 70, 100):
        outs += sample(engine, constraint, 8, f"room{budget}", max_tokens=budget)
    for out in outs:
        jsonschema.validate(json.loads(out["text"][0]), schema)
        assert out["finish"][0] in ("stop", "length")
    assert any(o["finish"] == ["length"] for o in outs), "some outputs were closed because the budget ran out"


def test_running_out_of_tokens_still_ends_validly(engine):
    pattern = r'\{"note": "[a-z ]*"\}'
    outs = sample(engine, Constraint("regex", pattern), 8, "close", max_tokens=10)
    for out in outs:
        assert re.fullmatch(pattern, out["text"][0]), out["text"][0]
        assert len(out["tokens"][0]) <= 10 and out["finish"][0] in ("stop", "length")
    assert any(o["finish"] == ["length"] for o in outs), "some outputs were closed because the budget ran out"
