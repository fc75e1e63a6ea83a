"""seq2seq-translate: stdin to stdout (or file to file), one translation per input line."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import TextIO

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from seq2seq.alignment import hard_alignment, strip_specials, subword_to_word, to_pharaoh
from seq2seq.cli.common import CONFIG_PATH, report_user_errors
from seq2seq.decoding import Hypothesis
from seq2seq.errors import UserError
from seq2seq.heatmaps import attention_figure, save_figure
from seq2seq.inference import DecodeOptions, Translator, clip_sources, decode_corpus
from seq2seq.training.distributed import resolve_device

CHUNK_LINES = 256  # lines decoded together when reading a file or a pipe


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive groups of ``size`` lines."""
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


class LineTranslator:
    """Translates groups of lines and formats each result for output."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.translator = Translator.from_checkpoint(cfg.checkpoint, self.device)
        self.tokenizer = self.translator.tokenizer
        wants_attention = cfg.show_alignment or cfg.alignment_dir or cfg.alignment_format
        if cfg.alignment_format not in (None, "pharaoh"):
            raise UserError(
                f"alignment_format={cfg.alignment_format!r}: use pharaoh or leave it unset."
            )
        self.opts = DecodeOptions(
            **OmegaConf.to_container(cfg.decode),  # type: ignore[arg-type]
            need_weights=bool(wants_attention),
        )
        self.count = 0
        if cfg.alignment_dir:
            Path(cfg.alignment_dir).mkdir(parents=True, exist_ok=True)

    def translate(self, lines: list[str]) -> list[str]:
        """One output block per input line (an empty line gives an empty line)."""
        sources = self.tokenizer.encode_src([line.strip() for line in lines])
        sources = clip_sources(self.translator.model, sources)  # so labels match attention
        nbests = decode_corpus(self.translator.model, sources, self.device, self.opts)
        return [self._format(src, hyps) for src, hyps in zip(sources, nbests, strict=True)]

    def _format(self, src: list[int], hyps: list[Hypothesis]) -> str:
        index = self.count
        self.count += 1
        texts = [self.tokenizer.decode_tgt(h.tokens) for h in hyps]
        if self.cfg.decode.nbest > 1:
            pairs = zip(hyps, texts, strict=True)
            out = "\n".join(f"{index}\t{h.score:.4f}\t{t}" for h, t in pairs)
        else:
            out = texts[0]
        best = hyps[0]
        if best.attention is None or not src:
            return out
        matrix = best.attention[self.cfg.heatmap_layer].float().mean(0).numpy()  # (T, S)
        src_pieces = self.tokenizer.src_pieces(src)
        tgt_pieces = [*self.tokenizer.tgt_pieces(best.tokens), "</s>"]
        if self.cfg.alignment_format == "pharaoh":
            words = subword_to_word(*strip_specials(matrix, tgt_pieces, src_pieces))
            out += "\t" + to_pharaoh(hard_alignment(words))
        if self.cfg.show_alignment:
            out += "\n" + alignment_view(matrix, src_pieces, tgt_pieces)
        if self.cfg.alignment_dir:
            figure = attention_figure(matrix, src_pieces, tgt_pieces, title=texts[0])
            save_figure(figure, Path(self.cfg.alignment_dir) / f"{index:05d}.png")
        return out


def alignment_view(matrix: np.ndarray, src_pieces: list[str], tgt_pieces: list[str]) -> str:
    """Each target token beside the source token it attended to most, as two columns."""
    width = max(len(t) for t in tgt_pieces)
    rows = []
    for t, piece in enumerate(tgt_pieces):
        j = int(matrix[t].argmax())
        rows.append(f"  {piece:<{width}}  <-  {src_pieces[j]}  ({matrix[t, j]:.2f})")
    return "\n".join(rows)


def run(cfg: DictConfig, stdin: TextIO, stdout: TextIO) -> None:
    """Translate ``cfg.input`` into ``cfg.output``; interactive when stdin is a terminal."""
    translator = LineTranslator(cfg)
    with ExitStack() as stack:
        source = stdin if cfg.input == "-" else stack.enter_context(open_input(cfg.input))
        sink = (
            stdout
            if cfg.output == "-"
            else stack.enter_context(
                open(cfg.output, "w", encoding="utf-8")  # noqa: SIM115 - closed by the ExitStack
            )
        )
        interactive = cfg.input == "-" and source.isatty()
        if interactive:
            print("Type a sentence and press Enter (Ctrl-D to quit).", file=sys.stderr)
        size = 1 if interactive else CHUNK_LINES
        for chunk in chunks(prompted(source) if interactive else source, size):
            for block in translator.translate([line.rstrip("\r\n") for line in chunk]):
                print(block, file=sink, flush=interactive)


def prompted(source: TextIO) -> Iterator[str]:
    """Lines from a terminal, with a prompt on stderr before each."""
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = source.readline()
        if not line:
            return
        yield line


def open_input(path: str) -> TextIO:
    """Open the input file with a clear error when it is missing."""
    if not Path(path).is_file():
        raise UserError(f"input={path} does not exist; give a text file, or input=- for stdin.")
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


@hydra.main(config_path=CONFIG_PATH, config_name="translate", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    """Entry point of ``seq2seq-translate``."""
    run(cfg, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
