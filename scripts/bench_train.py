"""Benchmark training speed: tokens/s, peak memory and model FLOP utilisation (MFU).

Composes the training config as ``seq2seq-train`` would (``--overrides``), builds one list
of batches — from the configured corpus (``--data real``) or generated at random with
Multi30k-like lengths (``--data generated``) — and times ``--steps`` training steps after
``--warmup`` steps: forward, label-smoothed loss, backward, gradient clipping, Adam step.
For a Transformer config it also times a plain ``torch.nn.Transformer`` of the same size
(d_model, heads, layers, ff, vocabulary, with embeddings and output projection, tied the
same way) on the same batches, as a reference row: in the same precision, and also in plain
fp32 when ``--precision bf16`` (the reference the issue's targets name is plain fp32 eager).
``--compile`` times the seq2seq model under ``torch.compile`` (the reference stays eager).
Each row runs in a fresh process, so its peak RSS is its own. The matmul peak is measured in
this run, per precision: the best of several large matrix products in that dtype; each
row's MFU is against the peak of its own precision.

FLOPs per training step (Transformer, softmax attention; counted on real tokens, so
padding counts as waste; multiply-add = 2 FLOPs; backward = 2 x forward):

    forward = 2 * [ L_enc * (4 d^2 + 2 d ff) * S + L_dec * ((6 d^2 + 2 d ff) * T + 2 d^2 * S)
                    + d V * T ]                                      (weight matmuls)
            + 4 d * [ L_enc * sum_i S_i^2 + L_dec * sum_i (T_i^2 + S_i T_i) ]   (QK^T and AV)
    train   = 3 * forward

S / T: source / target tokens of the step; S_i / T_i: per sentence. Decoder layers:
self-attention q,k,v,o (4 d^2) and cross-attention q,o (2 d^2) on target tokens,
cross-attention k,v (2 d^2) on source tokens. Causal self-attention is counted in full,
as usual. Embedding lookups, norms, softmax and the optimizer are not counted.

    PYTHONPATH=. python scripts/bench_train.py --overrides model=transformer \
        data.root=/work/shared/data/multi30k --data real --steps 30 --threads 2
    PYTHONPATH=. python scripts/bench_train.py --overrides model=transformer --data generated \
        --vocab 8000 --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing as mp
import platform
import random
import resource
import time
from dataclasses import dataclass
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from seq2seq.config import register_configs
from seq2seq.data.batching import Batch, collate
from seq2seq.data.pipeline import prepare_data
from seq2seq.data.sampler import MemoryShard, TokenBatchSampler
from seq2seq.models.build import build_model
from seq2seq.special_tokens import EOS_ID, PAD_ID
from seq2seq.training.loss import label_smoothed_loss

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
log = logging.getLogger("bench_train")


@dataclass
class Row:
    """One timed model."""

    name: str
    precision: str
    params: int
    steps: int
    seconds: float
    tgt_tokens: int
    src_tokens: int
    flops: float  # per timed run, by the formula in the module docstring
    peak_rss_mib: float
    peak_cuda_mib: float | None


def compose_train(overrides: list[str]) -> DictConfig:
    """The training config ``seq2seq-train <overrides>`` would run."""
    register_configs()
    with initialize_config_module(config_module="seq2seq.configs", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def real_batches(cfg: DictConfig, count: int, seed: int) -> tuple[list[Batch], int, int]:
    """The first ``count`` training batches of the configured corpus, and the vocab sizes."""
    data = prepare_data(cfg.data, log)
    train = data.train
    sampler = TokenBatchSampler(
        train.shards, batch_tokens=cfg.data.batch_tokens, shuffle=True, seed=seed
    )
    order = list(sampler)[:count]
    batches = [collate([train[i] for i in b]) for b in order]
    return batches, data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size


def generated_batches(cfg: DictConfig, count: int, vocab: int, seed: int) -> list[Batch]:
    """Random token batches with Multi30k-like lengths (about 15 subwords a side)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(4000):
        src_len = max(3, round(rng.gauss(16, 5)))
        tgt_len = max(3, round(src_len * rng.uniform(0.9, 1.3)))
        pairs.append(
            (
                i,
                [rng.randrange(EOS_ID + 1, vocab) for _ in range(src_len)],
                [rng.randrange(EOS_ID + 1, vocab) for _ in range(tgt_len)],
            )
        )
    lengths = MemoryShard.of([len(s) for _, s, _ in pairs], [len(t) for _, _, t in pairs])
    sampler = TokenBatchSampler(
        [lengths],
        batch_tokens=cfg.data.batch_tokens,
        shuffle=True,
        seed=seed,
    )
    return [collate([pairs[i] for i in b]) for b in list(sampler)[:count]]


class ReferenceTransformer(nn.Module):
    """``torch.nn.Transformer`` with embeddings, sinusoidal positions and output projection."""

    def __init__(
        self, model_cfg: dict[str, Any], src_vocab: int, tgt_vocab: int, joint_vocab: bool
    ) -> None:
        super().__init__()
        d = model_cfg["d_model"]
        self.scale = math.sqrt(d)
        self.src_embed = nn.Embedding(src_vocab, d, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, d, padding_idx=PAD_ID)
        self.transformer = nn.Transformer(
            d_model=d,
            nhead=model_cfg["heads"],
            num_encoder_layers=model_cfg["enc_layers"],
            num_decoder_layers=model_cfg["dec_layers"],
            dim_feedforward=model_cfg["ff_dim"],
            dropout=model_cfg["dropout"],
            batch_first=True,
            norm_first=model_cfg["norm_first"],
        )
        self.out_proj = nn.Linear(d, tgt_vocab, bias=False)
        if model_cfg["tie_embeddings"]:
            self.out_proj.weight = self.tgt_embed.weight
            if joint_vocab:
                self.src_embed.weight = self.tgt_embed.weight
        position = torch.arange(1024)[:, None]  # (P, 1)
        freq = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))  # (d/2,)
        table = torch.zeros(1024, d)  # (P, d)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
        self.register_buffer("pos", table, persistent=False)

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> tuple[Tensor, None]:
        """Logits (B, T, V), like the seq2seq models' teacher-forcing forward."""
        x = self.src_embed(src) * self.scale + self.pos[: src.size(1)]  # (B, S, D)
        y = self.tgt_embed(tgt_in) * self.scale + self.pos[: tgt_in.size(1)]  # (B, T, D)
        length = tgt_in.size(1)
        # bool like the padding masks (True = masked), which keeps PyTorch's fast path
        causal = torch.ones(length, length, dtype=torch.bool, device=tgt_in.device).triu(1)
        pad = ~src_mask  # (B, S), True on padding
        out = self.transformer(
            x,
            y,
            tgt_mask=causal,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
            tgt_key_padding_mask=tgt_in == PAD_ID,
            tgt_is_causal=True,
        )  # (B, T, D)
        return self.out_proj(out), None


def transformer_flops(model_cfg: dict[str, Any], vocab: int, batches: list[Batch]) -> float:
    """Training FLOPs over ``batches`` by the formula in the module docstring."""
    d, ff = model_cfg["d_model"], model_cfg["ff_dim"]
    le, ld = model_cfg["enc_layers"], model_cfg["dec_layers"]
    total = 0.0
    for b in batches:
        s_i = b.src_mask.sum(1).double()  # (B,)
        t_i = (b.tgt_out != PAD_ID).sum(1).double()  # (B,)
        s, t = s_i.sum().item(), t_i.sum().item()
        weights = 2 * (
            le * (4 * d * d + 2 * d * ff) * s
            + ld * ((6 * d * d + 2 * d * ff) * t + 2 * d * d * s)
            + d * vocab * t
        )
        attention = 4 * d * (le * (s_i**2).sum() + ld * (t_i**2 + s_i * t_i).sum()).item()
        total += 3 * (weights + attention)
    return total


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Best FLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = math.inf
    for _ in range(repeats + 1):  # the first product only warms up
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_row(job: dict[str, Any]) -> Row:
    """Build the row's model and time its training steps (runs in a fresh process)."""
    torch.manual_seed(0)
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    model_cfg, batches = job["model_cfg"], job["batches"]
    if job["reference"]:
        model: nn.Module = ReferenceTransformer(
            model_cfg, job["src_vocab"], job["tgt_vocab"], job["joint_vocab"]
        )
    else:
        model = build_model(
            model_cfg, job["src_vocab"], job["tgt_vocab"], joint_vocab=job["joint_vocab"]
        )
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    network = torch.compile(model) if job["compile"] else model
    dtype = DTYPES[job["precision"]]
    autocast = (
        torch.autocast(device.type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    batches = [b.to(device) for b in batches]
    warmup = job["warmup"]

    def step(batch: Batch) -> None:
        with autocast:
            logits, _ = network(batch.src, batch.src_mask, batch.tgt_in)
            loss = label_smoothed_loss(logits, batch.tgt_out, job["label_smoothing"])
        (loss / batch.num_tgt_tokens).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed = batches[warmup:]
    synchronize(device)
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    synchronize(device)
    seconds = time.perf_counter() - start
    is_transformer = model_cfg["family"] == "transformer"
    return Row(
        name=job["name"],
        precision=job["precision"],
        params=sum(p.numel() for p in model.parameters()),
        steps=len(timed),
        seconds=seconds,
        tgt_tokens=sum(b.num_tgt_tokens for b in timed),
        src_tokens=sum(int(b.src_mask.sum()) for b in timed),
        flops=transformer_flops(model_cfg, job["tgt_vocab"], timed) if is_transformer else 0.0,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_cuda_mib=torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
    )


def in_fresh_process(job: dict[str, Any]) -> Row:
    """:func:`time_row` in a spawned process, so peak RSS belongs to that row alone."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(time_row, (job,))


def markdown(rows: list[Row], peaks: dict[str, float]) -> str:
    """One table: speed, memory and MFU of every row."""
    lines = [
        "| model | precision | params | tgt tok/s | src+tgt tok/s | ms/step | GFLOP/s | MFU | "
        "peak RSS MiB | peak CUDA MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        achieved = r.flops / r.seconds
        mfu = f"{100 * achieved / peaks[r.precision]:.1f}%" if r.flops else "n/a"
        gflops = f"{achieved / 1e9:.1f}" if r.flops else "n/a"
        cuda = f"{r.peak_cuda_mib:.0f}" if r.peak_cuda_mib is not None else "-"
        lines.append(
            f"| {r.name} | {r.precision} | {r.params / 1e6:.2f}M | "
            f"{r.tgt_tokens / r.seconds:,.0f} | "
            f"{(r.tgt_tokens + r.src_tokens) / r.seconds:,.0f} | "
            f"{1000 * r.seconds / r.steps:.1f} | {gflops} | {mfu} | {r.peak_rss_mib:.0f} | {cuda} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, build the batches, time each row and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overrides", nargs="*", default=[], help="seq2seq-train overrides")
    parser.add_argument("--data", choices=["real", "generated"], default="generated")
    parser.add_argument("--vocab", type=int, default=8000, help="--data generated: vocabulary")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="default: the config's train.device")
    parser.add_argument(
        "--precision",
        choices=sorted(DTYPES),
        default=None,
        help="default: the config's train.precision (fp32 or bf16)",
    )
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--no-reference", action="store_true", help="skip nn.Transformer")
    parser.add_argument("--compile", action="store_true", help="torch.compile the seq2seq model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = compose_train(args.overrides)
    device_name = args.device or cfg.train.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    precision = args.precision or cfg.train.precision
    if precision not in DTYPES:
        raise SystemExit(f"--precision {precision}: this benchmark times fp32 or bf16")
    if args.threads:
        torch.set_num_threads(args.threads)
    count = args.warmup + args.steps
    if args.data == "real":
        batches, src_vocab, tgt_vocab = real_batches(cfg, count, args.seed)
    else:
        batches = generated_batches(cfg, count, args.vocab, args.seed)
        src_vocab = tgt_vocab = args.vocab
    if len(batches) < count:
        raise SystemExit(f"only {len(batches)} batches; lower --steps/--warmup")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_cfg, dict)
    peaks = {p: matmul_peak(device, DTYPES[p], args.matmul_size) for p in {"fp32", precision}}

    job = dict(
        model_cfg=model_cfg,
        batches=batches,
        src_vocab=src_vocab,
        tgt_vocab=tgt_vocab,
        joint_vocab=args.data != "real" or cfg.data.tokenizer.joint,  # generated: one vocabulary
        device=device_name,
        precision=precision,
        threads=args.threads,
        warmup=args.warmup,
        label_smoothing=cfg.train.label_smoothing,
        compile=False,
    )
    name = f"seq2seq {model_cfg['family']}" + (" (compiled)" if args.compile else "")
    rows = [in_fresh_process({**job, "name": name, "reference": False, "compile": args.compile})]
    if model_cfg["family"] == "transformer" and not args.no_reference:
        for ref_precision in dict.fromkeys([precision, "fp32"]):
            reference = {**job, "precision": ref_precision, "reference": True}
            rows.append(in_fresh_process({**reference, "name": "torch.nn.Transformer"}))

    tokens = sum(b.num_tgt_tokens for b in batches[args.warmup :])
    print(
        f"\n{platform.processor() or platform.machine()}, {device_name}, "
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, "
        f"{precision}; {args.data} batches: {args.steps} timed after {args.warmup} warm-up, "
        f"{tokens / args.steps:.0f} target tokens/step (data.batch_tokens="
        f"{cfg.data.batch_tokens}); vocab {tgt_vocab}; matmul peak "
        + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in sorted(peaks.items()))
        + f" ({args.matmul_size}^3)\n"
    )
    print(markdown(rows, peaks))
    ours = rows[0].tgt_tokens / rows[0].seconds
    for ref in rows[1:]:
        speed = ours / (ref.tgt_tokens / ref.seconds)
        label = f"{rows[0].name} ({precision}) / torch.nn.Transformer ({ref.precision})"
        print(f"\n{label}: {speed:.2f}x tokens/s")


if __name__ == "__main__":
    main()
