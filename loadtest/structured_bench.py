"""Our JSON Schema constraints against llguidance and XGrammar on MaskBench, measured in one run.

    python -m loadtest.structured_bench                 # the 250 schemas of shared/data
    python -m loadtest.structured_bench --limit 20      # smoke check: 2 schemas per category
    python -m loadtest.structured_bench --engines ours,llguidance --tokenizer qwen --out results.json
    python -m loadtest.structured_bench --clock cpu     # CPU time per compile and mask: on a loaded machine

For each engine and schema: compile (timed; a refusal or an exception is "not compiled"), then for
each test instance walk the tokens of `json.dumps(data)` (no special tokens): compute the engine's
packed token bitmask (each one timed, the one after the last token included), check the next token
is allowed, commit it; after the last token EOS must be allowed. A valid instance refused anywhere
is "valid rejected", an invalid one allowed throughout "invalid accepted"; a schema passes when it
compiled and every instance came out right (MaskBench's convention).

Fairness: per-tokenizer state (our token table, llguidance's LLTokenizer, XGrammar's TokenizerInfo)
is built once per worker process, outside the timings, and warmed on a tiny schema; per-schema
state starts cold (see each engine's `reset`), so first-time costs are counted.

Each (engine, schema) runs in a single-threaded worker process, `--jobs` at a time, with `--budget`
seconds (compile and instances): past it the worker is killed, even inside native code, and the
schema counts as not compiled, reported as a timeout. Compile percentiles cover the compiles that
finished. On the 2-core machine ours and XGrammar each need a few seconds per schema at the median,
so the full run takes about 20 minutes at the default 10 s budget (about 35 at 20 s).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from pathlib import Path

import numpy as np

from loadtest.structured_peers import ENGINES, Engine, NotCompiled

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench" / "maskbench"
TOKENIZERS = {"llama": "llama", "qwen": "qwen3"}
PEER = "llguidance"
WARM_UP = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}, "b": {"type": "number"}}}
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.process_time_ns}
clock = CLOCKS["wall"]           # set by --clock before the workers fork
GOALS = [("compile p50", "compile_ms", "p50", 5.0, "ms"), ("compile p99", "compile_ms", "p99", 100.0, "ms"),
         ("mask p50", "mask_us", "p50", 10.0, "µs"), ("mask p99", "mask_us", "p99", 500.0, "µs")]


@dataclass(slots=True)
class Case:
    id: str                                  # Category/name
    schema: dict
    tests: list[tuple[bool, list[int]]]      # (valid, token ids of the instance text)


@dataclass(slots=True)
class Tally:
    compile_ms: list[float] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)
    commit_us: list[float] = field(default_factory=list)
    kinds: dict[str, list[float]] = field(default_factory=dict)     # ours: mask time by what it cost
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0                                            # time spent in schemas, timeouts included

    def absorb(self, rec: dict, part: "Tally | None") -> None:
        """One schema's record and the timings its worker took."""
        self.records.append(rec)
        self.seconds += rec.get("seconds", 0.0)
        if part is not None:
            self.compile_ms += part.compile_ms
            self.mask_us += part.mask_us
            self.commit_us += part.commit_us
            for kind, times in part.kinds.items():
                self.kinds.setdefault(kind, []).extend(times)


def load_cases(hf, limit: int | None) -> list[Case]:
    """Round-robin over the categories, so a limit still samples each of them."""
    groups = [sorted(d.glob("*.json")) for d in sorted(DATA.iterdir()) if d.is_dir()]
    files = [f for row in itertools.zip_longest(*groups) for f in row if f][:limit]
    cases = []
    for f in files:
        spec = json.loads(f.read_text())
        tests = [(t["valid"], hf.encode(json.dumps(t["data"]), add_special_tokens=False)) for t in spec["tests"]]
        cases.append(Case(f"{f.parent.name}/{f.stem}", spec["schema"], tests))
    return cases


def walk(engine: Engine, tokens: list[int], eos: int, tally: Tally) -> int | None:
    """Step through one instance: the first step refused (len(tokens): EOS), or None if all allowed."""
    engine.start()
    kind = getattr(engine, "mask_kind", None)
    for i, token in enumerate([*tokens, eos]):
        t0 = clock()
        engine.mask()
        dt = (clock() - t0) / 1e3
        tally.mask_us.append(dt)
        if kind is not None:
            tally.kinds.setdefault(kind(), []).append(dt)
        if not engine.allows(token):
            return i
        if i < len(tokens):
            t0 = clock()
            ok = engine.commit(token)
            tally.commit_us.append((clock() - t0) / 1e3)
            if not ok:
                raise AssertionError(f"token {i} ({token}) was in the mask but the commit refused it")
    return None


def run_schema(engine: Engine, case: Case, eos: int, tally: Tally) -> dict:
    rec = {"id": case.id, "status": "not compiled", "reason": "", "compile_ms": None, "valid_rejected": 0,
           "invalid_accepted": 0}
    engine.reset()
    t0 = clock()
    try:
        engine.compile(case.schema)
    except NotCompiled as err:
        return rec | {"reason": str(err), "key": err.key}
    except Exception as err:
        return rec | {"reason": f"{type(err).__name__}: {err}", "key": f"crash {type(err).__name__}"}
    rec["compile_ms"] = (clock() - t0) / 1e6
    tally.compile_ms.append(rec["compile_ms"])
    wrong = []
    for i, (valid, tokens) in enumerate(case.tests):
        try:
            refused = walk(engine, tokens, eos, tally)
        except Exception as err:
            wrong.append(f"test {i}: crash {type(err).__name__}: {err}")
            continue
        if valid and refused is not None:
            rec["valid_rejected"] += 1
            wrong.append(f"test {i}: valid, refused at step {refused} of {len(tokens) + 1}")
        elif not valid and refused is None:
            rec["invalid_accepted"] += 1
            wrong.append(f"test {i}: invalid, accepted")
    return rec | {"status": "failed" if wrong else "passed", "reason": "; ".join(wrong)}


def _serve(name: str, hf, cases: list[Case], conn) -> None:
    """The worker process: set the engine up once (untimed), then run each schema the parent names."""
    t0 = time.perf_counter()
    engine = ENGINES[name](hf)
    engine.reset()                           # first calls in a process (imports, lazy set-up) are not the schema's
    engine.compile(WARM_UP)
    walk(engine, [], hf.eos_token_id, Tally())
    conn.send(("ready", time.perf_counter() - t0))
    while (i := conn.recv()) is not None:
        tally = Tally()
        conn.send(("done", run_schema(engine, cases[i], hf.eos_token_id, tally), tally))


class Worker:
    """One engine in a child process (forked: it inherits the tokenizer and the tokenized cases), so
    that a schema over its budget can be stopped even inside native code. The budget runs from when
    the worker is set up and has the schema; a worker killed for a timeout, or one the engine brought
    down, is replaced by a fresh one for the next schema."""

    def __init__(self, name: str, hf, cases: list[Case], budget_s: float):
        self.name, self.hf, self.cases, self.budget_s = name, hf, cases, budget_s
        self.case: int | None = None             # the schema in hand
        self._spawn()

    def _spawn(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(self.name, self.hf, self.cases, child), daemon=True)
        self.proc.start()
        child.close()
        self.ready, self.deadline = False, math.inf

    def send(self, case: int) -> None:
        self.conn.send(case)
        self.case = case
        self._arm()

    def _arm(self) -> None:
        if self.ready and self.case is not None:
            self.sent, self.deadline = time.perf_counter(), time.monotonic() + self.budget_s

    def _finish(self, **fields) -> dict:
        rec = {"id": self.cases[self.case].id, "compile_ms": None, "valid_rejected": 0, "invalid_accepted": 0}
        self.case, self.deadline = None, math.inf
        return rec | fields | {"seconds": time.perf_counter() - self.sent}

    def receive(self) -> tuple[dict, Tally | None] | None:
        """The finished schema's record and timings; None when the message was only 'set up'."""
        try:
            msg = self.conn.recv()
        except EOFError:                         # the engine took the worker down with it
            self.proc.join()
            rec = self._finish(status="not compiled", reason=f"worker exit code {self.proc.exitcode}", key="crash")
            self._spawn()
            return rec, None
        if msg[0] == "ready":
            print(f"  [{self.name}] per-tokenizer setup {msg[1]:.1f} s (untimed)", file=sys.stderr)
            self.ready = True
            self._arm()
            return None
        _, rec, part = msg
        return self._finish(**rec), part

    def expire(self) -> tuple[dict, None]:
        self.proc.kill()
        self.proc.join()
        rec = self._finish(status="timeout", reason=f"over the {self.budget_s:g} s budget", key="timeout")
        self._spawn()
        return rec, None

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join()


def run_engines(names: list[str], hf, cases: list[Case], budget_s: float, jobs: int) -> dict[str, Tally]:
    """Every (engine, schema) once, on `jobs` workers at a time: engines in order, each engine's
    schemas spread over the free workers, so that the cores stay busy whichever engine is slow."""
    todo = {name: deque(range(len(cases))) for name in names}
    tallies = {name: Tally() for name in names}
    workers: list[Worker] = []
    while True:
        for w in workers:
            if w.case is None:
                if todo[w.name]:
                    w.send(todo[w.name].popleft())
                else:
                    w.close()
        workers = [w for w in workers if w.case is not None]
        while len(workers) < jobs and (name := next((n for n in names if todo[n]), None)):
            workers.append(Worker(name, hf, cases, budget_s))
            workers[-1].send(todo[name].popleft())
        if not workers:
            order = {case.id: i for i, case in enumerate(cases)}
            for tally in tallies.values():
                tally.records.sort(key=lambda r: order[r["id"]])
            return tallies
        deadline = min(w.deadline for w in workers)
        ready = mp_connection.wait([w.conn for w in workers],
                                   None if deadline == math.inf else max(0.0, deadline - time.monotonic()))
        for w in workers:
            done = w.receive() if w.conn in ready else w.expire() if time.monotonic() > w.deadline else None
            if done is not None:
                tally = tallies[w.name]
                tally.absorb(*done)
                n = len(tally.records)
                if n % 25 == 0 or n == len(cases):
                    print(f"  [{w.name}] {n}/{len(cases)} schemas, {tally.seconds:.0f} s of schema time",
                          file=sys.stderr)


def percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p99": None, "mean": None}
    p50, p99 = np.percentile(xs, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "mean": float(np.mean(xs))}


def summarize(tally: Tally) -> dict:
    status = Counter(r["status"] for r in tally.records)
    out = {"schemas": len(tally.records), "compiled": status["passed"] + status["failed"], "passed": status["passed"],
           "timeouts": status["timeout"], "valid_rejected": sum(r["valid_rejected"] for r in tally.records),
           "invalid_accepted": sum(r["invalid_accepted"] for r in tally.records),
           "compile_ms": percentiles(tally.compile_ms), "mask_us": percentiles(tally.mask_us),
           "commit_us": percentiles(tally.commit_us), "masks": len(tally.mask_us), "seconds": tally.seconds}
    if tally.kinds:
        total = sum(map(sum, tally.kinds.values()))
        out["mask_kinds"] = {k: {"count": len(v), "share": sum(v) / total, **percentiles(v)}
                             for k, v in sorted(tally.kinds.items())}
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _ratio(a, b) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}x"


ROW = "{:<12} {:>9} {:>8} {:>7} {:>9} {:>11} {:>11} {:>11} {:>10} {:>10} {:>10} {:>9}"
COLUMNS = [("compiled", None), ("timeouts", None), ("passed", None), ("valid_rejected", None),
           ("invalid_accepted", None), ("compile_ms", "p50"), ("compile_ms", "p99"), ("mask_us", "p50"),
           ("mask_us", "p99"), ("commit_us", "p50"), ("seconds", None)]


def report(summaries: dict[str, dict], records: dict[str, list[dict]]) -> None:
    print(ROW.format("engine", "compiled", "timeouts", "passed", "valid rej", "invalid acc", "compile p50",
                     "compile p99", "mask p50", "mask p99", "commit p50",
                     "time"))
    print(ROW.format("", "", "", "", "", "", "ms", "ms", "µs", "µs", "µs", "s"))
    get = lambda s, key, p: s[key] if p is None else s[key][p]
    for name, s in summaries.items():
        print(ROW.format(name, f"{s['compiled']}/{s['schemas']}", s["timeouts"], s["passed"], s["valid_rejected"],
                         s["invalid_accepted"], *(_fmt(get(s, k, p), 2 if k == "compile_ms" else 1)
                                                  for k, p in COLUMNS[5:-1]), _fmt(s["seconds"], 0)))
    ours, peer = summaries.get("ours"), summaries.get(PEER)
    if ours and peer:
        print(ROW.format(f"ours/{PEER[:3]}", *(_ratio(get(ours, k, p), get(peer, k, p)) for k, p in COLUMNS)))
    if ours:
        goals = [(f"{label} <= {limit:g} {unit}", f"{_fmt(get(ours, key, p))} {unit}", get(ours, key, p) is not None
                  and get(ours, key, p) <= limit) for label, key, p, limit, unit in GOALS]
        goals.append(("0 invalid accepted", ours["invalid_accepted"], ours["invalid_accepted"] == 0))
        if peer:
            goals.append((f"passed > {PEER}'s {peer['passed']}", ours["passed"], ours["passed"] > peer["passed"]))
        print("goals (ours): " + " | ".join(f"{g}: {v} {'met' if ok else 'MISSED'}"
                                            for g, v, ok in goals))
        for kind, k in ours.get("mask_kinds", {}).items():
            print(f"ours mask time, {kind:>8}: {k['count']:>7} masks, {k['share']:6.1%} of the time, "
                  f"p50 {_fmt(k['p50'])} µs, p99 {_fmt(k['p99'])} µs")
    for name, recs in records.items():
        refused = Counter(r["key"] for r in recs if r["status"] == "not compiled")
        failed = [r for r in recs if r["status"] == "failed"]
        timeouts = [r["id"] for r in recs if r["status"] == "timeout"]
        if timeouts:
            print(f"{name} timeouts ({len(timeouts)}): {', '.join(timeouts[:6])}{', ...' if len(timeouts) > 6 else ''}")
        if refused:
            print(f"{name} not compiled: " + ", ".join(f"{n} {why}" for why, n in refused.most_common(8)))
        if failed:
            print(f"{name} failed ({len(failed)}): " + "; ".join(f"{r['id']} ({r['reason'][:80]})" for r in failed[:4]))


def git_state() -> str:
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "gateway/structured"], cwd=repo, capture_output=True,
                           text=True).stdout.split("\n")
    return head.strip() + (f" + {sum(1 for d in dirty if d)} uncommitted file(s) in gateway/structured" if any(dirty)
                           else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, help="number of schemas (round-robin over the categories)")
    ap.add_argument("--engines", default="ours,llguidance,xgrammar")
    ap.add_argument("--tokenizer", default="llama", choices=sorted(TOKENIZERS))
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per schema and engine")
    ap.add_argument("--jobs", type=int, default=2, help="schemas run at once, one single-threaded worker each")
    ap.add_argument("--out", type=Path, help="write the summaries and per-schema records as JSON")
    ap.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                    help="what compile and mask times count: wall time, or the worker process's CPU time "
                         "(steadier on a shared, loaded machine; a peer's helper threads would count too)")
    args = ap.parse_args()
    names = args.engines.split(",")
    global clock
    clock = CLOCKS[args.clock]
    unknown = set(names) - set(ENGINES)
    if unknown:
        ap.error(f"unknown engines {sorted(unknown)}; expected some of {sorted(ENGINES)}")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")     # the workers are forked
    from transformers import AutoTokenizer
    from gateway.modelgen.tokenizer_files import write_tokenizer_files
    with tempfile.TemporaryDirectory() as tmp:
        source = write_tokenizer_files(TOKENIZERS[args.tokenizer], Path(tmp), "npm")
        hf = AutoTokenizer.from_pretrained(tmp)
    if "ours" in names:           # imported before the workers fork, so that every worker runs the same code
        try:
            import gateway.structured.constraint  # noqa: F401
            import gateway.structured.json_schema  # noqa: F401
        except ImportError as err:
            sys.exit(f"ours: the JSON Schema compiler is not importable ({err}); run --engines llguidance,xgrammar")
    cases = load_cases(hf, args.limit)
    tests = [v for c in cases for v, _ in c.tests]
    print(f"{len(cases)} schemas, {len(tests)} instances ({sum(tests)} valid), "
          f"{sum(len(t) for c in cases for _, t in c.tests):,} tokens; tokenizer {source} ({len(hf):,} tokens); "
          f"radixgate {git_state()}; budget {args.budget:g} s per schema; {args.clock} clock")
    tallies = run_engines(names, hf, cases, args.budget, args.jobs)
    summaries = {name: summarize(t) for name, t in tallies.items()}
    records = {name: t.records for name, t in tallies.items()}
    report(summaries, records)
    if args.out:
        args.out.write_text(json.dumps({"tokenizer": source, "radixgate": git_state(), "budget_s": args.budget,
                                        "clock": args.clock,
                                        "summaries": summaries, "schemas": records}, indent=1))


if __name__ == "__main__":
    main()
