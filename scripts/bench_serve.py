"""Load-test seq2seq-serve on loopback: N requests from C concurrent clients, then stop.

Starts ``seq2seq-serve`` as a child process on a free 127.0.0.1 port, asks it each distinct
sentence once, one request at a time (the one-at-a-time answers, and a sequential
baseline), then sends ``--requests`` single-sentence /translate requests from ``--clients``
threads and checks every answer: HTTP 200, attention shapes matching the tokens, and the
translation of the one-at-a-time answer. Reports p50/p95 latency and sentences/s as one
markdown table, then stops the server. Nothing listens beyond loopback, nothing is left
running.

    PYTHONPATH=. python scripts/bench_serve.py CHECKPOINT --src test.de.gz --requests 200 \
        --clients 20 --beam 5 --threads 2
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


def read_sentences(path: Path, count: int) -> list[str]:
    """The first ``count`` non-empty lines of a text file (plain or .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return lines[:count]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    """``seq2seq-serve`` in a child process, on loopback only."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [
        sys.executable,
        "-m",
        "seq2seq.cli.serve",
        f"checkpoint={args.checkpoint}",
        "host=127.0.0.1",
        f"port={port}",
        f"decode.beam_size={args.beam}",
        f"max_batch_sentences={args.max_batch}",
        "log_level=warning",
    ]
    return subprocess.Popen(command, env=env)


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll GET /health until it answers, or fail when the server died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"seq2seq-serve exited with status {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"seq2seq-serve did not answer within {timeout:.0f} s")


def well_formed(result: dict[str, Any], layers: int, heads: int) -> bool:
    """Whether the attention arrays have the shapes the token lists give."""
    src, tgt = len(result["source_subwords"]), len(result["target_subwords"])
    sub = result["attention"]["subword"]["heads"]
    return (
        len(sub) == layers
        and all(len(layer) == heads for layer in sub)
        and all(len(head) == tgt and all(len(row) == src for row in head) for head in sub[0])
    )


def main() -> None:
    """Parse arguments, run the load, print the table, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--src", type=Path, required=True, help="source sentences, one a line")
    parser.add_argument("--distinct", type=int, default=50, help="distinct sentences cycled")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=64, help="server max_batch_sentences")
    parser.add_argument("--threads", type=int, default=2, help="the server's OMP threads")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    args = parser.parse_args()

    sentences = read_sentences(args.src, args.distinct)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    try:
        wait_ready(base, server, args.start_timeout)
        info = httpx.get(f"{base}/model").json()
        layers, heads = info["layers"], info["heads"]
        with httpx.Client(base_url=base, timeout=600) as http:
            http.post("/translate", json={"text": sentences[:1]})  # warm-up
            start = time.perf_counter()
            alone = {
                s: http.post("/translate", json={"text": [s]}).json()["results"][0]["translation"]
                for s in sentences
            }
            sequential = time.perf_counter() - start

        local = threading.local()  # one keep-alive connection per client thread
        clients: list[httpx.Client] = []

        def request(k: int) -> tuple[float, bool, bool]:
            sentence = sentences[k % len(sentences)]
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=base, timeout=600)
                clients.append(local.http)
            begin = time.perf_counter()
            reply = local.http.post("/translate", json={"text": [sentence]})
            latency = time.perf_counter() - begin
            if reply.status_code != 200:
                return latency, False, False
            result = reply.json()["results"][0]
            return (
                latency,
                well_formed(result, layers, heads),
                result["translation"] == alone[sentence],
            )

        before = httpx.get(f"{base}/health").json()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            answers = list(pool.map(request, range(args.requests)))
        wall = time.perf_counter() - start
        for http in clients:
            http.close()
        after = httpx.get(f"{base}/health").json()
    finally:
        server.terminate()
        server.wait(60)

    latencies = sorted(latency for latency, _, _ in answers)
    p50 = statistics.quantiles(latencies, n=100)[49]
    p95 = statistics.quantiles(latencies, n=100)[94]
    ok = sum(good for _, good, _ in answers)
    same = sum(equal for _, _, equal in answers)
    batches = after["batches"] - before["batches"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"model: {info['family']} {info['source_language']}->{info['target_language']}, "
        f"{info['parameters'] / 1e6:.2f}M parameters, step {info['step']}; beam {args.beam}"
    )
    print()
    print(
        "| requests | clients | answered well-formed | same as one-at-a-time | model batches "
        "| p50 latency | p95 latency | sentences/s | one client, sequential |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.requests} | {args.clients} | {ok}/{args.requests} | {same}/{args.requests} "
        f"| {batches} | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | {args.requests / wall:.1f} "
        f"| {len(sentences) / sequential:.1f} sentences/s |"
    )
    if ok != args.requests:
        raise SystemExit(f"{args.requests - ok} requests were not answered correctly")


if __name__ == "__main__":
    main()
