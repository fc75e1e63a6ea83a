"""seq2seq-prepare: stream, tokenize and shard the training data into ``data.cache_dir``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq.cli.common import CONFIG_PATH, report_user_errors, run_command
from seq2seq.config import PrepareAppConfig
from seq2seq.config_checks import check_config
from seq2seq.data.pipeline import prepare_data
from seq2seq.textio import check_writable

log = logging.getLogger("seq2seq.prepare")


@hydra.main(config_path=CONFIG_PATH, config_name="prepare", version_base="1.3")
@report_user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Prepare (or check and reuse) the training shards, and check the validation split."""
    check_config(cfg, PrepareAppConfig)
    check_writable("data.cache_dir", Path(cfg.data.cache_dir))
    data = prepare_data(cfg.data, log)
    print(f"{len(data.train)} training pairs in {len(data.train.shards)} shard(s) are ready")


def main() -> None:
    """Entry point of ``seq2seq-prepare``."""
    run_command(hydra_main)


if __name__ == "__main__":
    main()
