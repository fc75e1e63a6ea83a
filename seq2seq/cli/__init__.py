"""The command-line entry points.

Imported first when a console script starts: until a command's main function takes over
Ctrl-C, it ends the start-up (loading torch, composing the config) with one line and
status 130 instead of a traceback from whatever module was being imported.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("interrupted (Ctrl-C) while starting; nothing was done.\n")
    os._exit(128 + signum)


if Path(sys.argv[0]).name.startswith("seq2seq-") or sys.argv[0] == "-m":
    signal.signal(signal.SIGINT, _interrupted_while_starting)
