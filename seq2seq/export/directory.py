"""An exported model directory: written whole or not at all, and recognised when read back.

    <output>/model.bin, config.json        the CTranslate2 model (weights, special tokens)
    <output>/shared_vocabulary.json        or source_ + target_vocabulary.json, by SentencePiece id
    <output>/sentencepiece.model           or src.model + tgt.model, the tokenizer as trained
    <output>/seq2seq_export.json           what seq2seq needs to use it (MANIFEST)

The directory is built under a hidden name beside ``output`` and renamed into place, so a
refusal or a crash never leaves a partial export behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import UserError
from seq2seq.inference import Translator
from seq2seq.textio import check_writable
from seq2seq.training.checkpoint import load_checkpoint, resolve_checkpoint_path

MANIFEST = "seq2seq_export.json"
INSTALL_HINT = "pip install 'seq2seq[export]' (ctranslate2)"


def require_ctranslate2() -> Any:
    """The ``ctranslate2`` module, or one line saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise UserError(f"CTranslate2 is not installed: {INSTALL_HINT}.") from None
    return ctranslate2


def exportable_problem(model_config: dict[str, Any]) -> str | None:
    """Why a checkpoint's model has no CTranslate2 equivalent, or None when it has one."""
    family = model_config.get("family")
    if family != "transformer":
        return f"it is a {family} model; CTranslate2 export takes Transformer checkpoints only"
    for side in ("encoder", "decoder"):
        kind = model_config.get(f"{side}_self_attention", "softmax")
        if kind != "softmax":
            return (
                f"its {side} uses {kind} (linear) self-attention, which CTranslate2 cannot "
                f"express; export a Transformer trained with softmax attention"
            )
    return None


def export_checkpoint(checkpoint: str | Path, output: str | Path, quantization: str) -> Path:
    """Write the CTranslate2 export of ``checkpoint`` to the new directory ``output``."""
    from seq2seq.export.spec import transformer_spec

    require_ctranslate2()
    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"output={output} already exists; give a new (or empty) directory.")
    where = resolve_checkpoint_path(checkpoint)
    state = load_checkpoint(where)
    problem = exportable_problem(state["model_config"])
    if problem is not None:
        raise UserError(f"{where} cannot be exported: {problem}.")
    translator = Translator.from_checkpoint(where, torch.device("cpu"))
    heads = state["model_config"]["heads"]
    spec, mapped = transformer_spec(translator.model, translator.tokenizer, heads)
    spec.optimize(quantization=None if quantization == "none" else quantization)
    check_writable("output", output.parent)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        spec.save(str(staging))
        translator.tokenizer.save(staging)
        manifest = {
            "format": "ctranslate2",
            "quantization": quantization,
            "weights": len(mapped),  # state_dict tensors of the checkpoint, each in one slot
            "checkpoint": str(where),
            "model_config": state["model_config"],
            "config": state.get("config", {}),  # the training config: evaluate's named splits
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if output.exists():
            output.rmdir()  # empty, checked above
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by :func:`export_checkpoint`.

    A CTranslate2 model that seq2seq did not write (no manifest) is refused: its vocabulary
    and special tokens need not match the SentencePiece ids seq2seq decodes with.
    """
    path = Path(path).expanduser()
    if (path / MANIFEST).is_file():
        return True
    if (path / "model.bin").is_file():
        raise UserError(
            f"{path} holds a CTranslate2 model that seq2seq-export did not write (no "
            f"{MANIFEST}); export a seq2seq checkpoint with seq2seq-export."
        )
    return False


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export, checked to be whole."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        manifest["model_config"]["max_positions"]  # noqa: B018 (present, or KeyError)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{directory / MANIFEST} is unreadable ({type(err).__name__}: {err}); export the "
            f"checkpoint again with seq2seq-export."
        ) from None
    return manifest
