"""Every real-world schema we compile yields outputs that parse and validate: samples at
temperature 1 from a tiny random model (which knows nothing about JSON) over JSONSchemaBench."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest

from gateway.engine.engine import Engine
from gateway.protocol import Constraint, GenerateRequest, InvalidRequest, SamplingParams
from gateway.structured.constraint import compile_constraint
from gateway.structured.matcher import Matcher

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschemabench" / "schemas"


def load_schemas() -> list[tuple[str, dict]]:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is missing")
    return [(f"{p.parent.name}/{p.stem}", json.loads(p.read_text())) for p in sorted(SCHEMAS.glob("*/*.json"))]


def test_sampled_outputs_always_validate(model_dirs):
    schemas = load_schemas()
    compiled, refused, too_long = [], 0, 0
    for name, schema in schemas:
        try:
            grammar = compile_constraint(Constraint("json_schema", {"schema": schema}))
        except InvalidRequest:
            refused += 1
            continue
        if Matcher(grammar).completion_cost() > 2048:      # its smallest instance exceeds the tiny context
            too_long += 1
        else:
            compiled.append((name, schema))
    engine = Engine(model_dirs["qwen3"], device="cpu", dtype="float32", kv_slots=65536, max_running=256)

    async def one(i: int, schema: dict) -> tuple[str, str | None]:
        # room for the schema's shortest valid instance, plus some to wander in
        least = Matcher(compile_constraint(Constraint("json_schema", {"schema": schema}))).completion_cost()
        req = GenerateRequest(f"s{i}", SamplingParams(max_tokens=128 + int(least), temperature=1.0, seed=i),
                              prompt="JSON:",
                              constraint=Constraint("json_schema", {"schema": schema}))
        text, finish = "", None
        async for d in engine.generate(req):
            text, finish = text + d.text, d.finish_reason or finish
        return text, finish

    async def main():
        return await asyncio.gather(*(one(i, s) for i, (_, s) in enumerate(compiled)))

    results = asyncio.run(main())
    engine.shutdown()
    bad = []
    for (name, schema), (text, finish) in zip(compiled, results):
        try:
            # validate the instance only: a few real-world schemas break their own metaschema
            jsonschema.validators.validator_for(schema)(schema).validate(json.loads(text))
        except (json.JSONDecodeError, jsonschema.ValidationError) as err:
            bad.append(f"{name} ({finish}): {str(err)[:120]} in {text[:200]!r}")
    print(f"\n{len(compiled) + too_long} of {len(schemas)} schemas compiled ({refused} refused by name, {too_long} "
          f"with a smallest instance too long for the test model's context); "
          f"{len(compiled) - len(bad)} outputs valid")
    assert not bad, "\n".join(bad[:10])
    assert len(compiled) >= 0.5 * len(schemas)
