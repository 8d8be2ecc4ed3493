"""Maps over the image: one word's map, small multiples (every head of a layer, every prefix token),
and the colour range and unit a map is shown with."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .. import maps as _maps
from .common import figure_layout, panel_title, percent, plain
from .images import colour_axis, image_and_map, image_axes


def attention_overlay(image: Image.Image, heatmap: np.ndarray, word: str = "", opacity: float = 0.5,
                      colorscale: str = "viridis", vmax: float | None = None, method: str = "cross_attention",
                      height: int = 430, unit: str | None = None) -> go.Figure:
    """One word's map (gh×gw) over the image. vmax fixes the top of the colour scale (default: the
    map's own maximum), so that maps of different words can be compared; unit labels the colour bar
    (default: the method's raw unit; see vizcap.maps.colour_range for both)."""
    heatmap = np.asarray(heatmap, dtype=float)
    top = float(vmax) if vmax is not None else float(heatmap.max()) if heatmap.size else 1.0
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape) if heatmap.size else (0, 0)
    gh, gw = heatmap.shape
    unit = unit or _maps.raw_unit(method)
    text = (f"The image with a {gh}×{gw} grid of {method.replace('_', ' ')} values for the word '{word}' laid "
            f"over it; brighter cells weighed more when the model wrote that word (colour scale 0 to {top:.3g}, "
            f"{unit}). The hottest cell, {float(heatmap.max()) if heatmap.size else 0:.3g}, is in row "
            f"{r + 1} of {gh}, column {c + 1} of {gw} ({_where(r, c, gh, gw)}).")
    layout = figure_layout(f"Where the model looked: “{plain(word)}”", text, height,
                     coloraxis=colour_axis(colorscale, top, unit), **image_axes())
    return go.Figure(data=image_and_map(image, heatmap, opacity, name=word, colorscale=colorscale, top=top),
                     layout=layout)



def _where(r: int, c: int, gh: int, gw: int) -> str:
    vertical = ("top", "middle", "bottom")[min(2, 3 * r // max(gh, 1))]
    horizontal = ("left", "centre", "right")[min(2, 3 * c // max(gw, 1))]
    return "centre" if (vertical, horizontal) == ("middle", "centre") else f"{vertical} {horizontal}"



GRID_SIDE = 200  # a small multiple's image is drawn at most this many pixels wide



def map_grid(image: Image.Image, heatmaps: np.ndarray, labels: list[str], title_text: str, text: str,
             opacity: float = 0.5, colorscale: str = "viridis", columns: int = 4, shared_scale: bool = True,
             vmax: float | None = None, unit: str = "weight") -> go.Figure:
    """Small multiples: one map per panel over the same image (heads of a layer, prefix tokens), on
    one colour scale 0..vmax (default: the largest value of any panel), or each panel divided by its
    own peak (shared_scale=False). The panels' axes are laid out here directly (plotly's
    make_subplots costs ~10 ms a figure)."""
    heatmaps = np.asarray(heatmaps, dtype=float)
    n = len(heatmaps)
    columns = max(1, min(columns, n))
    rows = max(1, math.ceil(n / columns))
    h_gap, v_gap = 0.02, 0.08 if rows > 1 else 0.0
    width, height = (1 - h_gap * (columns - 1)) / columns, (1 - v_gap * (rows - 1)) / rows
    if shared_scale:
        top = float(vmax) if vmax is not None else float(heatmaps.max()) if heatmaps.size else 1.0
    else:
        top, unit = 1.0, "fraction of the panel's own peak"
    traces, axes, titles = [], {}, []
    for i in range(n):
        r, c = divmod(i, columns)
        axis = "" if i == 0 else str(i + 1)
        x0, y1 = c * (width + h_gap), 1 - r * (height + v_gap)
        axes.update(image_axes(axis, (x0, x0 + width), (y1 - height, y1)))
        panel = heatmaps[i] if shared_scale else heatmaps[i] / max(heatmaps[i].max(), 1e-12)
        traces += image_and_map(image, panel, opacity, axis, name=labels[i], colorscale=colorscale, top=top,
                                 side=GRID_SIDE)
        titles.append(panel_title(plain(labels[i]), x0 + width / 2, y1))
    layout = figure_layout(title_text, text, 60 + 230 * rows, coloraxis=colour_axis(colorscale, top, unit),
                     annotations=titles, **axes)
    return go.Figure(data=traces, layout=layout)



def heads_grid(image: Image.Image, heatmaps: np.ndarray, word: str, layer: int, method: str = "cross_attention",
               opacity: float = 0.5, colorscale: str = "viridis", raw: np.ndarray | None = None,
               vmax: float | None = None, unit: str | None = None, normalize: str = "none",
               columns: int = 4) -> go.Figure:
    """Every head of one layer, for one word: heatmaps [heads, gh, gw] as shown (normalised with
    `normalize`), raw [heads, gh, gw] the same maps before normalisation (default: heatmaps). Which
    head has the strongest single cell is read from the raw maps: after "max" normalisation every
    head peaks at 1. columns: panels per row (2 in a half-width column keeps each panel ~180 px wide)."""
    heatmaps = np.asarray(heatmaps, dtype=float)
    raw = heatmaps if raw is None else np.asarray(raw, dtype=float)
    n = len(heatmaps)
    peak = [float(h.max()) for h in raw] if raw.size else []
    strongest = int(np.argmax(peak)) if peak else 0
    raw_unit = _maps.raw_unit(method)
    scale = {"none": "on one shared colour scale",
             "max": "each head's map divided by its own peak (so every panel reaches the top colour)",
             "sum": "each head's map scaled to sum to 1, on one shared colour scale",
             "global": "each head's maps divided by that head's peak over the caption"}.get(normalize, "")
    text = (f"{n} panels, one per attention head of decoder layer {layer}, each showing that head's "
            f"{method.replace('_', ' ')} map for the word '{word}', {scale}. Heads specialise: some look at the "
            f"object, some spread out or park their attention on a few cells. "
            + (f"Head {strongest} has the strongest single cell before normalisation ({peak[strongest]:.3g}, "
               f"{raw_unit})." if peak else ""))
    return map_grid(image, heatmaps, [f"head {h}" for h in range(n)], f"All heads of layer {layer} for “{plain(word)}”",
                    text, opacity, colorscale, columns=columns, vmax=vmax,
                    unit=unit or _maps.colour_range(heatmaps, method, normalize)[1])



def prefix_maps(image: Image.Image, mapper: np.ndarray, grid: tuple[int, int], opacity: float = 0.5,
                colorscale: str = "viridis") -> go.Figure:
    """Each prefix token's own map over the patches: mapper [P, N] (mean over the mapper's heads)."""
    mapper = np.asarray(mapper, dtype=float)
    P = len(mapper)
    maps = mapper.reshape(P, *grid)
    text = (f"{P} panels, one per prefix token. Each prefix token is a learned query that reads the image "
            f"through attention before the decoder starts; the panel shows which cells it read (one shared "
            f"colour scale). The decoder sees the image partly through these {P} summaries.")
    return map_grid(image, maps, [f"prefix {p}" for p in range(P)], "What each prefix token reads from the image",
                    text, opacity, colorscale, columns=min(P, 6),
                    unit="attention weight of the prefix token's query (share, 0–1)")



def word_prefix_heatmap(tokens: list[str], to_prefix: np.ndarray, colorscale: str = "viridis") -> go.Figure:
    """How much each written word attends to each prefix token: to_prefix [T, P] (self-attention
    weights, mean over the chosen layers and heads). The rest of each row's attention goes to <bos>
    and earlier words."""
    to_prefix = np.asarray(to_prefix, dtype=float)
    T, P = to_prefix.shape if to_prefix.ndim == 2 else (0, 0)
    rest = 1.0 - to_prefix.sum(1) if T else np.zeros(0)
    z = np.concatenate([to_prefix, rest[:, None]], 1) if T else np.zeros((0, P + 1))
    x = [f"prefix {p}" for p in range(P)] + ["<bos> & words"]
    y = [f"{j + 1}. {plain(w)}" for j, w in enumerate(tokens)]
    share = float(to_prefix.sum(1).mean()) if T else float("nan")
    text = (f"A table of colours: one row per written word, one column per prefix token (and a last column "
            f"for <bos> and the earlier words). Each row shows how the word's self-attention is shared out; "
            f"on average {percent(share)} of it goes to the image's prefix tokens.")
    heat = {"type": "heatmap", "z": z, "x": x, "y": y, "colorscale": colorscale, "zmin": 0, "zmax": 1,
            "hovertemplate": "%{y} → %{x}: %{z:.2f}<extra></extra>",
            "colorbar": {"title": {"text": "share"}, "thickness": 12}}
    return go.Figure(data=[heat], layout=figure_layout("How much each word attends to each prefix token", text,
                                                 120 + 28 * max(T, 3), yaxis={"autorange": "reversed"}))

