"""What every command-line entry point shares: config registration and error reporting."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.config import EvaluateAppConfig, TrainAppConfig, register_configs
from seq2seq.config_checks import check_config
from seq2seq.errors import Interrupted, UserError
from seq2seq.textio import check_writable
from seq2seq.training.run_dir import (
    LOCK_FILE,
    check_run_dir,
    hold_run_dir,
    is_main_process,
)

CONFIG_PATH = "pkg://seq2seq.configs"
FAILED_JOBS: list[str] = []  # jobs of this multirun sweep that ended in a UserError
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a process stopped by Ctrl-C


def report_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Print a :class:`UserError` as one line and exit with status 2, without a traceback.

    An :class:`Interrupted` run (its resume hint already logged) exits with 128 + the signal
    number; Ctrl-C elsewhere exits 130 with one line; a closed stdout (``| head``) exits
    quietly. In a multirun sweep a failed job is reported and the sweep goes on.
    """

    @functools.wraps(main)
    def wrapper(cfg: DictConfig) -> Any:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt
        try:
            result = main(cfg)
            sys.stdout.flush()  # here, so a closed pipe is reported below, not at exit
            return result
        except UserError as err:
            logging.getLogger("seq2seq").debug("user error", exc_info=True)
            if not in_multirun():
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            hydra_cfg = HydraConfig.get()
            failure = f"job #{hydra_cfg.job.num} ({hydra_cfg.runtime.output_dir}): {err}"
            print(f"error: {failure}", file=sys.stderr)
            FAILED_JOBS.append(failure)
            return None
        except Interrupted as stop:  # the trainer has logged how to resume
            sys.exit(128 + stop.signum)
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C); nothing more was written.", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)

    return wrapper


def in_multirun() -> bool:
    """Whether this job is one of a Hydra multirun sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_command(hydra_main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; after a sweep, list the failed jobs and exit 2."""
    hydra_main()
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} job(s) of the sweep failed:", file=sys.stderr)
        for failure in FAILED_JOBS:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(2)


def exit_with(err: UserError) -> None:
    """Print ``err`` as one line and exit 2 (in Hydra callbacks, where nothing else catches)."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


class TrainRunDirCheck(Callback):
    """Before Hydra writes the run directory: check every setting, the directory and its lock."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra's hook before the job; ``kwargs`` is Hydra's interface (config_name)."""
        try:
            check_config(config, TrainAppConfig)
            run_dir = Path(config.hydra.run.dir)
            check_run_dir(run_dir, config.train)
            check_writable("data.cache_dir", Path(config.data.cache_dir))
            if is_main_process():
                hold_run_dir(run_dir)  # held until this process ends
        except UserError as err:
            exit_with(err)


class EvaluateRunDirCheck(Callback):
    """Before Hydra writes the run directory: evaluation never writes into a training run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra's hook before the job; ``kwargs`` is Hydra's interface (config_name)."""
        try:
            check_config(config, EvaluateAppConfig)
            run_dir = Path(config.hydra.run.dir)
            trained = [run_dir / "checkpoints", run_dir / "tensorboard", run_dir / LOCK_FILE]
            if any(p.exists() for p in trained):
                raise UserError(
                    f"hydra.run.dir={run_dir} is a training run; evaluate would write over its "
                    f"files (.hydra/*.yaml). Leave hydra.run.dir out, or give a new directory."
                )
            check_writable("hydra.run.dir", run_dir)
        except UserError as err:
            exit_with(err)


register_configs()
