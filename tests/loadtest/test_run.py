"""The load generator's own behaviour, against backends that answer at once or slowly: the
`radixgate bench` command end to end, Poisson arrivals, and the cut at a run's end."""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

from gateway.cli import main as cli
from gateway.protocol import Delta, Usage
from loadtest.report import summarize
from loadtest.run import Load, run_workload
from loadtest.servers import InstantBackend
from loadtest.stream_client import CUT
from loadtest.workloads import Options

PLAIN = Options(scale=0.05, extensions=False, ignore_eos=False)


class SlowBackend(InstantBackend):
    """Twenty one-token pieces, 50 ms apart."""

    async def generate(self, req):
        for j in range(20):
            await asyncio.sleep(0.05)
            yield Delta(0, f" w{j}", [j])
        yield Delta(0, finish_reason="length", usage=Usage(7, 20))


def test_bench_command_writes_results_and_report(live_server, tmp_path):
    url = live_server(InstantBackend())
    code = cli(["bench", "--url", url, "--workloads", "mmlu", "judge", "--sessions", "3", "--scale", "0.05",
                "--plain", "--no-progress", "--out", str(tmp_path)])
    assert code == 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["workload"] for r in runs] == ["mmlu", "judge"]
    assert [len(r["calls"]) for r in runs] == [3, 3 * 7]                  # judge: 6 forks and a merge each
    assert all(c["completion_tokens"] == 3 and c["ttft"] is not None for r in runs for c in r["calls"])
    assert "| judge | endpoint |" in (tmp_path / "report.md").read_text()


def test_poisson_arrivals_spread_the_session_starts(live_server):
    url = live_server(InstantBackend())
    result = run_workload(url, "mmlu", 6, PLAIN, Load(rate=20.0, seed=3), progress=False)
    starts = sorted(c["start"] for c in result.calls)
    assert len(starts) == 6 and starts[-1] - starts[0] > 0.05          # mean gap 50 ms, not all at once
    assert result.load["rate"] == 20.0


def test_calls_in_flight_at_the_drains_end_are_cut_and_their_tokens_count(live_server):
    url = live_server(SlowBackend())
    result = run_workload(url, "chat-long", 8, PLAIN, Load(concurrency=2, max_seconds=0.2, drain_seconds=0.4),
                          progress=False)
    assert (result.sessions_done, result.sessions_cut) == (0, 2)       # 2 started before 0.2 s, none after
    assert [c["error"] for c in result.calls] == [CUT, CUT]
    assert all(0 < c["completion_tokens"] < 20 for c in result.calls)
    s = summarize(asdict(result))
    assert (s["calls"], s["cut_calls"], s["errors"]) == (0, 2, 0)
    assert s["output_tokens_per_s"] > 0 and s["e2e"]["p50"] is None and s["first_error"] is None
