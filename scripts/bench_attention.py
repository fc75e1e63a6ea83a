"""Benchmark softmax vs efficient (linear) self-attention: forward + backward time and peak memory.

Each (method, length) runs in its own subprocess, so peak memory is an honest process-level
number: on CPU the growth of ``ru_maxrss`` over a baseline taken after the inputs exist, on
CUDA ``torch.cuda.max_memory_allocated`` over the allocated baseline. Prints one markdown table.

    PYTHONPATH=. python scripts/bench_attention.py --lengths 128 512 2048 8192
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.attention.efficient import causal_efficient_attention, efficient_attention


def _math(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(Q Kᵀ / √d) V with the (T, T) weights materialised."""
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(dim=-1)  # (B, H, T, T)
    return weights @ v


METHODS: dict[str, tuple[Callable[[Tensor, Tensor, Tensor], Tensor], str]] = {
    # name -> (function, the efficient method it is compared with)
    "softmax-math": (_math, "efficient"),
    "softmax-sdpa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), "efficient"),
    "efficient": (lambda q, k, v: efficient_attention(q, k, v, None), "efficient"),
    "softmax-sdpa-causal": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "efficient-causal",
    ),
    "efficient-causal": (causal_efficient_attention, "efficient-causal"),
}


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, length: int, args: argparse.Namespace) -> dict[str, float]:
    """Time forward + backward of one method at one length; peak memory of the first pass."""
    device = torch.device(args.device)
    fn = METHODS[method][0]
    torch.manual_seed(0)

    def inputs(t: int) -> tuple[Tensor, ...]:
        shape = (args.batch, args.heads, t, args.head_dim)
        q, k, v = (torch.randn(shape, device=device, requires_grad=True) for _ in range(3))
        return q, k, v, torch.randn(shape, device=device)  # the last one is the output gradient

    def step(q: Tensor, k: Tensor, v: Tensor, grad_out: Tensor) -> None:
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(grad_out)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # a tiny warm-up pays one-off costs (kernel loading, thread pools) outside the measurement
    step(*inputs(16))
    tensors = inputs(length)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        step(*tensors)
        peak_mib = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    else:
        baseline = _peak_rss_mib()
        step(*tensors)
        peak_mib = _peak_rss_mib() - baseline
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step(*tensors)
        times.append((time.perf_counter() - start) * 1000)
    return {"ms": statistics.median(times), "mib": peak_mib}


def _spawn(method: str, length: int, args: argparse.Namespace) -> dict[str, float] | str:
    """Run one configuration in a fresh interpreter; its result, or why it failed."""
    command = [sys.executable, __file__, "--worker", method, str(length)] + [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("batch", "heads", "head_dim", "repeats", "device", "threads")
        if getattr(args, name) is not None
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {args.timeout:.0f} s"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"exit {done.returncode}: {lines[-1] if lines else 'killed'}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(x: float, ref: float, floor: float) -> str:
    return f"{x / ref:.3g}×" if ref >= floor else "n/a"  # a ratio to a near-zero is noise


def main() -> None:
    """Run every (length, method) in a subprocess and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per configuration")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_one(args.worker[0], int(args.worker[1]), args)))
        return

    print(
        f"batch={args.batch} heads={args.heads} head_dim={args.head_dim} device={args.device} "
        f"threads={torch.get_num_threads()} repeats={args.repeats} (median) "
        f"torch={torch.__version__}"
    )
    print()
    print("| T | method | fwd+bwd ms | peak MiB | time ÷ efficient | memory ÷ efficient |")
    print("|---:|---|---:|---:|---:|---:|")
    for length in args.lengths:
        results = {m: _spawn(m, length, args) for m in args.methods}
        for method, result in results.items():
            if isinstance(result, str):
                print(f"| {length} | {method} | {result} | | | |")
                continue
            ref = results.get(METHODS[method][1])
            ratios = "| | |"
            if isinstance(ref, dict) and method != METHODS[method][1]:
                time_ratio = _ratio(result["ms"], ref["ms"], floor=0.0)
                ratios = f"| {time_ratio} | {_ratio(result['mib'], ref['mib'], floor=1.0)} |"
            print(f"| {length} | {method} | {result['ms']:.1f} | {result['mib']:.1f} {ratios}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
