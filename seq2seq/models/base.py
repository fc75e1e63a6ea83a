"""The interface both model families implement, and the attention they return.

Memory and decoder state are nests (tuples, lists, dicts, NamedTuples) of tensors whose
first dimension is the batch, so search code can expand and reorder them for any family
with :func:`select_batch` and never needs to know what is inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils import _pytree

Memory = Any  # batch-first nest of tensors produced by ``encode``
State = Any  # batch-first nest of tensors carried between ``decode_step`` calls


@dataclass
class Attention:
    """Attention weights returned by a forward pass (never stashed on modules)."""

    cross: Tensor  # (B, L, H, T_tgt, T_src) decoder-to-source weights per layer and head
    encoder: Tensor | None = None  # (B, L, H, T_src, T_src) encoder self-attention, if any


class Seq2SeqModel(Protocol):
    """What training, search and alignment code may call on a model."""

    # The longest source, and the longest BOS + target prefix, the model can take (a
    # Transformer's table of positions); None: no limit (an RNN).
    max_positions: int | None

    def encode(self, src: Tensor, src_mask: Tensor) -> Memory:
        """Encode ``src`` (B, S) with ``src_mask`` (B, S), True on real tokens."""
        ...

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Attention | None]:
        """Teacher forcing: logits (B, T, V) and, if asked (always for RNNs), attention."""
        ...

    def init_state(self, memory: Memory, src_mask: Tensor) -> State:
        """The decoder state before the first step."""
        ...

    def decode_step(
        self,
        memory: Memory,
        src_mask: Tensor,
        prev_tokens: Tensor,
        state: State,
        need_weights: bool = False,
    ) -> tuple[Tensor, State, Tensor | None]:
        """One incremental step: logits (B, V), the new state, cross-attention (B, L, H, S)."""
        ...


def position_limits(max_positions: int | None) -> tuple[int | None, int | None]:
    """The most source tokens, and target tokens before EOS, a model of ``max_positions`` takes.

    The source fills at most every position; the decoder's input is BOS + the target
    tokens before EOS, so the target gets one fewer. None: no limit (an RNN).
    """
    if max_positions is None:
        return None, None
    return max_positions, max_positions - 1


def select_batch(tree: Any, index: Tensor) -> Any:
    """Pick rows ``index`` along the batch dimension of every tensor in a nest.

    A node with a ``select_rows(index)`` method (a cache not stored batch first, or one with
    unused room) selects its own rows; every other tensor is batch first.
    """

    def select(node: Any) -> Any:
        if hasattr(node, "select_rows"):
            return node.select_rows(index)
        return node.index_select(0, index) if isinstance(node, torch.Tensor) else node

    return _pytree.tree_map(select, tree, is_leaf=lambda node: hasattr(node, "select_rows"))
