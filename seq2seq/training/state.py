"""What a checkpoint records of a run besides its weights: the counters and the random streams."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

import torch

from seq2seq.errors import UserError


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    shard_in_epoch: int = 0  # position in the epoch's shard order
    batch_in_shard: int = 0  # batches of that shard already consumed (by this rank)
    best_bleu: float = -1.0
    best_step: int = -1  # the step of best.pt
    bad_validations: int = 0  # validations since BLEU last improved
    last_valid_step: int = -1

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> TrainState:
        """The state a checkpoint recorded; refused in one line if another version wrote it."""
        names = {f.name for f in fields(cls)}
        if set(saved) != names:
            raise UserError(
                "train.resume: the checkpoint's training state was written by another "
                f"version of seq2seq (it records {', '.join(sorted(set(saved) - names)) or 'less'}"
                "); its place in the epoch cannot be restored: start a new run (its weights "
                "still translate and evaluate)."
            )
        return cls(**saved)


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and builtins, for exact resume."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rank_rng_state(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any] | None:
    """The RNG states a rank resumes with: its own if the checkpoint's run had as many ranks.

    Otherwise rank 0 takes the saved main-process states and other ranks get None (keep
    their fresh ``seed + rank`` seeding): dropout differs from an unbroken run, but ranks
    never share masks.
    """
    per_rank = state.get("rng_ranks")
    if per_rank is not None and len(per_rank) == world_size:
        return per_rank[rank]
    return state["rng"] if rank == 0 else None
