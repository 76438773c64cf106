"""Every workload against radixgate and its ablations in one run: radix cache on/off, jump-forward
on/off, and `transformers` `generate()` as the naive peer (loadtest/naive_server.py).

    python -m loadtest.ablations --preset llama-3.2-1b --out gpu-report      # random weights drawn on the GPU
    python -m loadtest.ablations --model DIR --out OUT --targets radixgate radix-off

Each target is a server in its own process (`radixgate serve ...`, the same command users run), started
in turn, warmed up with one session of each workload (another seed, untimed; the naive peer, which
compiles nothing, is not), then driven by loadtest/run.py. Radixgate's targets get the workloads with
radixgate's extensions; the naive peer gets the plain bodies (select and regex become plain generations
of about the same length) at concurrency 1, since it serves one request at a time. Every workload
stops starting sessions after `--max-seconds`.
Writes OUT/results.json and, where matplotlib imports, OUT/report.md with its plots (else render them
elsewhere: `python -m loadtest.report OUT/results.json OUT`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from loadtest.proxy_bench import Process, free_port
from loadtest.report import summarize, summary_line
from loadtest.run import Load, add_load_args, load_of, render_report, run_workload, write_results
from loadtest.workloads import WORKLOADS, Options


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    about: str
    serve_flags: tuple[str, ...] = ()
    naive: bool = False               # loadtest/naive_server.py instead of radixgate serve
    structured_only: bool = False     # only the workloads using choices / regex / program


TARGETS = {t.name: t for t in (
    Target("radixgate", "radixgate serve (radix cache, jump-forward)"),
    Target("radix-off", "radixgate serve --no-radix-cache", ("--no-radix-cache",)),
    Target("jump-forward-off", "radixgate serve --no-jump-forward (structured workloads only)",
           ("--no-jump-forward",), structured_only=True),
    Target("transformers", "transformers generate(), one request at a time, plain requests, concurrency 1",
           naive=True),
)}
Launcher = Callable[[Target], AbstractContextManager[str]]      # a target -> its running server's URL


def on_gpu(device: str) -> bool:
    import torch
    return device != "cpu" and torch.cuda.is_available()


def serve_argv(target: Target, model: Path, port: int, random_weights: bool, device: str,
               serve_args: list[str]) -> list[str]:
    common = ["--model", str(model), "--port", str(port), "--host", "127.0.0.1", "--device", device]
    if random_weights:
        common.append("--random-weights")
    if target.naive:
        return [sys.executable, "-m", "loadtest.naive_server", *common]
    return [sys.executable, "-m", "gateway.cli", "serve", *common, *target.serve_flags, *serve_args]


def process_launcher(args: argparse.Namespace, model: Path, random_weights: bool) -> Launcher:
    """Each target as a server process of its own, stopped (SIGTERM) when its workloads are done; its
    log is kept as OUT/logs/TARGET.log."""
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def launch(target: Target) -> Iterator[str]:
        port = free_port()
        serve_args = [f"--mem-fraction={args.mem_fraction}"] if on_gpu(args.device) else []
        argv = serve_argv(target, model, port, random_weights, args.device, serve_args + args.serve_arg)
        try:
            server = Process(target.name, argv, port, "/health")
        except RuntimeError as err:                  # the message ends with the log's path
            shutil.copy(str(err).rsplit("see ", 1)[-1], logs / f"{target.name}.log")
            raise RuntimeError(f"{target.name} did not start: {' '.join(argv)}; its log is in {logs}") from None
        try:
            yield server.url
        finally:
            server.close()
            shutil.copy(server.log.name, logs / f"{target.name}.log")
    return launch


def model_dir(args: argparse.Namespace, scratch: Path) -> tuple[Path, bool]:
    """(checkpoint directory, whether its weights are drawn at random): --model as given (random when
    it holds no weights), or --preset built without weights (config and tokenizer) under `scratch`."""
    if args.model:
        path = Path(args.model)
        return path, args.random_weights or not any(path.glob("*.safetensors"))
    from gateway.modelgen.builder import make_model
    from gateway.modelgen.shapes import PRESETS
    return make_model(PRESETS[args.preset], scratch / args.preset, dtype="bfloat16", tokenizer="auto",
                      weights=False), True


def device_name(device: str) -> str:
    import torch
    if on_gpu(device):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU (torch {torch.__version__})"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_ablations(args: argparse.Namespace, launch: Launcher, meta: dict) -> Path:
    """Every target's workloads (after a warm-up), results written after each target; the results file."""
    results = []
    for name in args.targets:
        target = TARGETS[name]
        options = Options(args.scale, extensions=not target.naive, ignore_eos=args.ignore_eos)
        load = load_of(args)
        if target.naive:
            load = dataclasses.replace(load, concurrency=1, rate=None,
                                       max_seconds=args.peer_max_seconds or args.max_seconds)
        workloads = [w for w in args.workloads if WORKLOADS[w].structured or not target.structured_only]
        began = time.perf_counter()
        with launch(target) as url:
            print(f"{name}: serving after {time.perf_counter() - began:.0f} s", flush=True)
            for w in workloads if args.warmup_sessions and not target.naive else ():
                run_workload(url, w, args.warmup_sessions, options, Load(args.warmup_sessions, seed=10**6),
                             name, progress=False)
            for w in workloads:
                result = run_workload(url, w, args.sessions, options, load, name, progress=args.progress)
                print(summary_line(summarize(dataclasses.asdict(result))), flush=True)
                results.append(result)
        print(f"{name}: done after {time.perf_counter() - began:.0f} s", flush=True)
        path = write_results(results, args.out, meta)      # after each target: a crash keeps what was measured
    return path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="a checkpoint directory (random weights when it holds none)")
    where.add_argument("--preset", help="a make-model preset, built without weights (e.g. llama-3.2-1b)")
    ap.add_argument("--random-weights", action="store_true", help="random weights even if --model holds some")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mem-fraction", type=float, default=0.8,
                    help="on a GPU, radixgate serve's --mem-fraction (weights + KV cache)")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra flag for radixgate serve, e.g. --serve-arg=--mem-fraction=0.8 (repeatable)")
    ap.add_argument("--peer-max-seconds", type=float, help="--max-seconds for the naive peer (default: the same)")
    ap.add_argument("--warmup-sessions", type=int, default=1)
    add_load_args(ap)
    return ap


def describe(args: argparse.Namespace, argv: list[str], model: str) -> dict:
    return {"command": " ".join(["python -m loadtest.ablations", *argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git_commit(), "device": device_name(args.device), "model": model,
            "load": f"{args.sessions} sessions per workload at scale {args.scale}, "
                    + (f"Poisson {args.rate}/s" if args.rate else f"concurrency {args.concurrency}")
                    + (f", no session starts after {args.max_seconds} s" if args.max_seconds else ""),
            "targets": {name: TARGETS[name].about for name in args.targets}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="radixgate-ablations-") as scratch:
        model, random_weights = model_dir(args, Path(scratch))
        meta = describe(args, argv, (args.preset or model.name) + (" (random weights)" if random_weights else ""))
        path = run_ablations(args, process_launcher(args, model, random_weights), meta)
    render_report(path, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
