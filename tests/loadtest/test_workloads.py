"""Every workload against the tiny CPU engine through the real HTTP API, and its report."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from loadtest.report import render, summarize
from loadtest.run import Load, run_workload, write_results
from loadtest.workloads import WORKLOADS, Options

SMALL = Options(scale=0.05)


def replay(workload: str, options: Options, seed: int) -> list[list[dict]]:
    """The calls of every session, answering each call with a fixed text."""
    out = []
    for session in WORKLOADS[workload].sessions(3, seed, options):
        calls, batch = [], next(session)
        try:
            while True:
                calls.append([c.body for c in batch])
                batch = session.send([f"answer {len(calls)}"] * len(batch))
        except StopIteration:
            out.append(calls)
    return out


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_is_deterministic_and_plain_bodies_carry_no_extension(workload):
    assert replay(workload, SMALL, 1) == replay(workload, SMALL, 1)
    assert replay(workload, SMALL, 1) != replay(workload, SMALL, 2)
    extensions = {"choices", "regex", "program", "ignore_eos"}
    plain = replay(workload, Options(scale=0.05, extensions=False), 1)
    assert not any(extensions & set(body) for session in plain for step in session for body in step)
    used = {key for session in replay(workload, SMALL, 1) for step in session for body in step for key in body}
    assert bool(used & {"choices", "regex", "program"}) == WORKLOADS[workload].structured


def test_dependent_steps_carry_the_previous_answers():
    (session, *_) = replay("chat-short", SMALL, 0)
    assert len(session) == 4
    assert session[1][0]["messages"][-2] == {"role": "assistant", "content": "answer 1"}
    (tree, *_) = replay("tree-of-thought", SMALL, 0)
    assert [len(step) for step in tree] == [3, 9, 1]          # plans, attempts per plan, the vote
    (judge, *_) = replay("judge", SMALL, 0)
    assert [len(step) for step in judge] == [6, 1]


def test_every_workload_runs_against_the_tiny_engine_and_its_report_renders(tiny_engine, live_server, tmp_path):
    url = live_server(tiny_engine)
    results = []
    for name in WORKLOADS:
        result = run_workload(url, name, 2, SMALL, Load(concurrency=2), target="radixgate", progress=False)
        s = summarize(asdict(result))
        assert s["errors"] == 0, s["first_error"]
        assert s["sessions_done"] == 2 and s["completion_tokens"] > 0
        assert s["ttft"]["p50"] is not None and s["e2e"]["p99"] >= s["e2e"]["p50"]
        assert s["cache_hit_server"] is not None
        results.append(result)
    by_name = {r.workload: summarize(asdict(r)) for r in results}
    assert by_name["chat-short"]["cache_hit_usage"] > 0.3           # each turn finds the conversation so far
    path = write_results(results, tmp_path, {"command": "test"})
    report = render(path, tmp_path)
    text = report.read_text()
    assert all(f"| {name} | radixgate |" in text for name in WORKLOADS)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 5
    from PIL import Image
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()
            assert image.size[0] > 200 and image.size[1] > 200
        assert f"({png.name})" in text
    assert json.loads((tmp_path / "summary.json").read_text())[0]["workload"] == "mmlu"
