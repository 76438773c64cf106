"""The report's PNG plots (matplotlib, headless): latency distributions, throughput over time, and
the ablations (throughput and cache hit rate per workload and target)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def grid(n: int) -> tuple[plt.Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def colours(runs: list[dict]) -> dict[str, str]:
    """One colour per target, the same in every panel and plot (in the file's target order)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    targets = dict.fromkeys(r["target"] for r in runs)
    return {t: cycle[i % len(cycle)] for i, t in enumerate(targets)}


def by_workload(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(r["workload"], []).append(r)
    return out


def save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def latency_plot(runs: list[dict], key: str, title: str, path: Path) -> str:
    """Per workload, the distribution of one latency for each target (box: quartiles, whiskers p1-p99)."""
    groups, colour = by_workload(runs), colours(runs)
    fig, axes = grid(len(groups))
    for ax, (workload, rs) in zip(axes, groups.items()):
        data = [[c[key] * 1e3 for c in r["calls"] if not c["error"] and c[key] is not None] or [math.nan]
                for r in rs]
        boxes = ax.boxplot(data, whis=(1, 99), showfliers=False, patch_artist=True)
        for box, r in zip(boxes["boxes"], rs):
            box.set_facecolor(colour[r["target"]])
            box.set_alpha(0.6)
        ax.set_xticks(range(1, len(rs) + 1), [r["target"] for r in rs], rotation=20, fontsize=8)
        ax.set_title(workload, fontsize=10)
        ax.set_ylabel(f"{title} (ms)")
        measured = [d for d in data if not math.isnan(d[0])]
        if measured and all(min(d) > 0 for d in measured):
            ax.set_yscale("log")
    fig.suptitle(f"{title} per call")
    return save(fig, path)


def throughput_plot(runs: list[dict], path: Path) -> str:
    groups, colour = by_workload(runs), colours(runs)
    fig, axes = grid(len(groups))
    for ax, (workload, rs) in zip(axes, groups.items()):
        for r in rs:
            t = r["timeline"]
            width = t["bin_seconds"]
            xs = [i * width for i in range(len(t["output_tokens"]))]
            ax.plot(xs, [x / width for x in t["output_tokens"]], "o-", markersize=2, label=r["target"],
                    color=colour[r["target"]])
        ax.set_title(workload, fontsize=10)
        ax.set_xlabel("seconds")
        ax.set_ylabel("output tokens / s")
        ax.legend(fontsize=7)
    fig.suptitle("Throughput over time")
    return save(fig, path)


def ablation_plot(summaries: list[dict], path: Path) -> str:
    """Grouped bars per workload: output tokens/s and prompt cache hit rate for every target."""
    workloads = list(dict.fromkeys(s["workload"] for s in summaries))
    targets = list(dict.fromkeys(s["target"] for s in summaries))
    by = {(s["workload"], s["target"]): s for s in summaries}
    width = 0.8 / len(targets)
    fig, (tok, hit) = plt.subplots(2, 1, figsize=(max(6, 1.4 * len(workloads)), 7))
    for i, t in enumerate(targets):
        xs = [k + i * width for k in range(len(workloads))]
        tok.bar(xs, [by[(w, t)]["output_tokens_per_s"] if (w, t) in by else 0 for w in workloads], width, label=t)
        hit.bar(xs, [100 * (by[(w, t)]["cache_hit_usage"] or 0) if (w, t) in by else 0 for w in workloads], width,
                label=t)
    for ax, label in ((tok, "output tokens / s"), (hit, "prompt tokens cached (%)")):
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(workloads))], workloads, rotation=20, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    tok.set_yscale("log")
    tok.set_title("Ablations: throughput and cache hits per workload")
    return save(fig, path)


def plot_all(runs: list[dict], summaries: list[dict], out: Path) -> list[str]:
    return [latency_plot(runs, "e2e", "end-to-end latency", out / "latency_e2e.png"),
            latency_plot(runs, "ttft", "time to first token", out / "latency_ttft.png"),
            latency_plot(runs, "tpot", "time per output token", out / "latency_tpot.png"),
            throughput_plot(runs, out / "throughput_over_time.png"),
            ablation_plot(summaries, out / "ablations.png")]
