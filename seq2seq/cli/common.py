"""What every command-line entry point shares: config registration and error reporting."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from seq2seq.config import register_configs
from seq2seq.errors import Interrupted, UserError

CONFIG_PATH = "pkg://seq2seq.configs"


def report_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Print a :class:`UserError` as one line and exit with status 2, without a traceback.

    An :class:`Interrupted` run (its resume hint already logged) exits with 128 + the signal number.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            logging.getLogger("seq2seq").debug("user error", exc_info=True)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as stop:  # the trainer has logged how to resume
            sys.exit(128 + stop.signum)

    return wrapper


register_configs()
