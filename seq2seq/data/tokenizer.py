"""SentencePiece subwords: trained once on the training text, cached, stored in checkpoints.

One joint model for both languages (which allows tied embeddings) or one per side. The
special ids are fixed for every model: pad=0, unk=1, bos=2, eos=3.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from seq2seq.errors import UserError
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe")
JOINT_FILE, SRC_FILE, TGT_FILE = "sentencepiece.model", "src.model", "tgt.model"
NULL_FILE = "null_position"  # marker: the sources end in EOS (see Tokenizer)
SPECIALS = frozenset({PAD_ID, BOS_ID, EOS_ID})  # dropped when decoding; unk shows as ⁇


class Tokenizer:
    """Source and target SentencePiece processors (the same one when ``joint``)."""

    def __init__(
        self, src_model: bytes, tgt_model: bytes | None, null_position: bool = False
    ) -> None:
        """Build from serialized model protos; ``tgt_model=None`` means one joint model.

        ``null_position``: every source ends in EOS, the NULL position that attention may
        pick for a target word with no source counterpart (the statistical aligners' NULL
        word); alignment reads attention to it as "unaligned".
        """
        self._src_model, self._tgt_model = src_model, tgt_model
        self.null_position = null_position
        self._src = _processor(src_model)
        self._tgt = self._src if tgt_model is None else _processor(tgt_model)

    # ----------------------------------------------------------------- construction

    @classmethod
    def train_or_load(
        cls, cfg: Any, src_texts: Sequence[str], tgt_texts: Sequence[str], cache_dir: Path
    ) -> Tokenizer:
        """Train on the given (training) texts, or reuse the model cached for the same inputs."""
        if cfg.model_type not in MODEL_TYPES:
            raise UserError(
                f"data.tokenizer.model_type={cfg.model_type!r}; "
                f"use one of {', '.join(MODEL_TYPES)}."
            )
        directory = Path(cache_dir).expanduser() / cache_key(cfg, src_texts, tgt_texts)
        if (directory / (JOINT_FILE if cfg.joint else SRC_FILE)).is_file():
            try:
                cached = cls.load(directory)
            except (UserError, OSError) as err:  # damaged on disk: train again, as if absent
                log.warning(
                    "the cached SentencePiece model in %s is damaged (%s); rebuilding it",
                    directory,
                    err,
                )
                shutil.rmtree(directory, ignore_errors=True)
            else:
                log.info("reusing the SentencePiece model(s) in %s", directory)
                cached.null_position = cfg.null_position
                return cached
        log.info(
            "training a %s SentencePiece %s model, vocab_size %d, on %d + %d sentences",
            "joint" if cfg.joint else "separate",
            cfg.model_type,
            cfg.vocab_size,
            len(src_texts),
            len(tgt_texts),
        )
        if cfg.joint:
            models = (_train([*src_texts, *tgt_texts], cfg, "joint"), None)
        else:
            models = (_train(src_texts, cfg, "source"), _train(tgt_texts, cfg, "target"))
        tokenizer = cls(*models, null_position=cfg.null_position)
        # Write to a temporary directory and rename it, so a crash or a concurrent run
        # never leaves a half-written cache entry behind.
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        tokenizer.save(staging)
        try:
            os.rename(staging, directory)
        except OSError:  # another process cached the same model first
            shutil.rmtree(staging, ignore_errors=True)
        return tokenizer

    @classmethod
    def load(cls, directory: Path) -> Tokenizer:
        """Read the model file(s) written by :meth:`save`."""
        directory = Path(directory)
        null = (directory / NULL_FILE).is_file()
        if (directory / JOINT_FILE).is_file():
            return cls((directory / JOINT_FILE).read_bytes(), None, null)
        if (directory / SRC_FILE).is_file() and (directory / TGT_FILE).is_file():
            src, tgt = (directory / SRC_FILE).read_bytes(), (directory / TGT_FILE).read_bytes()
            return cls(src, tgt, null)
        raise UserError(
            f"No SentencePiece model in {directory}: expected {JOINT_FILE}, or {SRC_FILE} "
            f"and {TGT_FILE}."
        )

    def save(self, directory: Path) -> list[Path]:
        """Write the ``.model`` file(s) into ``directory`` (e.g. next to a checkpoint).

        With a NULL position an empty ``null_position`` marker file says so.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._tgt_model is None:
            files = {JOINT_FILE: self._src_model}
        else:
            files = {SRC_FILE: self._src_model, TGT_FILE: self._tgt_model}
        if self.null_position:
            files[NULL_FILE] = b""
        for name, data in files.items():
            (directory / name).write_bytes(data)
        return [directory / name for name in files]

    def to_state(self) -> dict[str, Any]:
        """Plain builtins for a self-contained checkpoint."""
        return {
            "joint": self.joint,
            "src_model": self._src_model,
            "tgt_model": self._tgt_model,
            "null_position": self.null_position,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        """Inverse of :meth:`to_state`; a checkpoint from before the NULL position has none."""
        try:
            src_model, tgt_model = state["src_model"], state["tgt_model"]
            null_position = bool(state.get("null_position", False))
        except (KeyError, TypeError):
            raise UserError(
                "The checkpoint's tokenizer entry is malformed (no SentencePiece model); "
                "use a checkpoint written by seq2seq-train."
            ) from None
        return cls(src_model, tgt_model, null_position)

    # ----------------------------------------------------------------- encoding

    @property
    def joint(self) -> bool:
        """Whether source and target share one model (and one vocabulary)."""
        return self._tgt_model is None

    @property
    def src_vocab_size(self) -> int:
        """Number of source ids, specials included."""
        return self._src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        """Number of target ids, specials included."""
        return self._tgt.get_piece_size()

    def encode_src(self, texts: Sequence[str]) -> list[list[int]]:
        """Source sentences to ids, without BOS; with a NULL position, EOS ends each one
        that has a token (an empty source stays empty: it translates to an empty line)."""
        encoded = self._src.encode(list(texts), out_type=int)
        if not self.null_position:
            return encoded
        return [[*ids, EOS_ID] if ids else ids for ids in encoded]

    def encode_tgt(self, texts: Sequence[str]) -> list[list[int]]:
        """Target sentences to ids, without BOS/EOS."""
        return self._tgt.encode(list(texts), out_type=int)

    def decode_src(self, ids: Sequence[int]) -> str:
        """Detokenised source text; pad/BOS/EOS are ignored."""
        return self._src.decode([i for i in ids if i not in SPECIALS])

    def decode_tgt(self, ids: Sequence[int]) -> str:
        """Detokenised target text; pad/BOS/EOS are ignored."""
        return self._tgt.decode([i for i in ids if i not in SPECIALS])

    def src_pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword string of each source id (for heatmap labels)."""
        return [self._src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword string of each target id (for heatmap labels)."""
        return [self._tgt.id_to_piece(i) for i in ids]


def cache_key(cfg: Any, src_texts: Sequence[str], tgt_texts: Sequence[str]) -> str:
    """SHA-256 of the settings and the training text: equal inputs give the same model."""
    settings = {
        "joint": bool(cfg.joint),
        "model_type": cfg.model_type,
        "vocab_size": int(cfg.vocab_size),
        "character_coverage": float(cfg.character_coverage),
        "input_sentence_size": int(cfg.input_sentence_size),
        "sentencepiece": spm.__version__,
        "specials": [PAD_ID, UNK_ID, BOS_ID, EOS_ID],
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for texts in (src_texts, tgt_texts):
        digest.update(f"\0{len(texts)}\0".encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\n")
    return digest.hexdigest()


def _processor(model: bytes) -> spm.SentencePieceProcessor:
    """Load a serialized model and check it uses the fixed special ids."""
    try:
        processor = spm.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"Not a SentencePiece model ({err}).") from None
    actual = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    if actual != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise UserError(
            f"SentencePiece model with special ids pad/unk/bos/eos={actual}; seq2seq needs "
            f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}. Let seq2seq train the tokenizer."
        )
    return processor


def _train(texts: Sequence[str], cfg: Any, side: str) -> bytes:
    """Train one model in memory; SentencePiece's own errors become actionable UserErrors."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type=cfg.model_type,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            input_sentence_size=cfg.input_sentence_size,
            shuffle_input_sentence=True,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            minloglevel=2,  # errors only: training is otherwise very chatty on stderr
        )
    except RuntimeError as err:
        raise UserError(_training_error(str(err), cfg, side)) from None
    return model.getvalue()


def _training_error(message: str, cfg: Any, side: str) -> str:
    """Turn a SentencePiece training failure into the override that fixes it."""
    reason = message.split("] ", 1)[-1]
    too_high = re.search(r"Vocabulary size too high.*<= *(\d+)", message)
    if too_high:
        return (
            f"data.tokenizer.vocab_size={cfg.vocab_size} is too large for the {side} training "
            f"text; SentencePiece can build at most {too_high.group(1)} pieces from it. Lower it, "
            f"e.g. data.tokenizer.vocab_size={too_high.group(1)}, or train on more data."
        )
    too_low = re.search(r"smaller than required_chars\. *(\d+) vs (\d+)", message)
    if too_low:
        return (
            f"data.tokenizer.vocab_size={cfg.vocab_size} is too small: the characters of the "
            f"{side} training text and the special symbols need {too_low.group(2)} pieces. Raise "
            f"data.tokenizer.vocab_size or lower data.tokenizer.character_coverage (now "
            f"{cfg.character_coverage})."
        )
    return f"SentencePiece training ({side}) failed: {reason}. Check the data.tokenizer settings."
