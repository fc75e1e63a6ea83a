"""seq2seq-train: a thin Hydra wrapper around :func:`seq2seq.training.trainer.train`."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from seq2seq.cli.common import CONFIG_PATH, report_user_errors, run_command
from seq2seq.training.trainer import train


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
@report_user_errors
def hydra_main(cfg: DictConfig) -> float:
    """Train; returns the best validation BLEU (the value Hydra sweepers optimise)."""
    metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    return metrics["best_bleu"]


def main() -> None:
    """Entry point of ``seq2seq-train``."""
    run_command(hydra_main)


if __name__ == "__main__":
    main()
