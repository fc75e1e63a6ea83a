"""seq2seq-serve: a local translation server with an interactive attention page at ``/``."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq.cli.common import CONFIG_PATH, report_user_errors
from seq2seq.config import DecodeConfig, ServeLimitsConfig
from seq2seq.errors import UserError
from seq2seq.inference import Translator
from seq2seq.readout import READINGS, Readout, resolve_readout
from seq2seq.training.checkpoint import resolve_checkpoint_path
from seq2seq.training.distributed import resolve_device

if TYPE_CHECKING:
    from fastapi import FastAPI

INSTALL_HINT = "pip install 'seq2seq[serve]' (FastAPI and uvicorn)"


def run(cfg: DictConfig) -> None:
    """Load the checkpoint, start the model worker and serve until interrupted."""
    try:
        import uvicorn
    except ImportError as error:
        raise UserError(f"seq2seq-serve needs the '{error.name}' package: {INSTALL_HINT}") from None
    app = build_app(cfg)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


def build_app(cfg: DictConfig) -> FastAPI:
    """The application of a composed ``serve`` config, its model worker already running."""
    try:
        from seq2seq.serve.app import create_app
    except ImportError as error:
        raise UserError(f"seq2seq-serve needs the '{error.name}' package: {INSTALL_HINT}") from None
    from seq2seq.serve.inspection import describe_model
    from seq2seq.serve.worker import ModelWorker

    limits = ServeLimitsConfig(**OmegaConf.to_container(cfg.limits))  # type: ignore[arg-type]
    for name, value in asdict(limits).items():
        if value < 1:
            raise UserError(f"limits.{name}={value}: give a positive number.")
    if cfg.decode.beam_size > limits.max_beam:
        raise UserError(
            f"decode.beam_size={cfg.decode.beam_size} is above limits.max_beam={limits.max_beam}."
        )
    path = resolve_checkpoint_path(cfg.checkpoint)
    translator = Translator.from_checkpoint(path, resolve_device(cfg.device))
    decode = DecodeConfig(**OmegaConf.to_container(cfg.decode))  # type: ignore[arg-type]
    info = describe_model(translator.model, translator.checkpoint, str(path))
    layers = info["layers"]
    if cfg.alignment_layer is not None and not -layers <= cfg.alignment_layer < layers:
        raise UserError(
            f"alignment_layer={cfg.alignment_layer}: this model has {layers} decoder layer(s); "
            f"give -{layers} to {layers - 1}."
        )
    if cfg.alignment_reading not in (None, *READINGS):
        raise UserError(
            f"alignment_reading={cfg.alignment_reading}: give one of {', '.join(READINGS)}."
        )
    stored = Readout.stored(translator.checkpoint)
    readout = resolve_readout(stored, cfg.alignment_layer, cfg.alignment_reading)
    worker = ModelWorker(translator, decode, readout, cfg.max_batch_sentences)
    return create_app(worker, info, limits)


@hydra.main(config_path=CONFIG_PATH, config_name="serve", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    """Entry point of ``seq2seq-serve``."""
    run(cfg)


if __name__ == "__main__":
    main()
