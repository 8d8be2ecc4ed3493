"""Heatmaps drawn on images (vizcap.render): colour scales, overlays that put every map cell back
over the part of the image it came from, and the word-by-word GIF."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vizcap.render import COLORMAPS, caption_gif, colorize, overlay, resized


@pytest.fixture(scope="module")
def photo():
    """A non-square noisy image, 213 × 100 (W × H): the 3 × 5 grid's cells are not whole pixels (and no
    cell border falls on a pixel centre, where nearest-neighbour resizing could go either way)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (100, 213, 3), dtype=np.uint8))


@pytest.mark.parametrize("cmap", sorted(COLORMAPS))
def test_colorize_hits_the_anchors(cmap):
    anchors = np.array(COLORMAPS[cmap], dtype=np.uint8)
    k = len(anchors) - 1
    at_anchors = colorize(np.arange(k + 1) / k, cmap)
    assert at_anchors.dtype == np.uint8 and at_anchors.shape == (k + 1, 3)
    np.testing.assert_array_equal(at_anchors, anchors)
    np.testing.assert_array_equal(colorize(np.array([0.0]), cmap)[0], anchors[0])
    np.testing.assert_array_equal(colorize(np.array([1.0]), cmap)[0], anchors[-1])
    # outside [0, 1] and NaN are clipped to the ends
    np.testing.assert_array_equal(colorize(np.array([-3.0, 7.0, np.nan]), cmap), anchors[[0, -1, 0]])
    # halfway between two anchors is their mean
    mid = colorize(np.array([0.5 / k]), cmap)[0].astype(int)
    assert np.all(np.abs(mid - (anchors[0].astype(int) + anchors[1]) / 2) <= 0.5)
    assert colorize(np.zeros((2, 3, 4)), cmap).shape == (2, 3, 4, 3)


def test_colorize_rejects_unknown_scales():
    with pytest.raises(ValueError, match="colormap"):
        colorize(np.zeros(3), "jet")


def test_overlay_keeps_the_image_size(photo):
    hm = np.random.default_rng(1).uniform(size=(3, 4))
    for smooth in (True, False):
        out = overlay(photo, hm, smooth=smooth)
        assert out.size == photo.size and out.mode == "RGB"
    grey = photo.convert("L")
    assert overlay(grey, hm).size == grey.size


def test_overlay_alpha(photo):
    hm = np.random.default_rng(2).uniform(size=(3, 4))
    np.testing.assert_array_equal(np.asarray(overlay(photo, hm, alpha=0.0)), np.asarray(photo))
    full = np.asarray(overlay(photo, hm, alpha=1.0, smooth=False))
    assert set(map(tuple, full.reshape(-1, 3))) <= set(map(tuple, colorize(np.linspace(0, 1, 1001)).reshape(-1, 3)))


def _region(r: int, c: int, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Pixels (by their centres) of cell (r, c): rows r·H/gh … (r+1)·H/gh, cols c·W/gw … (c+1)·W/gw."""
    (gh, gw), (W, H) = grid, size
    ys = np.arange(H) + 0.5
    xs = np.arange(W) + 0.5
    rows = (ys >= r * H / gh) & (ys < (r + 1) * H / gh)
    cols = (xs >= c * W / gw) & (xs < (c + 1) * W / gw)
    return rows[:, None] & cols[None, :]


@pytest.mark.parametrize("cell", [(0, 0), (1, 2), (2, 3), (2, 0), (0, 4)])
def test_a_hot_cell_lights_up_its_own_region(photo, cell):
    grid = (3, 5)
    hot = np.zeros(grid)
    hot[cell] = 1.0
    cold = np.zeros(grid)
    region = _region(*cell, grid, photo.size)
    for smooth in (False, True):
        base = np.asarray(overlay(photo, cold, vmax=1.0, smooth=smooth), dtype=float)
        lit = np.asarray(overlay(photo, hot, vmax=1.0, smooth=smooth), dtype=float)
        change = np.abs(lit - base).sum(-1)  # [H, W]
        assert change.max() > 0
        y, x = np.unravel_index(change.argmax(), change.shape)
        assert region[y, x], (smooth, (y, x))
        assert change[region].mean() > 3 * change[~region].mean(), smooth
        if not smooth:  # nearest: exactly the cell's pixels change
            np.testing.assert_array_equal(change > 0, region)


def test_caption_gif_has_one_frame_per_word(photo):
    tokens = ["a", "red", "circle", "left", "of", "a", "blue", "star"]
    maps = np.random.default_rng(3).uniform(size=(len(tokens), 3, 4))
    data = caption_gif(photo, tokens, maps, ms_per_word=300)
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == len(tokens)
        assert gif.info.get("duration") == 300
    with Image.open(io.BytesIO(caption_gif(photo, [], np.zeros((0, 3, 4))))) as empty:
        assert empty.n_frames == 1  # no words: the picture alone


def test_static_view_png_and_gif_draw_the_same_map():
    """One renderer: the app's static map (vizcap.figures), the PNG download (the overlay at ≥ 384 px)
    and a GIF frame (the overlay at ≥ 320 px) show the same colours where the same cell is, once
    brought to one size. A smooth map over a scene, on its own scale and on a fixed one."""
    from vizcap import figures
    from vizcap.scenes import render_scene

    scene = render_scene(5).image  # not square
    yy, xx = np.mgrid[0:4, 0:4]
    heat = np.exp(-((yy - 1.2) ** 2 + (xx - 2.6) ** 2) / 1.5) * 0.4
    for vmax in (None, 1.0):
        kw = dict(alpha=0.6, cmap="viridis", vmax=0.4 if vmax is None else vmax)
        static = figures.image_pixels(figures.attention_overlay(scene, heat, "star", 0.6, "viridis", kw["vmax"]).data[0])
        size = static.shape[1], static.shape[0]
        png = overlay(resized(scene, 512), heat, **kw).resize(size, Image.BILINEAR)
        with Image.open(io.BytesIO(caption_gif(scene, ["a", "star"], np.stack([heat, heat]), **kw))) as gif:
            gif.seek(1)
            frame = gif.convert("RGB")
        shown_height = round(scene.height * frame.width / scene.width)  # the overlay part, above the words
        top = frame.crop((0, 0, frame.width, shown_height)).resize(size, Image.BILINEAR)
        for other, tolerance in ((png, 3.0), (top, 3.0)):
            d = np.abs(static.astype(int) - np.asarray(other, dtype=int))
            assert d.mean() < tolerance, (vmax, d.mean())
            assert np.percentile(d, 99) < 40, (vmax, np.percentile(d, 99))


def test_the_labelled_png_carries_the_word_the_overlay_and_a_colour_bar():
    from vizcap.render import labelled_overlay, overlay, resized

    image = Image.new("RGB", (200, 100), (120, 120, 120))
    heat = np.zeros((2, 4))
    heat[1, 3] = 0.5
    out = labelled_overlay(image, heat, "star", "attention weight (share, 0–1)", vmax=0.5, note="rollout · max",
                           width=400)
    plain = np.asarray(overlay(resized(image, 400), heat, vmax=0.5))
    arr = np.asarray(out)
    # the overlay sits unchanged below the title, at (pad, pad + 30)
    assert np.array_equal(arr[42 : 42 + plain.shape[0], 12 : 12 + plain.shape[1]], plain)
    # a colour bar beside it runs from the top colour (vmax) down to the bottom colour (0)
    bar = arr[42 : 42 + plain.shape[0], 12 + plain.shape[1] + 12 + 8]
    from vizcap.render import colorize

    assert np.abs(bar[1].astype(int) - colorize(np.array([1.0]))[0]).max() <= 6
    assert np.abs(bar[-2].astype(int) - colorize(np.array([0.0]))[0]).max() <= 6
    # a title strip and a text line: the frame is taller and wider than the overlay alone
    assert out.height > plain.shape[0] + 40 and out.width > plain.shape[1] + 40
    assert arr[:30].min() < 100  # the word is drawn in dark ink on white
