"""Attention heatmaps as matplotlib figures, for TensorBoard images and PNG files.

Figures are built from :class:`matplotlib.figure.Figure` with an Agg canvas, never via
pyplot: pyplot keeps every open figure in a global registry, which leaks memory when a
validation draws a few figures at every step. A figure here is freed as soon as the
caller drops it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from seq2seq.alignment import NULL_PIECE
from seq2seq.arrays import as_array, check_labels

DPI = 100  # drawn at every validation: modest resolution keeps it fast
CMAP = "Blues"  # white = no attention, so the few strong links stand out
GOLD_COLOR = "tab:red"
NULL_LABEL = "NULL"  # the source column of the NULL position
CELL_INCHES = 0.22  # one token per cell at ~8 pt labels stays readable up to ~40 x 40
GRID_CELL_INCHES = 0.09  # small multiples: the pattern matters more than the labels
MARGIN_INCHES = 1.4  # room for the rotated labels and the colourbar


def _label_axes(
    ax: Axes, src_tokens: Sequence[str], tgt_tokens: Sequence[str], fontsize: float
) -> None:
    """Source tokens along the top, rotated; target tokens down the left.

    A source's closing EOS is its NULL position (``data.tokenizer.null_position``): its
    column is labelled NULL.
    """
    ax.xaxis.tick_top()
    src_labels = [NULL_LABEL if token == NULL_PIECE else token for token in src_tokens]
    ax.set_xticks(range(len(src_tokens)), src_labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(tgt_tokens)), list(tgt_tokens), fontsize=fontsize)
    ax.tick_params(length=0, pad=2)


def _draw_gold(
    ax: Axes, sure: Iterable[tuple[int, int]], possible: Iterable[tuple[int, int]]
) -> None:
    """Sure links as outlined squares, possible-only links as dots, at (src i, tgt j)."""
    sure = set(sure)
    for i, j in sorted(sure):
        ax.add_patch(
            Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor=GOLD_COLOR, linewidth=1.5)
        )
    dots = sorted(set(possible) - sure)
    if dots:
        xs, ys = zip(*dots, strict=True)
        ax.scatter(xs, ys, s=12, color=GOLD_COLOR, marker="o", linewidths=0)


def attention_figure(
    matrix: torch.Tensor | np.ndarray,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    title: str = "",
    gold: tuple[set[tuple[int, int]], set[tuple[int, int]]] | None = None,
) -> Figure:
    """Heatmap of a (T, S) attention matrix: source on top, target on the left, scale 0-1.

    ``gold`` is ``(sure, possible)`` links ``(src i, tgt j)``: sure drawn as outlined
    squares, possible-only as dots.
    """
    weights = as_array(matrix, np.float32)  # (T, S)
    if weights.ndim != 2:
        raise ValueError(f"expected an attention matrix (T, S), got shape {weights.shape}")
    check_labels(weights.shape, tgt_tokens, src_tokens)
    n_tgt, n_src = weights.shape
    width = max(4.0, n_src * CELL_INCHES + MARGIN_INCHES + 0.8)  # + colourbar
    height = max(3.0, n_tgt * CELL_INCHES + MARGIN_INCHES)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(
        weights, cmap=CMAP, vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest"
    )
    _label_axes(ax, src_tokens, tgt_tokens, fontsize=8)
    if gold is not None:
        _draw_gold(ax, *gold)
    fig.colorbar(image, ax=ax, shrink=min(1.0, 4.0 / height + 0.3), pad=0.02)
    if title:
        # The title is often the source sentence: wrap it to the figure, never clip it.
        fig.suptitle(textwrap.fill(title, width=int(width * 11)), fontsize=9)
    return fig


def _grid(
    shape: tuple[int, ...],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    fontsize: float,
) -> tuple[Figure, np.ndarray, tuple[float, float, float, float]]:
    """The empty grid of (L, H) panels for (L, H, T, S) weights, and the colourbar's place.

    A fixed layout computed from the label lengths: the constrained layout engine would
    cost more than all the drawing once there are dozens of panels.
    """
    n_layers, n_heads, n_tgt, n_src = shape
    char = fontsize * 0.65 / 72  # inches per character, generous for DejaVu Sans
    left = 0.45 + char * max((len(t) for t in tgt_tokens), default=0)  # + "layer l"
    top = 0.35 + char * max((len(s) for s in src_tokens), default=0)  # + "head h"
    right, bottom, gap = 0.8, 0.15, 0.08
    panel_w = max(0.8, n_src * GRID_CELL_INCHES)
    panel_h = max(0.8, n_tgt * GRID_CELL_INCHES)
    width = left + n_heads * panel_w + (n_heads - 1) * gap + right
    height = top + n_layers * panel_h + (n_layers - 1) * gap + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # Unshared axes: sharing makes matplotlib propagate every limit change to all panels.
    axes = fig.subplots(
        n_layers,
        n_heads,
        squeeze=False,
        gridspec_kw={
            "left": left / width,
            "right": 1 - right / width,
            "top": 1 - top / height,
            "bottom": bottom / height,
            "wspace": gap / panel_w,
            "hspace": gap / panel_h,
        },
    )
    bar_h = min(3.0, height - top - bottom)  # top-aligned with the panels
    bar = (1 - (right - 0.2) / width, 1 - (top + bar_h) / height, 0.12 / width, bar_h / height)
    return fig, axes, bar


def head_grid_figure(
    cross: torch.Tensor | np.ndarray, src_tokens: Sequence[str], tgt_tokens: Sequence[str]
) -> Figure:
    """Small multiples of every layer (rows) and head (columns) of (L, H, T, S) weights."""
    weights = as_array(cross, np.float32)  # (L, H, T, S)
    if weights.ndim != 4:
        raise ValueError(f"expected cross-attention (L, H, T, S), got shape {weights.shape}")
    check_labels(weights.shape, tgt_tokens, src_tokens)
    fontsize = max(3.0, min(7.0, GRID_CELL_INCHES * 72 * 0.9))
    fig, axes, bar = _grid(weights.shape, src_tokens, tgt_tokens, fontsize)
    n_layers, n_heads = weights.shape[:2]
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            image = ax.imshow(
                weights[layer, head],
                cmap=CMAP,
                vmin=0.0,
                vmax=1.0,
                aspect="auto",
                interpolation="nearest",
            )
            # Token labels on the outer panels only: the inner ones show the pattern.
            _label_axes(
                ax,
                src_tokens if layer == 0 else [],
                tgt_tokens if head == 0 else [],
                fontsize=fontsize,
            )
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.colorbar(image, cax=fig.add_axes(bar))
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an (H, W, 3) uint8 RGB array, for ``add_image(dataformats="HWC")``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3)


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG, creating the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(path)
