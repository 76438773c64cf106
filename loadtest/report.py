"""The load test's report from its results file: a Markdown summary and PNG plots.

    python -m loadtest.report results.json OUTDIR        # OUTDIR/report.md and OUTDIR/*.png

The statistics need only the standard library (so a run can print them where matplotlib is missing);
the plots need matplotlib (loadtest/report_plots.py). Runs with the same workload and different
targets (radix cache on/off, jump-forward off, the transformers peer) form the ablation tables, each
target against the file's first one.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from loadtest.stream_client import CUT

QUANTILES = (0.5, 0.9, 0.99)


def percentile(xs: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(run: dict) -> dict:
    """A run's figures: latencies in seconds at QUANTILES, throughput over the run, cache hit rates."""
    ok = [c for c in run["calls"] if not c["error"]]
    cut = [c for c in run["calls"] if c["error"] == CUT]          # their streamed tokens count, latencies not
    seconds = run["seconds"] or float("nan")
    out = {"target": run["target"], "workload": run["workload"], "calls": len(ok), "cut_calls": len(cut),
           "errors": len(run["calls"]) - len(ok) - len(cut), "sessions_done": run["sessions_done"],
           "sessions_cut": run["sessions_cut"], "seconds": run["seconds"],
           "requests_per_s": len(ok) / seconds,
           "output_tokens_per_s": sum(c["completion_tokens"] for c in ok + cut) / seconds,
           "total_tokens_per_s": sum(c["completion_tokens"] + c["prompt_tokens"] for c in ok) / seconds,
           "prompt_tokens": sum(c["prompt_tokens"] for c in ok),
           "completion_tokens": sum(c["completion_tokens"] for c in ok)}
    series = {"ttft": [c["ttft"] for c in ok if c["ttft"] is not None],
              "tpot": [c["tpot"] for c in ok if c["tpot"] is not None],
              "e2e": [c["e2e"] for c in ok], "itl": run["itl_sample"]}
    for key, xs in series.items():
        out[key] = {f"p{round(q * 100)}": percentile(xs, q) for q in QUANTILES}
    reported = [c for c in ok if c["cached_tokens"] is not None]
    out["cache_hit_usage"] = ratio(sum(c["cached_tokens"] for c in reported),
                                   sum(c["prompt_tokens"] for c in reported)) if reported else None
    server = run.get("server")
    out["cache_hit_server"] = ratio(server["cached_tokens"], server["prompt_tokens"]) if server else None
    out["first_error"] = next((c["error"] for c in run["calls"] if c["error"] not in (None, CUT)), None)
    return out


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:,.1f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def triple(d: dict) -> str:
    return " / ".join(ms(d[f"p{round(q * 100)}"]) for q in QUANTILES)


def summary_line(s: dict) -> str:
    return (f"{s['target']:>16} {s['workload']:<16} {s['calls']:>5} calls {s['errors']} errors {s['cut_calls']} cut "
            f"{s['requests_per_s']:7.2f} req/s {s['output_tokens_per_s']:9,.0f} out tok/s  "
            f"TTFT p50 {ms(s['ttft']['p50'])} ms  E2E p50 {ms(s['e2e']['p50'])} ms  "
            f"cache hit {pct(s['cache_hit_usage'])}")


def targets_of(summaries: list[dict]) -> list[str]:
    return list(dict.fromkeys(s["target"] for s in summaries))


def markdown(data: dict, summaries: list[dict], plots: list[str]) -> str:
    meta = data.get("meta", {})
    lines = ["# Load test report", ""]
    for key, value in meta.items():
        if key != "targets":
            lines.append(f"- {key}: `{value}`" if key == "command" else f"- {key}: {value}")
    for name, what in (meta.get("targets") or {}).items():
        lines.append(f"- target `{name}`: {what}")
    lines += ["", "Latencies in ms as p50 / p90 / p99. TTFT: time to first token; ITL: gap between streamed "
              "chunks; TPOT: time per output token after the first; E2E: whole request. Cache hit: prompt "
              "tokens served from the prefix cache, from each answer's usage and from the server's `/metrics`. "
              "Calls: completed (failed, cut); a cut call was still streaming when the run's drain ended: its "
              "tokens count toward throughput, its latencies do not.",
              "", "| workload | target | calls (err, cut) | sessions done / cut | req/s | out tok/s | TTFT | ITL "
              "| TPOT | E2E | cache hit (usage / server) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['workload']} | {s['target']} | {s['calls']} ({s['errors']}, {s['cut_calls']}) | "
                     f"{s['sessions_done']} / "
                     f"{s['sessions_cut']} | {s['requests_per_s']:.2f} | {s['output_tokens_per_s']:,.0f} | "
                     f"{triple(s['ttft'])} | {triple(s['itl'])} | {triple(s['tpot'])} | {triple(s['e2e'])} | "
                     f"{pct(s['cache_hit_usage'])} / {pct(s['cache_hit_server'])} |")
    targets = targets_of(summaries)
    if len(targets) > 1:
        base = targets[0]
        lines += ["", f"## Ablations: `{base}` against each target", "",
                  f"Output-token throughput of `{base}` / the target's, and p50 E2E latency of the target / "
                  f"`{base}`'s, per workload (> 1: `{base}` is faster).", "",
                  "| workload | " + " | ".join(f"vs {t} (tok/s, E2E p50)" for t in targets[1:]) + " |",
                  "|---|" + "---|" * (len(targets) - 1)]
        by = {(s["workload"], s["target"]): s for s in summaries}
        for w in dict.fromkeys(s["workload"] for s in summaries):
            cells = []
            for t in targets[1:]:
                a, b = by.get((w, base)), by.get((w, t))
                if a is None or b is None:
                    cells.append("-")
                    continue
                tok = ratio(a["output_tokens_per_s"], b["output_tokens_per_s"])
                lat = ratio(b["e2e"]["p50"], a["e2e"]["p50"])
                cells.append(f"{tok:.2f}x, {lat:.2f}x" if tok and lat else "-")
            lines.append(f"| {w} | " + " | ".join(cells) + " |")
    errors = [s for s in summaries if s["first_error"]]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {s['target']} / {s['workload']}: {s['errors']} failed; first: "
                                          f"`{s['first_error'][:200]}`" for s in errors]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def render(results: Path, out: Path) -> Path:
    """report.md and the plots in `out`; raises ImportError without matplotlib (the tables alone then
    are in report.md all the same)."""
    data = json.loads(Path(results).read_text())
    summaries = [summarize(r) for r in data["runs"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summaries, indent=1))
    try:
        from loadtest.report_plots import plot_all
    except ImportError:
        (out / "report.md").write_text(markdown(data, summaries, []))
        raise
    plots = plot_all(data["runs"], summaries, out)
    path = out / "report.md"
    path.write_text(markdown(data, summaries, plots))
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(render(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
