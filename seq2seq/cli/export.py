"""seq2seq-export: a trained Transformer as a CTranslate2 model directory, self-contained."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seq2seq.cli.common import CONFIG_PATH, report_user_errors, run_command
from seq2seq.config import ExportAppConfig
from seq2seq.config_checks import check_config
from seq2seq.export.directory import export_checkpoint


def run(cfg: DictConfig) -> None:
    """Check the settings, export, and say where the model went and how to use it."""
    check_config(cfg, ExportAppConfig)
    output = export_checkpoint(cfg.checkpoint, cfg.output, cfg.quantization)
    print(
        f"CTranslate2 model ({cfg.quantization}) written to {output}; translate with "
        f"seq2seq-translate checkpoint={output}"
    )


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
@report_user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Export ``checkpoint`` to ``output``."""
    run(cfg)


def main() -> None:
    """Entry point of ``seq2seq-export``."""
    run_command(hydra_main)


if __name__ == "__main__":
    main()
