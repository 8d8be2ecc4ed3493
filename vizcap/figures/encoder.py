"""Inside the vision transformer: the picture as a sequence of patch tokens, the patch picker, and
where one token looks, layer by layer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from .common import figure_layout, percent
from .images import data_uri, image_axes, image_source, shown_image
from .overlay import GRID_SIDE, map_grid


def outline(x0: float, x1: float, y0: float, y1: float, xref: str = "x", yref: str = "y") -> list[dict]:
    """A cell's outline seen on any colour: a white line between two black edges (a single coloured
    line vanishes on an object of its colour, an orange one on an orange shape)."""
    box = {"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "xref": xref, "yref": yref}
    return [{**box, "line": {"color": "black", "width": 5}}, {**box, "line": {"color": "white", "width": 2}}]



def patch_tokens(image: Image.Image, grid: tuple[int, int], gap: int = 6) -> go.Figure:
    """The image cut into its gh×gw patches and pulled apart, each numbered with its token's place in
    the sequence the ViT reads (row by row, after the class token 0)."""
    gh, gw = grid
    shown = shown_image(image)
    W, H = shown.size
    canvas = Image.new("RGB", (W + gap * (gw - 1), H + gap * (gh - 1)), "white")
    draw = ImageDraw.Draw(canvas)
    for r in range(gh):
        for c in range(gw):
            box = (c * W // gw, r * H // gh, (c + 1) * W // gw, (r + 1) * H // gh)
            x, y = box[0] + c * gap, box[1] + r * gap
            canvas.paste(shown.crop(box), (x, y))
            label = str(1 + r * gw + c)
            draw.rectangle((x, y, x + 7 * len(label) + 3, y + 11), fill="white")
            draw.text((x + 2, y), label, fill="black")
    text = (f"The picture cut into a {gh}×{gw} grid of {gh * gw} patches, pulled apart. The vision transformer "
            f"turns each patch into one token (numbered 1–{gh * gw}, row by row; token 0 is the class token, "
            "which belongs to no patch) and from then on treats the picture as this sequence: every token can "
            "attend to every other, and a learned position embedding is all that tells it where a patch was.")
    layout = figure_layout("The image becomes a sequence of patch tokens", text, 420, **image_axes())
    return go.Figure(data=[{"type": "image", "source": data_uri(canvas), "hoverinfo": "skip"}], layout=layout)



def patch_picker(image: Image.Image, grid: tuple[int, int], selected: tuple[int, int] | None = None) -> go.Figure:
    """The image with its patch grid drawn on it and one clickable point per patch (customdata = row,
    column); the selected patch outlined."""
    gh, gw = grid
    shown = shown_image(image)
    W, H = shown.size
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    xs, ys = (cols.ravel() + 0.5) * W / gw, (rows.ravel() + 0.5) * H / gh
    lines = [{"type": "line", "x0": c * W / gw, "x1": c * W / gw, "y0": 0, "y1": H, "line": {"color": "white", "width": 1}}
             for c in range(1, gw)]
    lines += [{"type": "line", "x0": 0, "x1": W, "y0": r * H / gh, "y1": r * H / gh, "line": {"color": "white", "width": 1}}
              for r in range(1, gh)]
    if selected is not None:
        r, c = selected
        lines += outline(c * W / gw, (c + 1) * W / gw, r * H / gh, (r + 1) * H / gh)
    where = "no patch chosen" if selected is None else f"row {selected[0] + 1}, column {selected[1] + 1} outlined"
    text = (f"The picture with its {gh}×{gw} patch grid; click a patch to see where its token looks inside the "
            f"vision transformer ({where}).")
    points = {"type": "scatter", "x": xs.tolist(), "y": ys.tolist(), "mode": "markers",
              "customdata": np.stack([rows.ravel(), cols.ravel()], -1).tolist(),
              "marker": {"size": max(8, min(W / gw, H / gh) * 0.8), "symbol": "square", "color": "rgba(255,255,255,0.01)"},
              "hovertemplate": "row %{customdata[0]}, column %{customdata[1]}<extra>click to choose</extra>",
              "name": "patches"}
    image_trace = {"type": "image", "source": image_source(image)[0], "hoverinfo": "skip"}
    layout = figure_layout("Choose a patch", text, 360, shapes=lines, showlegend=False, dragmode=False, clickmode="event+select",
                     **image_axes())
    return go.Figure(data=[image_trace, points], layout=layout)



def encoder_layers(image: Image.Image, maps: np.ndarray, extra_share, query: str, method: str = "attention",
                   opacity: float = 0.5, colorscale: str = "viridis", cell: tuple[int, int] | None = None,
                   head: int | None = None) -> go.Figure:
    """Where one ViT token looks, layer by layer: maps [L, gh, gw] (attention of layer l, or rollout up
    to layer l), extra_share [L] the part on the class token (left out of the maps), on one colour
    scale; the query's own patch outlined when it is one."""
    maps = np.asarray(maps, dtype=float)
    L, gh, gw = maps.shape
    heads = "all heads (mean)" if head is None else f"head {head}"
    what = (f"its self-attention in each layer ({heads})" if method == "attention" else
            "attention rollout: the share of its output that flowed from each patch through the layers up to this one")
    top = float(maps.max()) if maps.size else 1.0
    text = (f"{L} panels, one per layer of the vision transformer, for the token of {query}: {what}, on one colour "
            f"scale (0 to {top:.3g}). The class token's share is left out of the maps and given in each title. Each "
            "layer's attention can go somewhere else: a patch token gathers what it needs from the whole picture, "
            "which is why a later map of the words (cross-attention) can light up a patch beside an object.")
    unit = "attention weight (share, 0–1)" if method == "attention" else "share of attention flow (0–1)"
    labels = [f"layer {i} · class token {percent(float(x))}" for i, x in enumerate(extra_share)]
    title_text = (f"Inside the ViT: where {query} looks" if method == "attention"
                  else f"Inside the ViT: where {query}'s representation came from (rollout)")
    fig = map_grid(image, maps, labels, title_text, text, opacity, colorscale, columns=min(L, 2), vmax=top, unit=unit)
    if cell is not None:
        W, H = shown_image(image, GRID_SIDE).size
        r, c = cell
        for i in range(L):
            axis = "" if i == 0 else str(i + 1)
            for shape in outline(c * W / gw, (c + 1) * W / gw, r * H / gh, (r + 1) * H / gh, f"x{axis}", f"y{axis}"):
                fig.add_shape(shape)
    return fig

