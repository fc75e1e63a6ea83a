"""Heatmap figures: rendered pixels, labels inside the canvas, gold marks, no leaked figures."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from seq2seq.heatmaps import (
    DPI,
    attention_figure,
    figure_to_array,
    head_grid_figure,
    save_figure,
)

SRC = ["▁how", "▁are", "▁you", "▁?", "</s>"]
TGT = ["▁comment", "▁allez", "-", "vous", "▁?", "</s>"]


def toy_matrix() -> np.ndarray:
    """A mostly diagonal (T, S) attention whose rows sum to one."""
    rng = np.random.default_rng(0)
    matrix = rng.dirichlet(np.ones(len(SRC)) * 0.3, size=len(TGT))
    matrix[0] = [0.9, 0.025, 0.025, 0.025, 0.025]
    return matrix


def red_pixels(image: np.ndarray) -> int:
    """How many pixels are strongly red (the gold marks; the colour map has no red)."""
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return int(((r > 150) & (g < 90) & (b < 90)).sum())


def dark_blue_pixels(image: np.ndarray) -> int:
    """Pixels of the colour map's top end (weights near 1); labels are grey, not blue."""
    r, b = image[..., 0].astype(int), image[..., 2].astype(int)
    return int(((r < 60) & (b > 90) & (b - r > 60)).sum())


def labels_inside(fig) -> bool:
    """Every tick label and title lies within the rendered canvas (nothing clipped)."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.yaxis.label]
    for text in texts:
        if not text.get_visible() or not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            return False
    return True


def test_figure_to_array_is_hwc_uint8_with_content():
    fig = attention_figure(toy_matrix(), SRC, TGT, title="how are you ? → comment allez-vous ?")
    image = figure_to_array(fig)
    width, height = fig.get_size_inches() * DPI
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == (round(height), round(width))
    assert image.std() > 10  # not a blank canvas
    assert labels_inside(fig)


def test_attention_figure_labels_scale_and_top_axis():
    fig = attention_figure(torch.tensor(toy_matrix()), SRC, TGT, title="t")
    ax = fig.axes[0]
    # the source's closing EOS is its NULL position: a column of its own, labelled NULL
    assert [t.get_text() for t in ax.get_xticklabels()] == [*SRC[:-1], "NULL"]
    assert [t.get_text() for t in ax.get_yticklabels()] == TGT
    assert ax.xaxis.get_ticks_position() == "top"
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert len(fig.axes) == 2  # the heatmap and its colourbar
    with pytest.raises(ValueError, match="does not match"):
        attention_figure(toy_matrix(), SRC[:-1], TGT)


def test_fixed_colour_scale_does_not_stretch_weak_attention():
    weak = np.full((3, 3), 0.05)
    weak[0, 0] = 0.1
    strong = weak.copy()
    strong[0, 0] = 1.0
    tokens = ["▁a", "▁b", "▁c"]
    weak_image = figure_to_array(attention_figure(weak, tokens, tokens))
    strong_image = figure_to_array(attention_figure(strong, tokens, tokens))
    # With vmax fixed at 1 a weak maximum stays pale (only the colourbar's top is dark),
    # while a weight of 1 fills a whole ~22 x 22 pixel cell with the darkest blue.
    assert dark_blue_pixels(strong_image) - dark_blue_pixels(weak_image) > 300


def test_gold_links_are_drawn():
    sure = {(0, 0), (1, 1), (2, 3), (3, 4)}
    gold = (sure, sure | {(1, 2), (2, 2)})
    plain = figure_to_array(attention_figure(toy_matrix(), SRC, TGT))
    marked_fig = attention_figure(toy_matrix(), SRC, TGT, gold=gold)
    marked = figure_to_array(marked_fig)
    assert red_pixels(plain) == 0
    assert red_pixels(marked) > 100
    ax = marked_fig.axes[0]
    assert len(ax.patches) == len(sure)  # outlined squares for sure links
    assert ax.collections[0].get_offsets().tolist() == [[1, 2], [2, 2]]  # dots at (i, j)


def test_forty_by_forty_stays_readable():
    rng = np.random.default_rng(2)
    matrix = rng.dirichlet(np.ones(40) * 0.1, size=40)
    src = [f"▁source{i}" for i in range(40)]
    tgt = [f"▁cible{i}" for i in range(40)]
    fig = attention_figure(matrix, src, tgt, title="a rather long source sentence " * 8)
    image = figure_to_array(fig)
    assert labels_inside(fig)
    assert image.shape[0] < 1400 and image.shape[1] < 1400  # modest size for TensorBoard


def test_head_grid_figure_has_every_layer_and_head():
    torch.manual_seed(0)
    cross = torch.softmax(torch.randn(2, 3, len(TGT), len(SRC)), dim=-1)  # (L, H, T, S)
    fig = head_grid_figure(cross, SRC, TGT)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in panels)
    assert sorted(ax.get_title() for ax in panels if ax.get_title()) == [
        "head 0",
        "head 1",
        "head 2",
    ]
    assert sorted(ax.get_ylabel() for ax in panels if ax.get_ylabel()) == ["layer 0", "layer 1"]
    np.testing.assert_allclose(panels[4].images[0].get_array(), cross[1, 1].numpy())
    image = figure_to_array(fig)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.std() > 10
    assert labels_inside(fig)
    with pytest.raises(ValueError, match="L, H, T, S"):
        head_grid_figure(cross[0], SRC, TGT)


def test_save_figure_writes_a_png(tmp_path):
    fig = attention_figure(toy_matrix(), SRC, TGT, title="toy")
    path = tmp_path / "nested" / "heatmap.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    pixels = figure_to_array(fig)
    assert image.shape[:2] == pixels.shape[:2]
    # The same picture; text antialiasing may differ by a few levels along glyph edges.
    assert np.abs(image[..., :3] * 255 - pixels).mean() < 2


def test_rendered_figures_are_freed():
    refs = []
    for k in range(20):
        fig = attention_figure(toy_matrix() * (k / 20), SRC, TGT, title=str(k))
        figure_to_array(fig)
        refs.append(weakref.ref(fig))
    del fig
    gc.collect()
    assert all(ref() is None for ref in refs)
