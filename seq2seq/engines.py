"""Which engine a ``checkpoint=`` names: a native checkpoint, or a CTranslate2 export.

Both answer ``clip(sources)`` and ``decode(sources, decode_config, need_weights)`` and carry
``tokenizer`` and ``checkpoint`` (its ``model_config`` and training ``config``), so
seq2seq-translate and seq2seq-evaluate score and translate with either one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq.errors import UserError
from seq2seq.export.directory import is_export
from seq2seq.export.engine import CTranslate2Translator  # imports ctranslate2 only when used
from seq2seq.inference import Translator
from seq2seq.training.distributed import resolve_device


def open_translator(
    checkpoint: str, device: str, threads: int | None
) -> Translator | CTranslate2Translator:
    """The native model of a checkpoint (file or run directory), or an exported directory's."""
    if is_export(checkpoint):
        return CTranslate2Translator(Path(checkpoint), device, threads)
    if threads is not None:
        torch.set_num_threads(threads)
    return Translator.from_checkpoint(checkpoint, resolve_device(device, setting="device"))


def require_native(translator: Translator | CTranslate2Translator, setting: str) -> Translator:
    """``translator`` itself, when it is native; else one line naming the ``setting``."""
    if not isinstance(translator, Translator):
        raise UserError(
            f"{setting} needs the native model: it is unavailable for the {translator.engine} "
            f"engine; give the checkpoint (.pt) instead of the exported directory."
        )
    return translator
