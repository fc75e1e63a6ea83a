"""Translation with an exported directory, through ``ctranslate2.Translator``.

It answers the same two calls as the native :class:`~seq2seq.inference.Translator`
(``clip`` and ``decode``) and follows the native search's conventions where CTranslate2
lets it:

- a sentence of S source tokens gets at most floor(a * S + b) target tokens; CTranslate2
  takes one cap per call, so a batch decodes up to its longest cap and each hypothesis is
  then held to its own (greedy search is prefix-consistent, so its cut is exact);
- PAD and BOS are never produced (``suppress_sequences``);
- beam search ranks finished hypotheses by the GNMT penalty score / ((5 + |Y|) / 6) ** alpha
  with |Y| counting EOS: CTranslate2's own penalty divides by |Y| ** alpha without EOS, so
  it searches with no penalty, returns its ``beam_size`` finished hypotheses with their raw
  log-probabilities, and they are ranked here.

What still differs: CTranslate2 sets aside a hypothesis ending in EOS only when it is among
the best ``beam_size`` candidates of a step (the native search: among the best 2k), and
stops once ``beam_size`` hypotheses have finished rather than when no live beam can win.
Attention weights are not returned: alignments need the native checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding import Hypothesis, gnmt_penalty, max_lengths
from seq2seq.errors import UserError
from seq2seq.export.directory import read_manifest, require_ctranslate2
from seq2seq.inference import clip_sources, decode_chunked, pad_batch
from seq2seq.special_tokens import BOS_ID, PAD_ID

ENGINE = "ctranslate2"


def ctranslate2_device(setting: str, cuda_devices: int) -> str:
    """``device=auto|cpu|cuda`` as a CTranslate2 device, with CTranslate2's view of CUDA."""
    if setting == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    if setting == "cuda" and cuda_devices == 0:
        raise UserError("device=cuda, but CTranslate2 sees no CUDA device; use device=cpu.")
    return setting


class CTranslate2Translator:
    """An exported model ready to decode, with the tokenizer it was trained with."""

    engine = ENGINE

    def __init__(self, directory: Path, device: str, threads: int | None) -> None:
        ctranslate2 = require_ctranslate2()
        self.directory = Path(directory).expanduser()
        self.checkpoint: dict[str, Any] = read_manifest(self.directory)  # model and data config
        self.tokenizer = Tokenizer.load(self.directory)
        self.max_positions: int = self.checkpoint["model_config"]["max_positions"]
        pieces = self.tokenizer.tgt_pieces(range(self.tokenizer.tgt_vocab_size))
        self._ids = {piece: i for i, piece in enumerate(pieces)}
        self._suppress = [[pieces[PAD_ID]], [pieces[BOS_ID]]]
        self.device = ctranslate2_device(device, ctranslate2.get_cuda_device_count())
        try:
            self._model = ctranslate2.Translator(
                str(self.directory), device=self.device, intra_threads=threads or 0
            )
        except (RuntimeError, ValueError) as err:
            raise UserError(
                f"CTranslate2 cannot load {self.directory} ({err}); export it again."
            ) from None

    def clip(self, sources: list[list[int]]) -> list[list[int]]:
        """``sources`` cut to the model's ``max_positions`` (see ``clip_sources``)."""
        return clip_sources(self, sources)

    def decode(
        self, sources: list[list[int]], opts: DecodeConfig, need_weights: bool = False
    ) -> list[list[Hypothesis]]:
        """N-best hypotheses for every source (token ids, no BOS/EOS), in input order."""
        if need_weights:
            raise UserError(
                "alignments (attention weights) are unavailable for the ctranslate2 engine; "
                "give the native checkpoint (.pt) instead of the exported directory."
            )
        return decode_chunked(
            self.clip(sources), opts.batch_size, lambda batch: self._decode_batch(batch, opts)
        )

    def _decode_batch(self, sources: list[list[int]], opts: DecodeConfig) -> list[list[Hypothesis]]:
        """One ``translate_batch`` call; each sentence's hypotheses held to its own cap."""
        _, src_mask = pad_batch(sources, torch.device("cpu"))
        limits = max_lengths(src_mask, opts.max_len_a, opts.max_len_b, self.max_positions)
        beam = max(opts.beam_size, opts.nbest)
        outputs = self._model.translate_batch(
            [self.tokenizer.src_pieces(s) for s in sources],
            beam_size=beam,
            num_hypotheses=beam,
            length_penalty=0.0,  # ranked below with the native (GNMT) penalty
            max_decoding_length=max(1, max(limits)),
            max_input_length=0,  # already clipped to max_positions
            return_scores=True,
            suppress_sequences=self._suppress,
        )
        return [
            self._ranked(out.hypotheses, out.scores, limit, opts)
            for out, limit in zip(outputs, limits, strict=True)
        ]

    def _ranked(
        self, hypotheses: list[list[str]], scores: list[float], limit: int, opts: DecodeConfig
    ) -> list[Hypothesis]:
        """The ``nbest`` best of one sentence's finished hypotheses, best first."""
        found = [([self._ids[p] for p in h], s) for h, s in zip(hypotheses, scores, strict=True)]
        within = [(ids, s) for ids, s in found if len(ids) <= limit]
        if not within:  # every hypothesis ran past this sentence's cap: keep the best, cut
            within = [(found[0][0][:limit], found[0][1])]
        if opts.beam_size > 1 or opts.nbest > 1:
            alpha = opts.length_penalty
            within.sort(key=lambda c: -c[1] / gnmt_penalty(len(c[0]) + 1, alpha))
        return [Hypothesis(ids, s, None) for ids, s in within[: opts.nbest]]
