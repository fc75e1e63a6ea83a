"""Average the weights of a run's last N checkpoints into one checkpoint file.

python scripts/average_checkpoints.py outputs/<run>/checkpoints --last 5 --out averaged.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.errors import UserError
from seq2seq.training.averaging import average_checkpoints, last_step_checkpoints
from seq2seq.training.checkpoint import save_checkpoint


def main() -> None:
    """Parse arguments, average, write atomically."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a checkpoint file or a run's checkpoints directory")
    parser.add_argument("--last", type=int, default=5, help="how many step_*.pt files to average")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result")
    args = parser.parse_args()
    try:
        paths = last_step_checkpoints(args.checkpoint, args.last)
        save_checkpoint(average_checkpoints(paths), args.out)
    except UserError as err:
        sys.exit(f"error: {err}")
    print(f"averaged {len(paths)} checkpoints into {args.out}")


if __name__ == "__main__":
    main()
