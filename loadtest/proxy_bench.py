"""What radixgate adds in front of an upstream API, against LiteLLM's proxy, at rising request rates.

    python -m loadtest.proxy_bench [--rates 50,100,200,400,800,1600] [--seconds 4] [--litellm /work/litellm-venv]

Four servers, each in its own process: the fake upstream (loadtest/fake_upstream.py, answering at
once), radixgate serving it (`--upstream`), LiteLLM's proxy serving it (from its own venv, skipped
when absent), and the floor: a bare pass-through proxy (loadtest/bare_proxy.py) on the same HTTP
client radixgate uses, whose added latency is the extra hop itself. This process is only the load generator: open-loop Poisson arrivals at each rate (the
same arrival times for every target), raw HTTP/1.1 on keep-alive connections, latency counted from
each request's scheduled time, so a server that falls behind shows it. The targets take turns within
each rate, so load from other work on the machine falls on all of them alike. Both proxies check the same
API key. Overhead = latency through a proxy - latency straight to the fake upstream at the same rate.

`--ab N` adds an interleaved comparison after the table (loadtest/proxy_ab.py).

A rate is sustained when every request got a 200, the last answer came within half a second of the
last send, and the median stayed under 100 ms (a backlog that builds shows there first). `cpu` is
each proxy's own CPU milliseconds per request (its process tree, from /proc), the least noisy figure
on a shared machine. The generator reports its own lag behind the schedule; when the
direct run cannot sustain a rate, the generator or the fake upstream is the limit, not the proxies.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import importlib.util
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtest.api_overhead import read_response
from loadtest.fake_upstream import FAKE_MODEL
from loadtest.proxy_ab import interleaved

KEY = "sk-bench-0123456789abcdef"
BODY = {"model": FAKE_MODEL, "max_tokens": 16,
        "messages": [{"role": "system", "content": "You are a terse assistant."},
                     {"role": "user", "content": "How much does the gateway cost per request?"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A server in a child process, ready once `probe` answers."""

    def __init__(self, name: str, argv: list[str], port: int, probe: str, env: dict | None = None, cwd=None):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"proxy-bench-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + probe, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{name} did not start; see {self.log.name}")
            time.sleep(0.3)

    def cpu_seconds(self) -> float:
        """CPU time of the server's process and its descendants so far (Linux /proc)."""
        tick, pids = os.sysconf("SC_CLK_TCK"), {self.proc.pid}
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        grew = True
        while grew:
            more = {pid for pid, (parent, _) in stats.items() if parent in pids} - pids
            pids |= more
            grew = bool(more)
        return sum(stats[pid][1] for pid in pids if pid in stats)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def extras_env(extras: Path | None) -> dict:
    """PYTHONPATH for a folder of server speed-ups (uvloop, httptools) that uvicorn then picks itself."""
    if extras is None:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(extras), os.environ.get("PYTHONPATH")]))}


def start_fake(extras: Path | None = None) -> Process:
    port = free_port()
    return Process("fake", [sys.executable, "-m", "loadtest.fake_upstream", "--port", str(port)], port, "/v1/models",
                   extras_env(extras))


def start_bare(upstream: str, extras: Path | None = None) -> Process:
    port = free_port()
    return Process("bare", [sys.executable, "-m", "loadtest.bare_proxy", "--upstream", upstream + "/v1",
                            "--port", str(port)], port, "/health", extras_env(extras))


def start_radixgate(upstream: str, extras: Path | None = None, tree: Path | None = None,
                    name: str = "radixgate") -> Process:
    """radixgate serving the fake as `radixgate serve --upstream` does; from another checkout's `tree` (its
    own code, on uvicorn's protocol where it has no server_protocol) for a before/after in the same turns."""
    port = free_port()
    code = ("import uvicorn; from gateway.api.app import create_app; from gateway.cli import upstream_backend; "
            "from gateway.config import ServeConfig\n"
            "try:\n from gateway.api.server_protocol import server_protocol; http = server_protocol()\n"
            "except ImportError:\n http = 'auto'\n"
            f"cfg = ServeConfig(port={port}, api_keys=({KEY!r},), upstreams=({upstream + '/v1'!r},), "
            f"upstream_models=({FAKE_MODEL!r},))\n"
            f"uvicorn.run(create_app(upstream_backend(cfg), cfg), host='127.0.0.1', port={port}, "
            "log_level='warning', access_log=False, backlog=4096, http=http)")
    env = extras_env(extras)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return Process(name, [sys.executable, "-c", code], port, "/health", env, cwd=tree)


def start_litellm(venv: Path, upstream: str) -> Process | None:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"LiteLLM not found at {exe}: measuring radixgate alone")
        return None
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-litellm-"))
    (work / "config.yaml").write_text(json.dumps({
        "model_list": [{"model_name": FAKE_MODEL, "litellm_params": {
            "model": f"openai/{FAKE_MODEL}", "api_base": upstream + "/v1", "api_key": "none"}}],
        "litellm_settings": {"drop_params": True, "telemetry": False}}))
    port = free_port()
    env = {"LITELLM_MASTER_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    return Process("litellm", [str(exe), "--config", "config.yaml", "--port", str(port), "--num_workers", "1"],
                   port, "/health/liveliness", env, cwd=work)


# ----- the load generator ------------------------------------------------------------------------------

@dataclass(slots=True)
class Cell:
    rate: float
    latencies: list[float]
    errors: int
    drain: float            # seconds from the last send to the last answer
    lag: float              # the generator's p99 lag behind the schedule, seconds
    cpu: float = 0.0        # the server's CPU seconds per request
    answered: int = 0       # requests answered, warm-up included (what the CPU time was spent on)

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3 if xs else float("nan")

    @property
    def sustained(self) -> bool:
        """Every answer a 200, and answers keep pace: no backlog at the end, none building (p50 < 100 ms)."""
        return self.errors == 0 and self.drain < 0.5 and self.pct(0.5) < 100


def arrivals(rate: float, seconds: float, seed: int = 0) -> list[float]:
    rng, t, out = random.Random(seed), 0.0, []
    while (t := t + rng.expovariate(rate)) < seconds:
        out.append(t)
    return out


def raw_request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(data)) + data


def merge(a: Cell, b: Cell) -> Cell:
    return Cell(a.rate, a.latencies + b.latencies, a.errors + b.errors, max(a.drain, b.drain), max(a.lag, b.lag),
                a.cpu + b.cpu, a.answered + b.answered)


async def run_cell(url: str, body: dict, rate: float, seconds: float, warmup: float, seed: int = 0) -> Cell:
    host, port = url.removeprefix("http://").split(":")
    raw, streaming = raw_request(body), bool(body.get("stream"))
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies, lags, errors = [], [], 0
    loop = asyncio.get_running_loop()

    async def one(scheduled: float, measured: bool) -> None:
        nonlocal errors
        try:
            conn = idle.pop() if idle else await asyncio.open_connection(host, int(port))
            conn[1].write(raw)
            status, answer = await asyncio.wait_for(read_response(conn[0]), 30)
            ok = status == 200 and (not streaming or answer.rstrip().endswith(b"[DONE]"))
            idle.append(conn)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            ok = False
        if not ok:
            errors += 1
        elif measured:
            latencies.append(loop.time() - scheduled)

    schedule = arrivals(rate, warmup + seconds, seed)
    start = loop.time() + 0.01
    tasks = []
    for t in schedule:
        due = start + t
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        lags.append(loop.time() - due)
        tasks.append(asyncio.create_task(one(due, t >= warmup)))
    last_send = loop.time()
    await asyncio.gather(*tasks)
    drain = loop.time() - last_send
    for _, writer in idle:
        writer.close()
    lags.sort()
    return Cell(rate, latencies, errors, drain, lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
                answered=len(schedule) - errors)


# ----- the report --------------------------------------------------------------------------------------

def prime(url: str, body: dict, n: int = 200) -> None:
    """Sequential requests before measuring: first-request set-up is no part of the figures."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        for _ in range(n):
            c.post("/v1/chat/completions", json=body).raise_for_status()


def added(cell: Cell, direct: Cell, q: float) -> float:
    return cell.pct(q) - direct.pct(q)


def speedups_installed() -> bool:
    """Whether uvicorn here finds uvloop and httptools itself (they are radixgate's dependencies)."""
    return importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="25,50,100,200,400,800,1200,1600,2400", help="requests per second")
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per rate")
    ap.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds at the start of each turn")
    ap.add_argument("--min-requests", type=int, default=400,
                    help="measured requests per rate and target at least (low rates run longer), so p99 means something")
    ap.add_argument("--rounds", type=int, default=4, help="turns per rate; each target runs seconds/rounds a turn")
    ap.add_argument("--stream", action="store_true", help="streamed requests (with usage) instead of plain ones")
    ap.add_argument("--litellm", type=Path, default=Path("/work/litellm-venv"), help="LiteLLM's venv")
    ap.add_argument("--baseline", type=Path,
                    help="another checkout of radixgate (e.g. `git worktree add /tmp/before HEAD~3`), measured "
                         "as 'before' in the same turns")
    ap.add_argument("--ab", type=int, default=0, metavar="N",
                    help="after the table, N interleaved rounds of one request per target (LiteLLM left out)")
    ap.add_argument("--ab-gap", type=float, default=40.0, help="the interleaved rounds' mean gap in ms")
    ap.add_argument("--server-extras", type=Path,
                    help="a folder with uvloop/httptools (pip install --target) for the fake upstream and radixgate")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    body = BODY | ({"stream": True, "stream_options": {"include_usage": True}} if args.stream else {})

    fake = start_fake(args.server_extras)
    servers = {"direct": fake}
    try:
        servers["bare"] = start_bare(fake.url, args.server_extras)
        servers["radixgate"] = start_radixgate(fake.url, args.server_extras)
        if args.baseline is not None:
            servers["before"] = start_radixgate(fake.url, args.server_extras, args.baseline, "before")
        if (lite := start_litellm(args.litellm, fake.url)) is not None:
            servers["litellm"] = lite
        for server in servers.values():
            prime(server.url, body)
        print(f"Poisson arrivals, {args.seconds:g} s (at least {args.min_requests} requests) per rate and target in "
              f"{args.rounds} turns (each after "
              f"{args.warmup:g} s warm-up), "
              f"{'streamed' if args.stream else 'plain'} chat requests; latencies in ms; load average "
              f"{os.getloadavg()[0]:.2f} at start on {os.cpu_count()} cores; servers on "
              f"{'uvloop + httptools' if args.server_extras or speedups_installed() else 'asyncio + h11'} "
              f"(LiteLLM: its own)")
        proxies = [name for name in ("bare", "before", "radixgate", "litellm") if name in servers]
        head = f"{'rate':>6} | {'direct p50':>10}{'p99':>7} | " + "".join(
            f"{name + ' +p50':>14}{'+p99':>10}{'cpu':>6}{'ok':>4} | " for name in proxies) + f"{'gen lag p99':>11}"
        print(head + "\n" + "-" * len(head))
        best = {name: 0.0 for name in servers}
        live = set(servers)                              # a proxy that fell behind is not driven harder
        results = []
        for rate in rates:
            cells: dict[str, Cell] = {}
            for turn in range(args.rounds):             # targets take turns, so the neighbours' load hits all
                for name, server in servers.items():
                    if name in live:
                        cpu = server.cpu_seconds()
                        seconds = max(args.seconds, args.min_requests / rate) / args.rounds
                        c = asyncio.run(run_cell(server.url, body, rate, seconds, args.warmup, seed=turn))
                        c.cpu = server.cpu_seconds() - cpu
                        cells[name] = merge(cells[name], c) if name in cells else c
                        time.sleep(0.2)                  # let the server settle before the next target
            for c in cells.values():
                c.cpu /= c.answered or 1
            results.append(cells)
            d = cells["direct"]
            row = f"{rate:>6.0f} | {d.pct(0.5):>10.2f}{d.pct(0.99):>7.2f} | "
            for name in proxies:
                c = cells.get(name)
                row += (f"{added(c, d, 0.5):>+14.2f}{added(c, d, 0.99):>+10.2f}{c.cpu * 1e3:>6.2f}"
                        f"{'yes' if c.sustained else 'NO':>4} | " if c else f"{'-':>14}{'':>20} | ")
                if c and c.sustained:
                    best[name] = rate
                elif c:
                    live.discard(name)
            print(row + f"{max(c.lag for c in cells.values()) * 1e3:>11.2f}"
                  + ("" if d.sustained else "   (direct not sustained: the generator or fake is the limit)"))
            if not live - {"direct", "bare", "before"}:
                break
        summary(best, results)
        if args.ab:
            interleaved({k: v for k, v in servers.items() if k != "litellm"}, raw_request(body), args.ab,
                        args.ab_gap / 1e3)
    finally:
        for s in servers.values():
            s.close()


def summary(best: dict[str, float], results: list[dict[str, Cell]]) -> None:
    print(f"\nhighest sustained rate: radixgate {best['radixgate']:.0f}/s"
          + (f", LiteLLM {best['litellm']:.0f}/s: {best['radixgate'] / best['litellm']:.1f}x" if best.get("litellm")
             else ""))
    if not best.get("litellm"):
        return
    cells = next(c for c in results if c["direct"].rate == best["litellm"])
    d, r, lite, bare = cells["direct"], cells["radixgate"], cells["litellm"], cells["bare"]
    print(f"at {best['litellm']:.0f}/s, LiteLLM's highest: radixgate adds {added(r, d, 0.5):.2f} ms p50 / "
          f"{added(r, d, 0.99):.2f} ms p99 (goal: < 1 / < 5), LiteLLM {added(lite, d, 0.5):.2f} / {added(lite, d, 0.99):.2f} "
          f"ms; LiteLLM adds {added(lite, d, 0.5) / max(added(r, d, 0.5), 1e-3):.1f}x as much at p50 and spends "
          f"{lite.cpu / r.cpu:.1f}x the CPU per request ({lite.cpu * 1e3:.2f} against {r.cpu * 1e3:.2f} ms); the bare "
          f"pass-through proxy adds {added(bare, d, 0.5):.2f} / {added(bare, d, 0.99):.2f} ms at {bare.cpu * 1e3:.2f} ms "
          f"CPU, so radixgate's own work is {added(r, d, 0.5) - added(bare, d, 0.5):.2f} ms of its p50")


if __name__ == "__main__":
    main()
