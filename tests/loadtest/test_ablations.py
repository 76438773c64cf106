"""The ablation run (loadtest/ablations.py, the GPU report's command) on the tiny CPU model: every
target in turn, the report with its ablation table and plots; and the serve command each target runs."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from gateway.cli import parser as cli_parser
from gateway.config import ServeConfig
from loadtest.ablations import TARGETS, parser, run_ablations, serve_argv
from loadtest.naive_server import TransformersBackend
from loadtest.report import render


def test_each_target_runs_the_documented_serve_command_with_its_switch():
    for target in TARGETS.values():
        argv = serve_argv(target, Path("/models/m"), 8123, True, "cuda", ["--mem-fraction=0.8"])
        if target.naive:
            assert argv[1:3] == ["-m", "loadtest.naive_server"] and "--random-weights" in argv
            continue
        assert argv[1:4] == ["-m", "gateway.cli", "serve"]
        args = cli_parser().parse_args(argv[3:])
        cfg = ServeConfig.from_env(**{k: getattr(args, k) for k in ("radix_cache", "jump_forward", "random_weights",
                                                                     "mem_fraction", "port")})
        assert (cfg.radix_cache, cfg.jump_forward) == (target.name != "radix-off", target.name != "jump-forward-off")
        assert cfg.random_weights and cfg.mem_fraction == 0.8 and cfg.port == 8123


def test_ablation_run_measures_every_target_and_renders_the_comparison(tiny_qwen3_dir, live_server, tmp_path):
    from gateway.engine.engine import Engine

    @contextlib.contextmanager
    def launch(target):
        if target.naive:
            yield live_server(TransformersBackend(tiny_qwen3_dir, device="cpu", random_weights=True))
            return
        engine = Engine(tiny_qwen3_dir, device="cpu", dtype="float32", kv_slots=4096, max_context=1024,
                        radix="--no-radix-cache" not in target.serve_flags,
                        jump_forward="--no-jump-forward" not in target.serve_flags)
        try:
            yield live_server(engine)
        finally:
            engine.shutdown()

    args = parser().parse_args(["--model", str(tiny_qwen3_dir), "--out", str(tmp_path), "--workloads",
                                "mmlu", "chat-short", "--sessions", "2", "--scale", "0.05", "--concurrency", "2",
                                "--max-seconds", "20", "--warmup-sessions", "0", "--no-progress"])
    path = run_ablations(args, launch, {"command": "test"})
    runs = json.loads(path.read_text())["runs"]
    assert [(r["target"], r["workload"]) for r in runs] == [
        ("radixgate", "mmlu"), ("radixgate", "chat-short"), ("radix-off", "mmlu"), ("radix-off", "chat-short"),
        ("jump-forward-off", "mmlu"),                                               # structured workloads only
        ("transformers", "mmlu"), ("transformers", "chat-short")]
    assert all(not c["error"] for r in runs for c in r["calls"])
    peer = [r for r in runs if r["target"] == "transformers"]
    assert all(r["options"]["extensions"] is False and r["load"]["concurrency"] == 1 for r in peer)
    cached = {(r["target"], r["workload"]): sum(c["cached_tokens"] or 0 for c in r["calls"]) for r in runs}
    assert cached[("radixgate", "chat-short")] > 0 and cached[("radix-off", "chat-short")] == 0
    text = render(path, tmp_path).read_text()
    assert "## Ablations: `radixgate` against each target" in text and "vs transformers" in text
    assert len(list(tmp_path.glob("*.png"))) == 5
