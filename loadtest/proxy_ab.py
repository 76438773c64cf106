"""An interleaved before/after of servers answering the same request (`proxy_bench --ab N`).

N rounds, each sending one request to every target in a shuffled order with exponential gaps between
them (one blocking connection per target), so a before/after (`--baseline`) differs by the change, not
by when each target ran; it reports each target's p50 and its median CPU per request (its threads'
schedstat). On the loaded 2-core machine this separated changes of 0.05 ms p50 that the turns of
proxy_bench's table (about +-0.15 ms of noise) did not.
"""
from __future__ import annotations

import os
import random
import socket
import time


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer (Content-Length or chunked) from a blocking socket; its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), None)
    while (len(rest) < length) if length is not None else not rest.endswith(b"0\r\n\r\n"):
        rest += sock.recv(65536)
    return head[9:12]


def thread_cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def interleaved(servers: dict, raw: bytes, rounds: int, gap: float, seed: int = 0) -> None:
    """servers: name -> a running proxy_bench.Process, "direct" among them; raw: one HTTP/1.1 request."""
    rng = random.Random(seed)
    socks = {}
    for name, server in servers.items():
        host, port = server.url.removeprefix("http://").split(":")
        socks[name] = socket.create_connection((host, int(port)))
        socks[name].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latency = {name: [] for name in servers}
    cpu = {name: [] for name in servers}
    load = os.getloadavg()[0]
    try:
        for _ in range(rounds):
            order = list(servers)
            rng.shuffle(order)
            for name in order:
                pid = servers[name].proc.pid
                before = thread_cpu_ns(pid)
                t0 = time.perf_counter()
                socks[name].sendall(raw)
                if read_answer(socks[name]) != b"200":
                    raise RuntimeError(f"{name} did not answer 200")
                latency[name].append(time.perf_counter() - t0)
                time.sleep(0.002)                    # the server's work after its answer (metrics) counts too
                cpu[name].append(thread_cpu_ns(pid) - before)
                time.sleep(rng.expovariate(1 / gap))
    finally:
        for sock in socks.values():
            sock.close()
    p50 = {name: sorted(xs)[len(xs) // 2] * 1e3 for name, xs in latency.items()}
    print(f"\ninterleaved: {rounds} rounds, exponential gaps of {gap * 1e3:g} ms on average, load average "
          f"{load:.2f} at start; added = p50 - direct p50")
    for name in servers:
        added = f"{p50[name] - p50['direct']:+8.3f}" if name != "direct" else f"{'':>8}"
        print(f"{name:>10}: p50 {p50[name]:.3f} ms  added {added} ms  CPU median "
              f"{sorted(cpu[name])[len(cpu[name]) // 2] / 1e3:5.0f} us per request")
