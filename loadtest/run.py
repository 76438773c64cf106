"""Drive an OpenAI-compatible endpoint with the workloads (loadtest/workloads) and record every call.

    python -m loadtest.run --url http://127.0.0.1:8000 --workloads mmlu react --sessions 64 --concurrency 16
    radixgate bench --url ... --rate 4 --max-seconds 30 --out bench-out     # the same, from the CLI

Sessions start at a fixed concurrency (`--concurrency`, the default) or at Poisson arrivals
(`--rate` sessions per second); a session's steps run in order and a fork's branches at once. After
`--max-seconds` no session starts and those in flight get `--drain-seconds` to finish (the rest are
counted as cut). Per call: time to first token, inter-token latency, time per output token, end-to-end
latency, tokens, cached prompt tokens; per run the server's own cache counters from `/metrics` when it
serves them (radixgate does). `--plain` sends only plain OpenAI bodies (no choices / regex / program
/ ignore_eos), for endpoints that are not radixgate. Writes `results.json` and, with matplotlib,
`report.md` + PNG plots (else later: `python -m loadtest.report results.json OUTDIR`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from loadtest.stream_client import CUT, CallRecord, stream_call
from loadtest.workloads import WORKLOADS, Options, Session

TIMELINE_BIN = 0.5        # seconds per bin of the throughput-over-time series
ITL_SAMPLE = 20_000       # inter-token gaps kept per run (a seeded sample; enough for p99)


@dataclass(slots=True)
class Load:
    concurrency: int = 16            # sessions at once (when rate is None)
    rate: float | None = None        # Poisson session arrivals per second instead
    max_seconds: float | None = None # stop starting sessions after this long
    drain_seconds: float = 60.0      # then wait this long for those in flight
    seed: int = 0


@dataclass(slots=True)
class RunResult:
    """One workload against one target: the results file holds a list of these (as dicts)."""
    target: str
    workload: str
    sessions: int
    options: dict
    load: dict
    seconds: float = 0.0
    sessions_done: int = 0           # ran to their end (or stopped at a failed call)
    sessions_cut: int = 0            # still running when the drain ended
    calls: list[dict] = field(default_factory=list)
    itl_sample: list[float] = field(default_factory=list)
    timeline: dict = field(default_factory=dict)      # bin seconds, output tokens and finished calls per bin
    server: dict | None = None                        # /metrics deltas: prompt_tokens, cached_tokens


def poisson_starts(rate: float, n: int, seed: int) -> list[float]:
    """Seconds from the start at which each of `n` sessions arrives (exponential gaps of mean 1/rate)."""
    rng, t, out = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def scrape_counters(client: httpx.Client) -> dict[str, float] | None:
    """radixgate's prompt and cached-token counters from Prometheus /metrics; None when not served."""
    try:
        resp = client.get("/metrics")
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    found = {}
    for key in ("prompt_tokens", "cached_tokens"):
        m = re.search(rf"^radixgate_{key}_total(?:{{[^}}]*}})? ([0-9.eE+-]+)$", resp.text, re.M)
        if m:
            found[key] = float(m.group(1))
    return found if len(found) == 2 else None


def served_model(client: httpx.Client) -> str:
    data = client.get("/v1/models").raise_for_status().json()["data"]
    return data[0]["id"]


async def run_session(session: Session, client: httpx.AsyncClient, model: str, t0: float,
                      records: list[CallRecord]) -> bool:
    """Feed each batch's answers back into the session; False when a call failed (the session stops)."""
    try:
        batch = next(session)
        while True:
            done = await asyncio.gather(*(stream_call(client, c, model, t0, records) for c in batch))
            if not all(r.ok for r in done):
                return False
            batch = session.send([r.text for r in done])
    except StopIteration:
        return True


async def drive(url: str, model: str, sessions: list[Session], load: Load, headers: dict,
                progress: tqdm | None) -> tuple[list[CallRecord], float, int, int]:
    """(call records, seconds, sessions finished, sessions cut at the drain's end) of running the
    sessions under `load`; sessions not started by `max_seconds` are neither."""
    records: list[CallRecord] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(600, connect=30),
                                 limits=limits) as client:
        t0 = time.perf_counter()
        deadline = t0 + load.max_seconds if load.max_seconds else None
        gate = asyncio.Semaphore(load.concurrency if load.rate is None else len(sessions) or 1)

        async def one(session: Session) -> None:
            try:
                await run_session(session, client, model, t0, records)
            finally:
                gate.release()
                if progress is not None:
                    progress.update()

        tasks = []
        schedule = poisson_starts(load.rate, len(sessions), load.seed) if load.rate else [0.0] * len(sessions)
        for session, at in zip(sessions, schedule):
            if deadline is not None and t0 + at > deadline:
                break
            if (wait := t0 + at - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            try:
                await asyncio.wait_for(gate.acquire(), None if deadline is None else deadline - time.perf_counter())
            except asyncio.TimeoutError:
                break
            if deadline is not None and time.perf_counter() > deadline:
                gate.release()
                break
            tasks.append(asyncio.create_task(one(session)))
        pending: set = set()
        if tasks:
            drain = None if deadline is None else max(deadline - time.perf_counter(), 0) + load.drain_seconds
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        seconds = time.perf_counter() - t0
    return records, seconds, len(tasks) - len(pending), len(pending)


def timeline(records: list[CallRecord], seconds: float) -> dict:
    bins = int(seconds / TIMELINE_BIN) + 1
    tokens, finished = [0.0] * bins, [0] * bins
    for r in records:
        if not (r.ok or r.cut):
            continue
        per_chunk = r.completion_tokens / max(len(r.chunk_times), 1)
        for t in r.chunk_times:
            tokens[min(int((r.start + t) / TIMELINE_BIN), bins - 1)] += per_chunk
        if r.ok:
            finished[min(int((r.start + r.e2e) / TIMELINE_BIN), bins - 1)] += 1
    return {"bin_seconds": TIMELINE_BIN, "output_tokens": [round(x, 2) for x in tokens], "finished_calls": finished}


def run_workload(url: str, workload: str, sessions: int, options: Options, load: Load, target: str = "endpoint",
                 model: str | None = None, api_key: str | None = None, progress: bool = True) -> RunResult:
    logging.getLogger("httpx").setLevel(logging.WARNING)          # not a line per request (the CLI logs INFO)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        model = model or served_model(client)
        before = scrape_counters(client)
        work = WORKLOADS[workload].sessions(sessions, load.seed, options)
        bar = tqdm(total=len(work), desc=f"{target}: {workload}", unit="session", file=sys.stderr,
                   disable=not progress, leave=False)
        with bar:
            records, seconds, done, cut = asyncio.run(drive(url, model, work, load, headers, bar))
        after = scrape_counters(client)
    server = {k: after[k] - before[k] for k in after} if before and after else None
    gaps = [g for r in records if r.ok or r.cut for g in r.gaps]
    if len(gaps) > ITL_SAMPLE:
        gaps = random.Random(load.seed).sample(gaps, ITL_SAMPLE)
    return RunResult(target, workload, sessions, asdict(options), asdict(load), seconds, done, cut,
                     [r.summary() for r in records], [round(g, 6) for g in gaps], timeline(records, seconds), server)


def write_results(results: list[RunResult], out: Path, meta: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps({"meta": meta, "runs": [asdict(r) for r in results]}))
    return path


def add_load_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--sessions", type=int, default=64, help="sessions per workload")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every prompt and output length")
    ap.add_argument("--concurrency", type=int, default=16, help="sessions at once")
    ap.add_argument("--rate", type=float, help="Poisson session arrivals per second (instead of --concurrency)")
    ap.add_argument("--max-seconds", type=float, help="per workload: start no session after this long")
    ap.add_argument("--drain-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                    help="let free generations stop at EOS (real weights); default: run to the shaped length")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--no-progress", dest="progress", action="store_false")


def load_of(args: argparse.Namespace) -> Load:
    return Load(args.concurrency, args.rate, args.max_seconds, args.drain_seconds, args.seed)


def render_report(path: Path, out: Path) -> None:
    from loadtest.report import render
    try:
        print(f"report: {render(path, out)}")
    except ImportError as err:        # no matplotlib here: the JSON is written, render it elsewhere
        print(f"no report ({err}); render it with: python -m loadtest.report {path} {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="radixgate bench", description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL of the endpoint, e.g. http://127.0.0.1:8000")
    ap.add_argument("--model", help="model name (default: the first of /v1/models)")
    ap.add_argument("--api-key")
    ap.add_argument("--target", default="endpoint", help="this endpoint's name in the report")
    ap.add_argument("--plain", action="store_true", help="plain OpenAI bodies only (no radixgate extensions)")
    add_load_args(ap)
    args = ap.parse_args(argv)
    from loadtest.report import summarize, summary_line
    options = Options(args.scale, not args.plain, args.ignore_eos and not args.plain)
    results = []
    for name in args.workloads:
        result = run_workload(args.url.rstrip("/"), name, args.sessions, options, load_of(args), args.target,
                              args.model, args.api_key, args.progress)
        print(summary_line(summarize(asdict(result))), flush=True)
        results.append(result)
    path = write_results(results, args.out, {"command": " ".join(sys.argv), "url": args.url})
    render_report(path, args.out)
    return 0 if all(c["error"] in (None, CUT) for r in results for c in r.calls) else 1


if __name__ == "__main__":
    sys.exit(main())
