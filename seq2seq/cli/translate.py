"""seq2seq-translate: stdin to stdout (or file to file), one translation per input line."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TextIO

import hydra
import numpy as np
from omegaconf import DictConfig

from seq2seq.alignment import NULL_PIECE, has_null, to_pharaoh, word_links
from seq2seq.cli.common import CONFIG_PATH, report_user_errors, run_command
from seq2seq.config import TranslateAppConfig
from seq2seq.config_checks import check_config, layer_problems, raise_problems
from seq2seq.decoding import Hypothesis
from seq2seq.engines import open_translator, require_native
from seq2seq.errors import UserError
from seq2seq.heatmaps import attention_figure, save_figure
from seq2seq.readout import Readout, resolve_readout
from seq2seq.textio import atomic_output, check_output, check_writable, open_lines

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
        self.translator = open_translator(cfg.checkpoint, cfg.device, cfg.threads)
        self.tokenizer = self.translator.tokenizer
        self.need_weights = bool(cfg.show_alignment or cfg.alignment_dir or cfg.alignment_format)
        self.readout = Readout()  # how the attention is read: the checkpoint's choice
        if self.need_weights:
            native = require_native(
                self.translator, "show_alignment, alignment_dir and alignment_format"
            )
            model_config = native.checkpoint["model_config"]
            raise_problems(layer_problems(cfg.alignment_layer, "alignment_layer", model_config))
            stored = Readout.stored(native.checkpoint)
            self.readout = resolve_readout(stored, cfg.alignment_layer, cfg.alignment_reading)
        self.count = 0
        if cfg.alignment_dir:
            check_writable("alignment_dir", Path(cfg.alignment_dir))

    def translate(self, lines: list[str]) -> list[str]:
        """One output block per input line (an empty line gives an empty line)."""
        sources = self.tokenizer.encode_src([line.strip() for line in lines])
        sources = self.translator.clip(sources)  # so labels match attention
        nbests = self.translator.decode(sources, self.cfg.decode, self.need_weights)
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
        src_pieces = self.tokenizer.src_pieces(src)
        weights, tgt_pieces = self.readout.matrix(
            best.attention.float(), [*self.tokenizer.tgt_pieces(best.tokens), "</s>"]
        )
        matrix = weights.numpy()  # (T, S)
        if self.cfg.alignment_format == "pharaoh":
            links = word_links(matrix, tgt_pieces, src_pieces, self.readout.null_unaligned)
            out += "\t" + to_pharaoh(links)
        if self.cfg.show_alignment:
            out += "\n" + alignment_view(matrix, src_pieces, tgt_pieces, self.readout.null)
        if self.cfg.alignment_dir:
            figure = attention_figure(matrix, src_pieces, tgt_pieces, title=texts[0])
            save_figure(figure, Path(self.cfg.alignment_dir) / f"{index:05d}.png")
        return out


def alignment_view(
    matrix: np.ndarray, src_pieces: list[str], tgt_pieces: list[str], null: str = "unaligned"
) -> str:
    """Each target token beside the source token it attended to most, as two columns.

    The NULL position shows as NULL; ``null`` "dropped" (the readout's) leaves it out, so
    each token shows the real source token it attended to most.
    """
    width = max(len(t) for t in tgt_pieces)
    columns = len(src_pieces) - (null == "dropped" and has_null(src_pieces))
    rows = []
    for t, piece in enumerate(tgt_pieces):
        j = int(matrix[t, :columns].argmax())
        source = "NULL" if src_pieces[j] == NULL_PIECE else src_pieces[j]
        rows.append(f"  {piece:<{width}}  <-  {source}  ({matrix[t, j]:.2f})")
    return "\n".join(rows)


def run(cfg: DictConfig, stdin: TextIO | BinaryIO, stdout: TextIO) -> None:
    """Translate ``cfg.input`` into ``cfg.output``; interactive when stdin is a terminal.

    The input is opened and the output checked before the model loads; a file output is
    replaced only when every line was translated (:func:`~seq2seq.textio.atomic_output`).
    """
    check_config(cfg, TranslateAppConfig)
    to_file = cfg.output != "-"
    if to_file:
        check_output("output", cfg.output, [] if cfg.input == "-" else [cfg.input])
    with open_lines(cfg.input, stdin) as source, ExitStack() as stack:
        translator = LineTranslator(cfg)
        sink = stack.enter_context(atomic_output("output", cfg.output)) if to_file else stdout
        interactive = cfg.input == "-" and source.isatty()
        if interactive:
            print("Type a sentence and press Enter (Ctrl-D to quit).", file=sys.stderr)
            source.prompt = "> "
        for chunk in chunks(source, 1 if interactive else CHUNK_LINES):
            for block in translator.translate(chunk):
                print(block, file=sink, flush=interactive)
        if source.error is not None:
            if to_file:
                raise UserError(f"{source.error} (output={cfg.output} was left unchanged.)")
            raise UserError(
                f"{source.error} (the {source.count} line(s) before it were written to stdout.)"
            )


@hydra.main(config_path=CONFIG_PATH, config_name="translate", version_base="1.3")
@report_user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Translate stdin or ``input`` into stdout or ``output``."""
    run(cfg, sys.stdin.buffer, sys.stdout)


def main() -> None:
    """Entry point of ``seq2seq-translate``."""
    run_command(hydra_main)


if __name__ == "__main__":
    main()
