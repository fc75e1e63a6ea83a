"""Benchmark decoding a test set: greedy and beam search speed and BLEU, and the KV-cache gain.

For every beam size it decodes the whole test set once after a short warm-up and reports
sentences/s, target tokens/s (subwords produced, EOS excluded) and sacrebleu BLEU with its
signature. For a Transformer checkpoint it also runs greedy search without the key/value
cache, re-running the decoder over the whole target prefix at every step as JoeyNMT does
(the encoder still runs once per batch, and only the newest position is projected to the
vocabulary, so the gain is measured against a fair baseline), with the same batches in the
same run, and reports the cache's speed-up. With ``--ctranslate2 none int8`` it exports the
checkpoint to CTranslate2 once per quantization and times the exported engine with the same
beams, batches and threads, with the share of hypotheses identical to the native ones.
Prints one markdown table.

    PYTHONPATH=. python scripts/bench_decode.py CHECKPOINT --data-root /work/shared/data/multi30k \
        --split test_2016_flickr --beams 1 5 --threads 2 --ctranslate2 none int8
    PYTHONPATH=. python scripts/bench_decode.py CHECKPOINT --src test.en --ref test.fr
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor

from seq2seq.config import DataConfig, DecodeConfig
from seq2seq.data.corpora import ParallelCorpus, load_split, read_parallel
from seq2seq.decoding import GREEDY_SYNC_EVERY, Hypothesis, _log_probs, max_lengths
from seq2seq.errors import UserError
from seq2seq.evaluation import corpus_scores
from seq2seq.export.directory import export_checkpoint
from seq2seq.export.engine import CTranslate2Translator
from seq2seq.inference import (
    Translator,
    clip_sources,
    decode_chunked,
    decode_corpus,
    pad_batch,
)
from seq2seq.models.transformer import TransformerMemory, TransformerSeq2Seq
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID

# CTranslate2 weights by --ctranslate2 quantization: none keeps the native float32
WEIGHTS = {"none": "fp32", "int8": "int8", "int8_float32": "int8_float32", "float16": "fp16"}
WARMUP_SENTENCES = 16  # decoded once before timing, to pay one-off costs (allocator, threads)


def decode_prefix(
    model: TransformerSeq2Seq, memory: TransformerMemory, src_mask: Tensor, prefix: Tensor
) -> Tensor:
    """Logits (B, V) after ``prefix`` (B, T), running the decoder over all T positions afresh."""
    positions = torch.arange(prefix.size(1), device=prefix.device)  # (T,)
    x = model._embed(model.tgt_embed, prefix, positions)  # (B, T, D)
    for i, layer in enumerate(model.decoder):
        x, _, _ = layer(
            x, memory.cross_keys[:, i], memory.cross_values[:, i], src_mask, None, False
        )  # (B, T, D); no cache: causal self-attention over the whole prefix
    return model.out_proj(model.dec_norm(x[:, -1]))  # (B, V)


@torch.inference_mode()
def greedy_without_cache(
    model: TransformerSeq2Seq, src: Tensor, src_mask: Tensor, max_len_a: float, max_len_b: int
) -> list[Hypothesis]:
    """Greedy search like :func:`seq2seq.decoding.greedy_search`, but with no decoder cache."""
    batch = src.size(0)
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.max_positions)
    limit = torch.tensor(limits, device=src.device)  # (B,)
    memory = model.encode(src, src_mask)
    prefix = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)  # (B,)
    scores = torch.zeros(batch, device=src.device)  # (B,)
    for t in range(max(limits) + 1):
        logits = decode_prefix(model, memory, src_mask, prefix)  # (B, V)
        best, tokens = _log_probs(logits, limit <= t).max(dim=-1)  # (B,), (B,)
        scores += best.masked_fill(finished, 0.0)
        tokens = tokens.masked_fill(finished, PAD_ID)
        finished |= tokens == EOS_ID
        prefix = torch.cat([prefix, tokens[:, None]], dim=1)  # (B, t + 2)
        if t % GREEDY_SYNC_EVERY == GREEDY_SYNC_EVERY - 1 and bool(finished.all()):
            break
    rows = prefix[:, 1:].tolist()
    return [
        Hypothesis(row[: row.index(EOS_ID)], score, None)
        for row, score in zip(rows, scores.tolist(), strict=True)
    ]


def decode_corpus_without_cache(
    model: TransformerSeq2Seq, sources: list[list[int]], device: torch.device, opts: DecodeConfig
) -> list[list[Hypothesis]]:
    """:func:`seq2seq.inference.decode_corpus` for greedy search, in the same batches, no cache."""

    def decode_batch(batch: list[list[int]]) -> list[list[Hypothesis]]:
        src, src_mask = pad_batch(batch, device)
        hyps = greedy_without_cache(model, src, src_mask, opts.max_len_a, opts.max_len_b)
        return [[hyp] for hyp in hyps]

    return decode_chunked(sources, opts.batch_size, decode_batch)


@dataclass
class Row:
    """One measured decoding run."""

    name: str
    seconds: float
    sentences: int
    tokens: int
    bleu: float
    signature: str
    hypotheses: list[list[int]]
    identical: str = field(default="")  # share of hypotheses equal to the native search's


Decoder = Callable[[list[list[int]], DecodeConfig], list[list[Hypothesis]]]


def measure(
    name: str,
    decode: Decoder,
    translator: Translator,
    corpus: ParallelCorpus,
    sources: list[list[int]],
    opts: DecodeConfig,
    device: torch.device,
    repeats: int,
) -> Row:
    """Decode every sentence ``repeats`` times after a warm-up; keep the fastest; score it."""
    decode(sources[:WARMUP_SENTENCES], opts)
    seconds = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        nbests = decode(sources, opts)
        if device.type == "cuda":
            torch.cuda.synchronize()
        # the fastest run is the one least disturbed by whatever else the machine was doing
        seconds = min(seconds, time.perf_counter() - start)
    tokens = [hyps[0].tokens for hyps in nbests]
    texts = [translator.tokenizer.decode_tgt(t) for t in tokens]
    bleu = corpus_scores(texts, corpus.tgt, ter=False)["bleu"]
    return Row(
        name, seconds, len(sources), sum(map(len, tokens)), bleu.score, bleu.signature, tokens
    )


def ctranslate2_rows(
    args: argparse.Namespace,
    translator: Translator,
    corpus: ParallelCorpus,
    sources: list[list[int]],
    base: DecodeConfig,
    native: list[Row],
) -> list[Row]:
    """The exported engine, once per ``--ctranslate2`` quantization, at every beam size."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ct2-") as work:
        for quantization in args.ctranslate2:
            output = export_checkpoint(args.checkpoint, Path(work) / quantization, quantization)
            engine = CTranslate2Translator(output, "cpu", args.threads)
            for beam, reference in zip(args.beams, native, strict=True):
                search = "greedy" if beam == 1 else f"beam {beam}"
                name = f"CTranslate2 {WEIGHTS[quantization]}, {search}"
                opts = replace(base, beam_size=beam)
                row = measure(
                    name,
                    engine.decode,
                    translator,
                    corpus,
                    sources,
                    opts,
                    torch.device("cpu"),
                    args.repeats,
                )
                same = sum(
                    a == b for a, b in zip(row.hypotheses, reference.hypotheses, strict=True)
                )
                row.identical = f"{100 * same / len(sources):.1f}%"
                rows.append(row)
    return rows


def print_table(rows: list[Row]) -> None:
    """The rows as one markdown table, and the BLEU signature."""
    print("| search | sentences/s | target tokens/s | BLEU | seconds | same as native |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.name} | {r.sentences / r.seconds:.1f} | {r.tokens / r.seconds:.0f} "
            f"| {r.bleu:.2f} | {r.seconds:.2f} | {r.identical} |"
        )
    print()
    print(f"BLEU signature: {rows[0].signature}")


def load_test_set(args: argparse.Namespace, translator: Translator) -> ParallelCorpus:
    """``--src``/``--ref``, else ``--split`` of the dataset the checkpoint was trained on."""
    if args.src or args.ref:
        if not (args.src and args.ref):
            raise UserError("Give both --src and --ref, or neither.")
        return read_parallel(args.src, args.ref)
    trained = OmegaConf.merge(
        OmegaConf.structured(DataConfig), translator.checkpoint["config"]["data"]
    )
    if args.data_root:
        trained.root = args.data_root
    return load_split(trained, args.split)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint file or a run directory (its best.pt)")
    parser.add_argument(
        "--data-root", help="root of the checkpoint's dataset (default: as trained)"
    )
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--src", help="your own source file (with --ref) instead of --split")
    parser.add_argument("--ref", help="reference translations of --src")
    parser.add_argument("--limit", type=int, help="decode only the first N sentences")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--max-len-a", type=float, default=1.5)
    parser.add_argument("--max-len-b", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--ctranslate2",
        nargs="*",
        default=[],
        choices=list(WEIGHTS),
        help="also export to CTranslate2 with these quantizations and time it (on the CPU)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs each; the fastest counts"
    )
    parser.add_argument(
        "--no-cache-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for a Transformer, also time greedy search without the KV cache",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.beams) < 1:
        parser.error("--repeats and --beams need values of at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a markdown table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        translator = Translator.from_checkpoint(args.checkpoint, device)
        corpus = load_test_set(args, translator)
    except UserError as err:
        sys.exit(f"error: {err}")
    if args.limit:
        corpus = ParallelCorpus(corpus.src[: args.limit], corpus.tgt[: args.limit])
    model = translator.model
    sources = clip_sources(translator.model, translator.tokenizer.encode_src(corpus.src))
    base = DecodeConfig(
        length_penalty=args.length_penalty,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        batch_size=args.batch_size,
    )

    def cached(srcs: list[list[int]], opts: DecodeConfig) -> list[list[Hypothesis]]:
        return decode_corpus(model, srcs, device, opts)

    def timed(name: str, decode: Decoder, beam: int) -> Row:
        opts = replace(base, beam_size=beam)
        return measure(name, decode, translator, corpus, sources, opts, device, args.repeats)

    is_transformer = isinstance(model, TransformerSeq2Seq)
    greedy_name = "greedy (KV cache)" if is_transformer else "greedy"
    rows = [timed(greedy_name if b == 1 else f"beam {b}", cached, b) for b in args.beams]
    exported = ctranslate2_rows(args, translator, corpus, sources, base, rows)
    speedup = None
    if args.no_cache_baseline and is_transformer:

        def uncached(srcs: list[list[int]], opts: DecodeConfig) -> list[list[Hypothesis]]:
            return decode_corpus_without_cache(model, srcs, device, opts)

        with_cache = next((r for r in rows if r.name == greedy_name), None)
        if with_cache is None:
            with_cache = timed(greedy_name, cached, 1)
            rows.insert(0, with_cache)
        naive = timed("greedy, no cache (full prefix each step)", uncached, 1)
        rows.append(naive)
        speedup = (naive.seconds / with_cache.seconds, naive.hypotheses == with_cache.hypotheses)

    family = type(model).__name__
    params = sum(p.numel() for p in model.parameters())
    print(f"checkpoint: {args.checkpoint} ({family}, {params / 1e6:.2f}M parameters)")
    print(
        f"test set: {args.src or args.split}, {len(sources)} sentences; device {device}, "
        f"{torch.get_num_threads()} threads; batch {args.batch_size} sentences; "
        f"length penalty {args.length_penalty}; fastest of {args.repeats} runs; "
        f"torch {torch.__version__}; "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print_table(rows + exported)
    if speedup is not None:
        ratio, same = speedup
        print(
            f"KV cache speed-up over re-running the prefix (greedy): {ratio:.2f}x; "
            f"identical outputs: {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()
