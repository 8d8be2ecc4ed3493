"""Every figure of the app, as pure functions: data in, a plotly figure out.

Each figure has a title and a plain-language description of what it shows (an alt text, read with
`description(fig)`; the app shows it under the chart and passes it to the browser as `alt`). Nothing
here calls the model or imports streamlit, so the figures are tested without a browser.

Colour scales are colour-blind safe and perceptually uniform (viridis, cividis); categorical
colours come from the Okabe–Ito palette.
"""

from __future__ import annotations

import base64
import html
import io
import math
import threading
import weakref
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from PIL import Image, ImageDraw

from . import maps as _maps
from . import render

COLORSCALES = ("viridis", "cividis")
# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GREY = "#9a9a9a"
DISPLAY_SIDE = 320  # images are shown (and sent to the browser) at most this many pixels wide


def description(fig: go.Figure) -> str:
    """The figure's plain-language description (its alt text)."""
    meta = fig.layout.meta
    return meta.get("description", "") if isinstance(meta, dict) else ""


def title(fig: go.Figure) -> str:
    return fig.layout.title.text or ""


def _layout(title_text: str, text: str, height: int | None = None, **more) -> dict:
    """A figure's layout: its title, its description (alt text) in `meta`, and `more`."""
    layout = {"title": {"text": title_text, "x": 0.0, "xanchor": "left"}, "meta": {"description": text},
              "margin": {"l": 10, "r": 10, "t": 60, "b": 10}, **more}
    if height:
        layout["height"] = height
    return layout


def _finish(fig: go.Figure, title_text: str, text: str, height: int | None = None) -> go.Figure:
    fig.update_layout(_layout(title_text, text, height))
    return fig


def _clean(values) -> list:
    """Floats for plotly, NaN -> None (a gap, never a fake zero)."""
    out = []
    for v in values:
        v = None if v is None else float(v)
        out.append(None if v is None or math.isnan(v) else v)
    return out


def percent(v) -> str:
    """A share as a percentage; decimals where rounding would claim all or nothing (0.997 is 99.7%, not 100%)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    pct = Decimal(repr(float(v))) * 100  # from the decimal the share prints as: 0.945 is 94.5, not 94.4999…
    for places in range(4):  # as many decimals as it takes not to print a share between 0 and 1 as 0 % or 100 %
        shown = pct.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        if not (0 < v < 1 and shown in (0, 100)):
            break
    return f"{shown}%"


# ------------------------------------------------------------------------------------------------
# Images in figures. An image goes to the browser as a PNG/JPEG data URI (`go.Image(source=...)`,
# ~10 KB) rather than as pixel lists (`z=`, ~250 KB of JSON per panel), and the resized image is
# remembered per image object. A map is drawn onto the image here, by vizcap.render.overlay (the
# renderer of Play, the PNG and the GIF too), not by plotly's own smoothing, so that a map looks the
# same in every view; an invisible heatmap on top gives the hover values and the colour bar.

_SOURCES: dict[tuple[int, str], tuple[weakref.ref, object]] = {}
_SOURCES_KEPT = 64
_SOURCES_LOCK = threading.Lock()  # Streamlit sessions draw figures from several threads


def _remembered(image: Image.Image, kind: str, make):
    """make() computed once per live image object and `kind` (ids of dead objects are reused, so
    the entry also holds a weak reference to check it is the same object)."""
    with _SOURCES_LOCK:
        entry = _SOURCES.get((id(image), kind))
    if entry is not None and entry[0]() is image:
        return entry[1]
    value = make()
    try:
        ref = weakref.ref(image)
    except TypeError:  # not weak-referenceable: computed every time
        return value
    with _SOURCES_LOCK:
        for key in [k for k, v in _SOURCES.items() if v[0]() is None]:  # forget images that are gone
            del _SOURCES[key]
        while len(_SOURCES) >= _SOURCES_KEPT:
            del _SOURCES[next(iter(_SOURCES))]
        _SOURCES[(id(image), kind)] = (ref, value)
    return value


def shown_image(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """`image` in RGB as figures show it: at most `side` pixels on its long side (bilinear).
    Remembered per live image object: an image must not be drawn on in place once it was shown."""
    def make() -> Image.Image:
        shown = image.convert("RGB")
        scale = min(1.0, side / max(shown.size))
        if scale < 1.0:
            shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))),
                                 Image.BILINEAR)
        return shown

    return _remembered(image, f"shown{side}", make)


def _data_uri(shown: Image.Image) -> str:
    """PNG (lossless) when the picture has few colours like a ShapeScene, JPEG for photographs and overlays."""
    buf = io.BytesIO()
    if shown.getcolors(256) is not None:
        shown.save(buf, "PNG", optimize=False)
        mime = "image/png"
    else:
        shown.save(buf, "JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_source(image: Image.Image) -> tuple[str, int, int]:
    """(data URI, width, height) of `image` as figures show it (see shown_image), encoded once per
    live image object."""
    def make() -> tuple[str, int, int]:
        shown = shown_image(image)
        return _data_uri(shown), shown.width, shown.height

    return _remembered(image, "source", make)


def image_pixels(trace: go.Image) -> np.ndarray:
    """The pixels [H, W, 3] an image trace shows (decoded from its data URI, or its `z`)."""
    if trace.source:
        data = base64.b64decode(trace.source.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.asarray(trace.z)


def _image_and_map(image: Image.Image, heatmap: np.ndarray, opacity: float, axis: str = "",
                   coloraxis: str = "coloraxis", name: str = "", colorscale: str = "viridis",
                   top: float | None = None, side: int = DISPLAY_SIDE) -> list[dict]:
    """Two traces on the axes x<axis>/y<axis>: the image with the gh×gw map drawn over it by
    vizcap.render.overlay (colour scale 0..top, top defaulting to the map's maximum), and the map
    itself as an invisible heatmap stretched over it cell by cell (cell (r, c) covers rows r·H/gh…),
    for the hover values and the colour bar."""
    heatmap = np.asarray(heatmap, dtype=float)
    shown = shown_image(image, side)
    W, H = shown.size
    top = float(top) if top is not None else float(heatmap.max()) if heatmap.size else 1.0
    picture = render.overlay(shown, heatmap, alpha=opacity, cmap=colorscale, vmax=max(top, 1e-12))
    gh, gw = heatmap.shape
    xy = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    label = _t(name)
    return [
        {"type": "image", "source": _data_uri(picture), "hoverinfo": "skip", "name": "image", **xy},
        {"type": "heatmap", "z": heatmap, "x0": W / gw / 2 - 0.5, "dx": W / gw, "y0": H / gh / 2 - 0.5, "dy": H / gh,
         "opacity": 0.0, "coloraxis": coloraxis, "name": label,
         "hovertemplate": "row %{customdata[0]}, column %{customdata[1]}<br>value %{z:.3f}<extra>" + label + "</extra>",
         "customdata": np.stack([rows, cols], -1), **xy},
    ]


def _image_axes(axis: str = "", x_domain=(0.0, 1.0), y_domain=(0.0, 1.0)) -> dict:
    """Hidden axes for an image panel: square pixels, y downwards."""
    return {f"xaxis{axis}": {"visible": False, "constrain": "domain", "domain": _span(*x_domain), "anchor": f"y{axis}"},
            f"yaxis{axis}": {"visible": False, "scaleanchor": f"x{axis}", "autorange": "reversed",
                             "constrain": "domain", "domain": _span(*y_domain), "anchor": f"x{axis}"}}


def _span(lo: float, hi: float) -> list[float]:
    """An axis domain inside [0, 1] (sums of fractions can land a hair outside it)."""
    return [min(1.0, max(0.0, round(lo, 9))), min(1.0, max(0.0, round(hi, 9)))]


def _panel_title(text: str, x: float, y: float) -> dict:
    """A small multiple's title, centred above its panel (x, y in figure fractions)."""
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": "center",
            "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}


def plotly_colorscale(name: str) -> list[list]:
    """vizcap.render's colour map `name` as a plotly colour scale: the colour bar shows exactly the
    colours the overlay is drawn with."""
    anchors = render.COLORMAPS[name]
    k = len(anchors) - 1
    return [[i / k, "rgb(%d,%d,%d)" % c] for i, c in enumerate(anchors)]


def _colour_axis(colorscale: str, top: float, title_text: str = "weight") -> dict:
    return {"colorscale": plotly_colorscale(colorscale), "cmin": 0.0, "cmax": max(top, 1e-12),
            "colorbar": {"title": {"text": _t(title_text), "side": "right"}, "thickness": 12}}


def _t(text) -> str:
    """Text for plotly (titles, labels, hover): plotly reads <b>, <br>… as markup and turns &lt;,
    &gt;, &amp; back into characters, so a word such as "<b>" or "a&b" must be escaped to be shown."""
    return html.escape(str(text), quote=False)


# ------------------------------------------------------------------------------------------------
# Units and colour ranges of maps

def map_unit(method: str) -> str:
    """The raw unit of a map method, as the engine states it (vizcap.maps.UNITS)."""
    return _maps.UNITS.get(method, "weight")


def _is_share(unit: str) -> bool:
    return "0–1" in unit or "0-1" in unit


def map_colour_range(maps: np.ndarray, method: str, normalize: str = "none", sinks: bool = False) -> tuple[float, str]:
    """(top of the colour scale, colour-bar label) for maps [..] of `method` under `normalize`.

    none: the raw unit's own range: 0..1 for methods whose unit is a share (a weak map stays weak);
          methods without a bounded unit (relevancy) have no natural top, so theirs is the largest
          value of these maps. max, global: 0..1 (each map or the caption divided by its peak).
    sum:  0..the largest share any cell holds, so that words stay comparable."""
    maps = np.asarray(maps, dtype=float)
    peak = float(np.nanmax(maps)) if maps.size else 0.0
    if normalize not in _maps.NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(_maps.NORMALIZATIONS)}; got {normalize!r}")
    label = _maps.unit(method, normalize) if method in _maps.UNITS else map_unit(method)
    if normalize == "none":
        top = max(1.0, peak) if _is_share(map_unit(method)) else peak
    elif normalize == "sum":
        top = peak
    else:
        top = 1.0
    if sinks:
        label += ", minus each cell's median over the caption"
    return (top if top > 0 else 1.0), label


# ------------------------------------------------------------------------------------------------
# Attention maps


def attention_overlay(image: Image.Image, heatmap: np.ndarray, word: str = "", opacity: float = 0.5,
                      colorscale: str = "viridis", vmax: float | None = None, method: str = "cross_attention",
                      height: int = 430, unit: str | None = None) -> go.Figure:
    """One word's map (gh×gw) over the image. vmax fixes the top of the colour scale (default: the
    map's own maximum), so that maps of different words can be compared; unit labels the colour bar
    (default: the method's raw unit; see map_colour_range for both)."""
    heatmap = np.asarray(heatmap, dtype=float)
    top = float(vmax) if vmax is not None else float(heatmap.max()) if heatmap.size else 1.0
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape) if heatmap.size else (0, 0)
    gh, gw = heatmap.shape
    unit = unit or map_unit(method)
    text = (f"The image with a {gh}×{gw} grid of {method.replace('_', ' ')} values for the word '{word}' laid "
            f"over it; brighter cells weighed more when the model wrote that word (colour scale 0 to {top:.3g}, "
            f"{unit}). The hottest cell, {float(heatmap.max()) if heatmap.size else 0:.3g}, is in row "
            f"{r + 1} of {gh}, column {c + 1} of {gw} ({_where(r, c, gh, gw)}).")
    layout = _layout(f"Where the model looked: “{_t(word)}”", text, height,
                     coloraxis=_colour_axis(colorscale, top, unit), **_image_axes())
    return go.Figure(data=_image_and_map(image, heatmap, opacity, name=word, colorscale=colorscale, top=top),
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
        axes.update(_image_axes(axis, (x0, x0 + width), (y1 - height, y1)))
        panel = heatmaps[i] if shared_scale else heatmaps[i] / max(heatmaps[i].max(), 1e-12)
        traces += _image_and_map(image, panel, opacity, axis, name=labels[i], colorscale=colorscale, top=top,
                                 side=GRID_SIDE)
        titles.append(_panel_title(_t(labels[i]), x0 + width / 2, y1))
    layout = _layout(title_text, text, 60 + 230 * rows, coloraxis=_colour_axis(colorscale, top, unit),
                     annotations=titles, **axes)
    return go.Figure(data=traces, layout=layout)


def heads_grid(image: Image.Image, heatmaps: np.ndarray, word: str, layer: int, method: str = "cross_attention",
               opacity: float = 0.5, colorscale: str = "viridis", raw: np.ndarray | None = None,
               vmax: float | None = None, unit: str | None = None, normalize: str = "none") -> go.Figure:
    """Every head of one layer, for one word: heatmaps [heads, gh, gw] as shown (normalised with
    `normalize`), raw [heads, gh, gw] the same maps before normalisation (default: heatmaps). Which
    head has the strongest single cell is read from the raw maps: after "max" normalisation every
    head peaks at 1."""
    heatmaps = np.asarray(heatmaps, dtype=float)
    raw = heatmaps if raw is None else np.asarray(raw, dtype=float)
    n = len(heatmaps)
    peak = [float(h.max()) for h in raw] if raw.size else []
    strongest = int(np.argmax(peak)) if peak else 0
    raw_unit = map_unit(method)
    scale = {"none": "on one shared colour scale",
             "max": "each head's map divided by its own peak (so every panel reaches the top colour)",
             "sum": "each head's map scaled to sum to 1, on one shared colour scale",
             "global": "each head's maps divided by that head's peak over the caption"}.get(normalize, "")
    text = (f"{n} panels, one per attention head of decoder layer {layer}, each showing that head's "
            f"{method.replace('_', ' ')} map for the word '{word}', {scale}. Heads specialise: some look at the "
            f"object, some spread out or park their attention on a few cells. "
            + (f"Head {strongest} has the strongest single cell before normalisation ({peak[strongest]:.3g}, "
               f"{raw_unit})." if peak else ""))
    return map_grid(image, heatmaps, [f"head {h}" for h in range(n)], f"All heads of layer {layer} for “{_t(word)}”",
                    text, opacity, colorscale, vmax=vmax, unit=unit or map_colour_range(heatmaps, method, normalize)[1])


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


# ------------------------------------------------------------------------------------------------
# Inside the vision transformer


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
    layout = _layout("The image becomes a sequence of patch tokens", text, 420, **_image_axes())
    return go.Figure(data=[{"type": "image", "source": _data_uri(canvas), "hoverinfo": "skip"}], layout=layout)


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
        lines.append({"type": "rect", "x0": c * W / gw, "x1": (c + 1) * W / gw, "y0": r * H / gh, "y1": (r + 1) * H / gh,
                      "line": {"color": OKABE_ITO[1], "width": 3}})
    where = "no patch chosen" if selected is None else f"row {selected[0] + 1}, column {selected[1] + 1} outlined"
    text = (f"The picture with its {gh}×{gw} patch grid; click a patch to see where its token looks inside the "
            f"vision transformer ({where}).")
    points = {"type": "scatter", "x": xs.tolist(), "y": ys.tolist(), "mode": "markers",
              "customdata": np.stack([rows.ravel(), cols.ravel()], -1).tolist(),
              "marker": {"size": max(8, min(W / gw, H / gh) * 0.8), "symbol": "square", "color": "rgba(255,255,255,0.01)"},
              "hovertemplate": "row %{customdata[0]}, column %{customdata[1]}<extra>click to choose</extra>",
              "name": "patches"}
    image_trace = {"type": "image", "source": image_source(image)[0], "hoverinfo": "skip"}
    layout = _layout("Choose a patch", text, 360, shapes=lines, showlegend=False, dragmode=False, clickmode="event+select",
                     **_image_axes())
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
            fig.add_shape(type="rect", xref=f"x{axis}", yref=f"y{axis}", x0=c * W / gw, x1=(c + 1) * W / gw,
                          y0=r * H / gh, y1=(r + 1) * H / gh, line={"color": OKABE_ITO[1], "width": 2})
    return fig


def word_prefix_heatmap(tokens: list[str], to_prefix: np.ndarray, colorscale: str = "viridis") -> go.Figure:
    """How much each written word attends to each prefix token: to_prefix [T, P] (self-attention
    weights, mean over the chosen layers and heads). The rest of each row's attention goes to <bos>
    and earlier words."""
    to_prefix = np.asarray(to_prefix, dtype=float)
    T, P = to_prefix.shape if to_prefix.ndim == 2 else (0, 0)
    rest = 1.0 - to_prefix.sum(1) if T else np.zeros(0)
    z = np.concatenate([to_prefix, rest[:, None]], 1) if T else np.zeros((0, P + 1))
    x = [f"prefix {p}" for p in range(P)] + ["<bos> & words"]
    y = [f"{j + 1}. {_t(w)}" for j, w in enumerate(tokens)]
    share = float(to_prefix.sum(1).mean()) if T else float("nan")
    text = (f"A table of colours: one row per written word, one column per prefix token (and a last column "
            f"for <bos> and the earlier words). Each row shows how the word's self-attention is shared out; "
            f"on average {percent(share)} of it goes to the image's prefix tokens.")
    heat = {"type": "heatmap", "z": z, "x": x, "y": y, "colorscale": colorscale, "zmin": 0, "zmax": 1,
            "hovertemplate": "%{y} → %{x}: %{z:.2f}<extra></extra>",
            "colorbar": {"title": {"text": "share"}, "thickness": 12}}
    return go.Figure(data=[heat], layout=_layout("How much each word attends to each prefix token", text,
                                                 120 + 28 * max(T, 3), yaxis={"autorange": "reversed"}))


def alternatives_bar(top_tokens: list[str], top_probs, chosen: str, step: int) -> go.Figure:
    """The model's most likely next words at one step; the one it wrote is highlighted."""
    probs = [float(p) for p in top_probs]
    colours = [OKABE_ITO[0] if t == chosen else GREY for t in top_tokens]
    p_chosen = probs[top_tokens.index(chosen)] if chosen in top_tokens else float("nan")
    runner = next(((t, p) for t, p in zip(top_tokens, probs) if t != chosen), (None, float("nan")))
    text = (f"Horizontal bars of the {len(probs)} most likely words at step {step + 1}. The written word "
            f"'{chosen}' (blue) had probability {p_chosen:.2f}; the runner-up "
            f"'{runner[0]}' had {runner[1]:.2f}.")
    bar = {"type": "bar", "x": probs[::-1], "y": [_t(t) for t in top_tokens][::-1], "orientation": "h",
           "marker": {"color": colours[::-1]}, "text": [f"{p:.2f}" for p in probs][::-1], "textposition": "auto",
           "hovertemplate": "%{y}: %{x:.3f}<extra></extra>"}
    return go.Figure(data=[bar], layout=_layout(f"Step {step + 1}: “{_t(chosen)}” vs others", text,
                                                90 + 26 * len(probs),
                                                xaxis={"range": [0, 1], "title": {"text": "probability"}}))


def step_probabilities(runs: dict[str, tuple[list[str], list[float]]]) -> go.Figure:
    """One row per decoding run: the probability the model gave each word it wrote."""
    names = list(runs)
    rows = max(1, len(names))
    gap = min(0.45 / rows, 1 / (rows - 1) - 0.01) if rows > 1 else 0.0
    height = (1 - gap * (rows - 1)) / rows
    traces, axes, titles, lowest = [], {}, [], []
    for i, name in enumerate(names):  # one row of axes per run, laid out here (make_subplots is slow)
        tokens, probs = runs[name]
        probs = [float(p) for p in probs]
        axis = "" if i == 0 else str(i + 1)
        y1 = 1 - i * (height + gap)
        axes[f"xaxis{axis}"] = {"anchor": f"y{axis}", "domain": [0.0, 1.0]}
        axes[f"yaxis{axis}"] = {"anchor": f"x{axis}", "domain": _span(y1 - height, y1), "range": [0, 1],
                                "title": {"text": "p"}}
        traces.append({"type": "bar", "x": [f"{j + 1}. {_t(t)}" for j, t in enumerate(tokens)], "y": probs,
                       "marker": {"color": OKABE_ITO[i % len(OKABE_ITO)]}, "name": name, "showlegend": False,
                       "text": [f"{p:.2f}" for p in probs], "textposition": "auto",
                       "hovertemplate": "%{x}: %{y:.3f}<extra>" + _t(name) + "</extra>",
                       "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
        titles.append(_panel_title(_t(name), 0.5, y1))
        if probs:
            j = int(np.argmin(probs))
            lowest.append(f"{name}: least sure of '{tokens[j]}' ({probs[j]:.2f})")
    text = ("One bar chart per decoding strategy: each bar is a word the strategy wrote, its height the "
            "probability the model gave that word at that step. " + "; ".join(lowest) + ".")
    return go.Figure(data=traces, layout=_layout("How sure the model was of each word", text, 80 + 190 * rows,
                                                 annotations=titles, **axes))


BEAM_TREE_HELP = ("<bos> marks the start of the caption and <eos> the model's choice to stop. log p is the sum of "
                  "the log-probabilities of the words so far (0 would be certain; the more negative, the less "
                  "likely). A finished caption's score is its log p divided by its length to the power of the "
                  "length penalty, so that long captions are not punished for every extra word; the best score wins.")


def _tree_layout(tree: list[dict]) -> list[list[float]]:
    """y position of every live hypothesis, step by step: each step's hypotheses ordered by their
    parent's position (then by score), so that children sit next to their parent and no two edges cross."""
    ys: list[list[float]] = []
    for t, step in enumerate(tree):
        parent_y = [ys[t - 1][p] if t and p < len(ys[t - 1]) else 0.0 for p in step["parents"]]
        order = sorted(range(len(step["tokens"])), key=lambda i: (parent_y[i], i))
        y = [0.0] * len(order)
        for rank, i in enumerate(order):
            y[i] = float(rank)
        ys.append(y)
    return ys


def beam_tree(tree: list[dict], chosen_ids: list[int] | None = None, ended: bool = False) -> go.Figure:
    """The search tree, read left to right: one column per step, one dot per hypothesis kept at that
    step, next to the hypothesis it extends (edges never cross). Hypotheses dropped at the next step are
    faded; hypotheses that ended (<eos>) sit in their own lane below the live ones (diamonds), those cut
    at the word limit are squares; the chosen caption is the orange line."""
    ys = _tree_layout(tree)
    width = max((len(s["tokens"]) for s in tree), default=1)
    lane = width + 0.6  # the ended hypotheses' own lane, below every live one
    xs, yv, labels, hovers, colours, text_colours = [0], [0.0], [_t("<bos>")], ["start of the caption (<bos>)"], \
        [OKABE_ITO[0]], ["#222"]
    edge_x, edge_y, faded_x, faded_y = [], [], [], []
    end_x, end_y, end_hover, cut_x, cut_y = [], [], [], [], []
    n_dropped = 0
    last = len(tree) - 1
    for t, step in enumerate(tree):
        nxt = tree[t + 1] if t < last else None
        for i, (tok, parent, score) in enumerate(zip(step["tokens"], step["parents"], step["scores"])):
            has_child = nxt is not None and (i in nxt["parents"] or any(f["parent"] == i for f in nxt.get("finished", [])))
            cut = t == last and step.get("truncated", False)
            kept = has_child or cut
            n_dropped += not kept
            py = ys[t - 1][parent] if t else 0.0
            xs.append(t + 1)
            yv.append(ys[t][i])
            labels.append(_t(tok))
            state = ("cut at the word limit" if cut else "kept" if kept else "dropped: not among the best at the next step")
            hovers.append(f"step {t + 1}: '{_t(tok)}'<br>log p so far = {score:.3f}<br>{state}")
            colours.append(OKABE_ITO[0] if kept else "#c9c9c9")
            text_colours.append("#222" if kept else "#b0b0b0")
            (edge_x if kept else faded_x).extend([t, t + 1, None])
            (edge_y if kept else faded_y).extend([py, ys[t][i], None])
            if cut:
                cut_x.append(t + 1)
                cut_y.append(ys[t][i])
        for k, fin in enumerate(step.get("finished", [])):
            py = ys[t - 1][fin["parent"]] if t and fin["parent"] < len(ys[t - 1]) else 0.0
            y = lane + 0.45 * k
            end_x.append(t + 1)
            end_y.append(y)
            end_hover.append(f"step {t + 1}: ended (<eos>)<br>log p {fin['logp']:.3f}, score {fin['score']:.3f}"
                             .replace("<eos>", _t("<eos>")))
            edge_x += [t, t + 1, None]
            edge_y += [py, y, None]
    path_x, path_y = _chosen_path(tree, ys, chosen_ids or [], ended, lane)
    traces = [{"type": "scatter", "x": faded_x, "y": faded_y, "mode": "lines", "line": {"color": "#ececec", "width": 1},
               "hoverinfo": "skip", "showlegend": False},
              {"type": "scatter", "x": edge_x, "y": edge_y, "mode": "lines", "line": {"color": "#b9b9b9", "width": 1},
               "hoverinfo": "skip", "showlegend": False}]
    if path_x:
        traces.append({"type": "scatter", "x": path_x, "y": path_y, "mode": "lines",
                       "line": {"color": OKABE_ITO[1], "width": 4}, "name": "chosen caption", "hoverinfo": "skip"})
    traces.append({"type": "scatter", "x": xs, "y": yv, "mode": "markers+text", "text": labels,
                   "textposition": "top center", "textfont": {"color": text_colours, "size": 11},
                   "marker": {"size": 9, "color": colours}, "hovertext": hovers, "hoverinfo": "text",
                   "name": "live hypothesis (grey: dropped)"})
    if cut_x:
        traces.append({"type": "scatter", "x": cut_x, "y": cut_y, "mode": "markers", "hoverinfo": "skip",
                       "marker": {"size": 12, "symbol": "square-open", "color": OKABE_ITO[3]},
                       "name": "cut at the word limit"})
    if end_x:
        traces.append({"type": "scatter", "x": end_x, "y": end_y, "mode": "markers",
                       "marker": {"size": 10, "symbol": "diamond", "color": OKABE_ITO[5]},
                       "hovertext": end_hover, "hoverinfo": "text", "name": _t("ended (<eos>)")})
    text = (f"A tree read left to right: each column is a decoding step, each dot a hypothesis kept at that step "
            f"(up to {width}), labelled with its newest word and drawn next to the hypothesis it extends. "
            f"{n_dropped} hypotheses were dropped at the next step (faded). Diamonds in the bottom lane are "
            f"hypotheses that ended, {sum(len(s.get('finished', [])) for s in tree)} in all (hover for their "
            f"score); the orange line is the caption that was chosen. " + BEAM_TREE_HELP)
    bottom = max(end_y, default=lane) + 0.6
    layout = _layout("How the search grew: every hypothesis it kept, step by step", text,
                     200 + 34 * (bottom + 1),
                     yaxis={"visible": False, "range": [bottom, -0.8]},  # reversed: the best at the top
                     xaxis={"title": {"text": "step (words written)"}, "dtick": 1, "range": [-0.5, len(tree) + 0.7]},
                     legend={"orientation": "h", "y": -0.18},
                     annotations=[{"x": 0, "y": lane, "xref": "x", "yref": "y", "text": _t("ended (<eos>) →"),
                                   "showarrow": False, "xanchor": "left", "font": {"size": 11, "color": OKABE_ITO[5]}}]
                     if end_x else [])
    return go.Figure(data=traces, layout=layout)


def _chosen_path(tree: list[dict], ys: list[list[float]], ids: list[int], ended: bool,
                 lane: float) -> tuple[list, list]:
    xs, yv, prev = [0], [0.0], 0
    for t, tok in enumerate(ids):
        if t >= len(tree):
            return [], []
        step = tree[t]
        match = [i for i, (tid, par) in enumerate(zip(step["token_ids"], step["parents"]))
                 if tid == tok and (t == 0 or par == prev)]
        if not match:
            return [], []
        prev = match[0]
        xs.append(t + 1)
        yv.append(ys[t][prev])
    if ended and len(ids) < len(tree):
        for k, fin in enumerate(tree[len(ids)].get("finished", [])):
            if fin["parent"] == prev or not ids:
                xs.append(len(ids) + 1)
                yv.append(lane + 0.45 * k)
                break
    return xs, yv


def distribution_reshape(words: list[str], logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                         context: str = "", n_show: int = 12, log_scale: bool = False) -> go.Figure:
    """The next-word distribution before (grey) and after (blue) temperature, top-k and top-p, as
    `vizcap.decoding.filter_logits` applies them when sampling. logits [V] over `words` (-inf for
    tokens that can never be chosen)."""
    import torch

    from .decoding import filter_logits

    logits = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    before = torch.softmax(logits, -1).numpy()
    after = torch.softmax(filter_logits(logits[None], temperature, top_k, top_p)[0], -1).numpy()
    order = np.argsort(-before, kind="stable")[: max(1, min(n_show, len(words)))]
    names = [_t(words[i]) for i in order]
    traces = [{"type": "bar", "x": names, "y": before[order], "name": "model (T = 1)", "marker": {"color": GREY},
               "hovertemplate": "%{x}: %{y:.3f}<extra>model</extra>"},
              {"type": "bar", "x": names, "y": after[order], "name": "what sampling draws from",
               "marker": {"color": OKABE_ITO[0]}, "hovertemplate": "%{x}: %{y:.3f}<extra>reshaped</extra>"}]
    if log_scale:  # the tail that top-k and top-p cut becomes visible
        ticks = [1, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6]
        yaxis = {"type": "log", "range": [-6, 0.05], "tickvals": ticks,
                 "ticktext": ["1", "0.1", "0.01", "0.001", "10⁻⁴", "10⁻⁵", "10⁻⁶"],
                 "title": {"text": "probability (log scale)"}}
    else:
        yaxis = {"range": [0, 1], "title": {"text": "probability"}}
    kept = int((after > 0).sum())
    settings = f"temperature {temperature:g}, top-k {top_k or 'off'}, top-p {top_p:g}"
    text = (f"Paired bars for the {len(order)} likeliest next words{' after ' + repr(context) if context else ''}: "
            f"grey is the model's own distribution, blue the one sampling draws from with {settings}. "
            f"{kept} of {len(words)} words keep a chance; the top word's share goes from "
            f"{before[order[0]]:.2f} to {after[order[0]]:.2f}. Temperature below 1 sharpens the distribution, above 1 "
            f"flattens it; top-k and top-p cut the tail.")
    heading = f"The next word after “{_t(context)}”" if context else "The next word"
    return go.Figure(data=traces, layout=_layout(heading + f" ({settings})", text, 380, yaxis=yaxis, barmode="group",
                                                 legend={"orientation": "h", "y": -0.25}))


# ------------------------------------------------------------------------------------------------
# Model anatomy


def architecture(shapes: dict) -> go.Figure:
    """The captioner as boxes and arrows, labelled with the live tensor shapes of the loaded model.
    `shapes` comes from `vizcap.anatomy.trace` (keys: encoder, pixels, features, grid, memory, prefix,
    mapper_attention, decoder_input, logits, decoder_layers, decoder_heads, mode)."""
    mode = shapes["mode"]
    has_prefix = mode != "cross"
    has_cross = mode != "prefix"
    fmt = lambda s: "×".join(str(v) for v in s)  # noqa: E731
    gh, gw = shapes["grid"]
    boxes = [
        ("image", 0.0, 0.5, f"<b>Image</b><br>{fmt(shapes['pixels'])}<br>squashed to {shapes['pixels'][-1]} px"),
        ("encoder", 1.0, 0.5, f"<b>Encoder</b><br>{shapes['encoder']}<br>{fmt(shapes['features'])}<br>{gh}×{gw} grid"),
        ("memory", 2.0, 0.5, f"<b>Memory</b><br>{fmt(shapes['memory'])}<br>project + position"),
    ]
    if has_prefix:
        boxes.append(("mapper", 3.0, 0.85, f"<b>Mapper</b><br>{shapes['prefix'][1]} queries<br>attn {fmt(shapes['mapper_attention'])}"))
        boxes.append(("prefix", 4.0, 0.85, f"<b>Prefix</b><br>{fmt(shapes['prefix'])}"))
    boxes.append(("decoder", 5.0, 0.5, f"<b>GPT-2 decoder</b><br>{shapes['decoder_layers']} layers × "
                                        f"{shapes['decoder_heads']} heads<br>input {fmt(shapes['decoder_input'])}"))
    boxes.append(("words", 5.0, 0.05, "<b>Words so far</b><br>&lt;bos&gt; w1 w2 …"))
    boxes.append(("logits", 6.0, 0.5, f"<b>Next-word logits</b><br>{fmt(shapes['logits'])}"))
    pos = {name: (x, y) for name, x, y, _ in boxes}
    arrows = [("image", "encoder"), ("encoder", "memory"), ("words", "decoder"), ("decoder", "logits")]
    if has_prefix:
        arrows += [("memory", "mapper"), ("mapper", "prefix"), ("prefix", "decoder")]
    if has_cross:
        arrows.append(("memory", "decoder"))
    fig = go.Figure()
    for a, b in arrows:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if x1 == x0:  # vertical: from the edge of one box to the edge of the other
            sign = 1 if y1 > y0 else -1
            head, tail = (x1, y1 - sign * 0.15), (x0, y0 + sign * 0.15)
        else:
            head, tail = (x1 - 0.43, y1), (x0 + 0.43, y0)
        fig.add_annotation(x=head[0], y=head[1], ax=tail[0], ay=tail[1], xref="x", yref="y", axref="x", ayref="y",
                           showarrow=True, arrowhead=3, arrowwidth=1.6, arrowcolor="#555", text="")
        if (a, b) == ("memory", "decoder"):
            fig.add_annotation(x=3.5, y=0.45, text="<i>cross-attention</i>", showarrow=False,
                               font={"size": 12, "color": "#555"})
    for name, x, y, label in boxes:
        colour = OKABE_ITO[{"image": 4, "encoder": 0, "memory": 4, "mapper": 2, "prefix": 2, "decoder": 1,
                            "words": 6, "logits": 3}[name]]
        fig.add_shape(type="rect", x0=x - 0.42, x1=x + 0.42, y0=y - 0.14, y1=y + 0.14, line={"color": colour, "width": 2},
                      fillcolor=colour, opacity=0.18, layer="below")
        fig.add_annotation(x=x, y=y, text=label, showarrow=False, font={"size": 12, "color": "#222"})
    fig.update_xaxes(visible=False, range=[-0.5, 6.5])
    fig.update_yaxes(visible=False, range=[-0.15, 1.05])
    fig.update_layout(plot_bgcolor="white")
    N = gh * gw
    text = (f"A block diagram, left to right. The image ({fmt(shapes['pixels'])}) goes through the encoder "
            f"{shapes['encoder']}, which cuts it into a {gh}×{gw} grid of {N} feature vectors "
            f"({fmt(shapes['features'])}); they are projected to the memory {fmt(shapes['memory'])}. "
            + (f"The mapper's {shapes['prefix'][1]} learned queries read the memory and become the prefix "
               f"{fmt(shapes['prefix'])}, placed before the words. " if has_prefix else "")
            + ("The decoder also reads the memory directly through cross-attention. " if has_cross else "")
            + f"The GPT-2 decoder ({shapes['decoder_layers']} layers, {shapes['decoder_heads']} heads) turns its "
            f"input {fmt(shapes['decoder_input'])} into next-word logits {fmt(shapes['logits'])}.")
    return _finish(fig, "The captioner, with the shapes of its tensors for this image", text, height=440)


def aux_predictions(image: Image.Image, classes: np.ndarray, names: list[str], head: str) -> go.Figure:
    """What an auxiliary dense head predicts for each grid cell (classes [gh, gw] of indices into names)."""
    from .scenes import COLOURS

    classes = np.asarray(classes)
    gh, gw = classes.shape
    n = len(names)
    if all(name in COLOURS for name in names[1:]):  # the colour head: each class in its own colour
        palette = ["#ffffff"] + ["#%02x%02x%02x" % COLOURS[name] for name in names[1:]]
    else:
        palette = ["#ffffff"] + [OKABE_ITO[k % len(OKABE_ITO)] for k in range(n - 1)]
    scale = []
    for k in range(n):
        scale += [[k / n, palette[k]], [(k + 1) / n, palette[k]]]
    source, W, H = image_source(image)
    fig = go.Figure(layout=_image_axes())
    fig.add_trace(go.Image(source=source, hoverinfo="skip"))
    z = np.where(classes > 0, classes + 0.5, np.nan)  # background cells stay transparent
    fig.add_trace(go.Heatmap(z=z, x0=W / gw / 2 - 0.5, dx=W / gw, y0=H / gh / 2 - 0.5, dy=H / gh,
                             zmin=0, zmax=n, colorscale=scale, opacity=0.6, hoverongaps=False,
                             customdata=np.array(names, dtype=object)[classes],
                             hovertemplate="%{customdata}<extra></extra>",
                             colorbar={"tickvals": [k + 0.5 for k in range(n)], "ticktext": names, "thickness": 12}))
    found = sorted({names[k] for k in classes.ravel() if k})
    text = (f"The image with each of its {gh}×{gw} cells coloured by the {head} that the auxiliary head "
            f"predicts for it (cells it calls background are left clear). Found: {', '.join(found) or 'nothing but background'}.")
    return _finish(fig, f"Auxiliary head “{head}”: one label per cell", text, height=380)


# ------------------------------------------------------------------------------------------------
# Training and trust


def loss_curve(rows: list[dict]) -> go.Figure:
    """Training losses against the optimizer step, from a checkpoint's train_log.jsonl."""
    keys = [k for k in ("loss", "caption_loss", "aux_loss", "bind_loss", "attend_loss", "val_loss")
            if any(k in r for r in rows)]
    fig = go.Figure()
    for i, k in enumerate(keys):
        pts = [(r["step"], r[k]) for r in rows if "step" in r and isinstance(r.get(k), (int, float))]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=k.replace("_", " "),
                                 line={"color": OKABE_ITO[i % len(OKABE_ITO)], "width": 2}))
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="loss (cross-entropy, log scale)", type="log", dtick=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    steps = [r["step"] for r in rows if "step" in r]
    first = next((r.get("loss") for r in rows if "loss" in r), None)
    last = next((r.get("loss") for r in reversed(rows) if "loss" in r), None)
    text = (f"Lines (on a logarithmic scale) of the training losses over {max(steps) if steps else 0} optimizer steps "
            f"({', '.join(k.replace('_', ' ') for k in keys) or 'none logged'}). "
            + (f"The total loss fell from {first:.2f} to {last:.2f}. " if first is not None and last is not None else "")
            + "The caption loss is the cross-entropy of the next word; the aux loss that of the per-cell labels"
            + ("; the bind loss that of the bound prefix tokens' maps against their objects" if "bind_loss" in keys else "")
            + ("; the attend loss that of the decoder's attention at object words against the named object"
               if "attend_loss" in keys else "") + ".")
    return _finish(fig, "Training loss", text, height=360)


def _methods(result: dict, key: str) -> list[str]:
    return list(result.get(key, {}))


def pointing_game(result: dict) -> go.Figure:
    """Pointing-game hit rate per method (shape words and colour words) against chance."""
    methods = _methods(result, "pointing")
    shape = _clean(result["pointing"][m]["hit"] for m in methods)
    colour = _clean(result.get("pointing_colour_word", {}).get(m, {}).get("hit", float("nan")) for m in methods)
    chance = _clean([result["pointing"][m]["chance"] for m in methods][:1] or [float("nan")])[0]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=methods, y=shape, name="shape word", marker_color=OKABE_ITO[0],
                         text=[percent(v) for v in shape], textposition="auto"))
    fig.add_trace(go.Bar(x=methods, y=colour, name="colour word", marker_color=OKABE_ITO[2],
                         text=[percent(v) for v in colour], textposition="auto"))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color=OKABE_ITO[5])
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"chance ({percent(chance)})",
                                 line={"dash": "dash", "color": OKABE_ITO[5]}))
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(range=[0, 1], title_text="hottest cell on the object", tickformat=".0%")
    pairs = ", ".join(f"{m} {percent(v)}" for m, v in zip(methods, shape))
    text = (f"Bars per map method: how often the hottest cell of a word's map lies on the object the word names "
            f"(pointing game, {result.get('n_words', 0)} words in {result.get('n_scenes', 0)} held-out scenes). "
            f"Shape words: {pairs}. The dashed line is chance ({percent(chance)}): a map pointing at a random cell.")
    return _finish(fig, "Pointing game: hottest cell on the object?", text, height=380)


def mass_in_box(result: dict) -> go.Figure:
    methods = _methods(result, "mass_in_box")
    mass = _clean(result["mass_in_box"][m]["mass"] for m in methods)
    chance = _clean(result["mass_in_box"][m]["chance"] for m in methods)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=methods, y=mass, name="map mass on the object", marker_color=OKABE_ITO[0],
                         text=[percent(v) for v in mass], textposition="auto"))
    fig.add_trace(go.Bar(x=methods, y=chance, name="object's share of the image (chance)", marker_color=GREY,
                         text=[percent(v) for v in chance], textposition="auto"))
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    text = ("Bars per map method: the share of the map's total weight that falls on the named object (blue) "
            "against the object's share of the image (grey), which a flat map would score. "
            + ", ".join(f"{m} {percent(v)} vs {percent(c)}" for m, v, c in zip(methods, mass, chance)) + ".")
    return _finish(fig, "Mass in box: map weight on the object", text, height=360)


def sanity_check(result: dict) -> go.Figure:
    methods = _methods(result, "sanity_spearman")
    values = _clean(result["sanity_spearman"][m] for m in methods)
    colours = [OKABE_ITO[2] if v is not None and v < 0.5 else OKABE_ITO[5] for v in values]
    fig = go.Figure(go.Bar(x=methods, y=values, marker_color=colours, text=[_fmt(v) for v in values], textposition="auto"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#777", annotation_text="0.5", annotation_position="top left")
    fig.update_yaxes(range=[-1, 1], title_text="rank correlation with a scrambled model")
    text = ("Bars per map method: the rank correlation between the map of the trained model and the map of a copy "
            "whose mapper and decoder were re-initialised (same image, same caption). Low (green) means the map "
            "depends on what the model learned; high (orange) means it mostly reflects the image or the "
            "architecture. " + ", ".join(f"{m} {_fmt(v)}" for m, v in zip(methods, values)) + ".")
    return _finish(fig, "Sanity check: a scrambled model's map", text, height=340)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def deletion_insertion(result: dict, method: str) -> go.Figure:
    """Deletion and insertion curves of one method against a random order of the cells."""
    curves = result.get("curves", {})
    fractions = curves.get("fractions", [])
    c = curves.get(method, {})
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("Deletion (hottest first)", "Insertion (hottest first)"))
    for col, kind in ((1, "deletion"), (2, "insertion")):
        for suffix, colour, dash, name in (("map", OKABE_ITO[0], "solid", "map order"),
                                           ("random", GREY, "dash", "random order")):
            y = c.get(f"{kind}_{suffix}", [])
            auc = c.get(f"{kind}_{suffix}_auc", float("nan"))
            fig.add_trace(go.Scatter(x=fractions[: len(y)], y=_clean(y), mode="lines+markers",
                                     name=f"{kind}, {name} (area {_fmt(_clean([auc])[0])})", legendgroup=kind,
                                     line={"color": colour, "dash": dash}), row=1, col=col)
        fig.update_xaxes(title_text="fraction of cells", tickformat=".0%", row=1, col=col)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="probability of the word", row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.3})
    d_map, d_rand = c.get("deletion_map_auc", float("nan")), c.get("deletion_random_auc", float("nan"))
    i_map, i_rand = c.get("insertion_map_auc", float("nan")), c.get("insertion_random_auc", float("nan"))
    text = (f"Two line charts for the {method.replace('_', ' ')} maps. Left: the word's probability as more and more "
            f"cells are greyed out, hottest first (solid) or in random order (dashed); a faithful map makes it fall "
            f"faster than random (area {_fmt(_clean([d_map])[0])} vs {_fmt(_clean([d_rand])[0])}, lower is better). "
            f"Right: cells revealed on a grey image; faithful maps make it rise faster (area "
            f"{_fmt(_clean([i_map])[0])} vs {_fmt(_clean([i_rand])[0])}, higher is better).")
    return _finish(fig, f"Deletion and insertion ({method.replace('_', ' ')})", text, height=380)


# One plain line per measure, shown beside the numbers (the trust page and its figures).
MEASURES = {
    "pointing game": "how often the hottest cell of a word's map lies on the object the word names",
    "chance": "what a map pointing at a random cell would score: the share of cells the object touches",
    "mass in box": "the share of the map's total weight that falls on the named object",
    "rank correlation (sanity check)": "how alike the cell rankings of the trained model's map and a scrambled "
                                       "model's map are, from -1 to 1 (Spearman); near 1 = the map barely depends "
                                       "on training",
    "deletion / insertion area": "the area under the word's probability as the hottest cells are greyed out "
                                 "(deletion: lower is better) or revealed on grey (insertion: higher is better), "
                                 "against a random order",
    "exact": "the share of captions exactly equal to the true caption",
    "object recall": "the share of objects named with the right colour and shape",
    "BLEU-1…4": "how many of the caption's single words (1) up to four-word runs (4) also occur in the true "
                "caption, 0 to 1",
    "ROUGE-L": "the longest run of words shared with the true caption, in order, as a share, 0 to 1",
    "CIDEr": "agreement of the caption's word groups with the true caption's, rare words weighing more; "
             "0 to 10 here, higher is better",
}


def trust_verdict(result: dict) -> list[str]:
    """Plain-language sentences, driven by the measured numbers and never stronger than them, on how far
    the heatmaps can be trusted."""
    out = []
    n_words = result.get("n_words", 0)
    n_scenes = result.get("n_scenes", 0)
    caption = result.get("caption", {})
    recall = caption.get("object_recall")
    if recall is not None:
        out.append(f"**Captions.** On these {n_scenes} scenes the model named {percent(recall)} of the objects "
                   f"correctly" + (f" and wrote {percent(caption.get('exact'))} of the captions exactly right."
                                   if caption.get("exact") is not None else "."))
    if not n_words:
        out.append("**Too little to measure.** The model named no object correctly in these scenes, so there is no "
                   "word whose map can be checked against the truth. Treat every heatmap of this model as unverified.")
        return out
    pointing = result.get("pointing", {})
    best = result.get("best_method") or max(pointing, key=lambda m: pointing[m]["hit"])
    hit, chance = pointing[best]["hit"], pointing[best]["chance"]
    margin = hit - chance
    if margin >= 0.3:
        level = "its brightest spot usually sits on the object the word names"
    elif margin >= 0.1:
        level = "its brightest spot is on the right object more often than chance, but often misses: read it as a hint"
    else:
        level = "its brightest spot is no better than a random cell: do not read it as “where the model looked”"
    out.append(f"**Pointing.** The best method, *{best.replace('_', ' ')}*, puts its hottest cell on the named object "
               f"{percent(hit)} of the time against {percent(chance)} by chance ({n_words} words): {level}.")
    mass = result.get("mass_in_box", {}).get(best, {})
    m, m_chance = mass.get("mass"), mass.get("chance")
    if m is not None and m_chance is not None and not (math.isnan(m) or math.isnan(m_chance)):
        spread = ("most of the map's weight is on the object" if m >= 0.5 else
                  "the rest of the map is spread over other cells: read the brightest spot, not the whole map")
        out.append(f"**Mass.** {percent(m)} of the *{best.replace('_', ' ')}* map's weight falls on the named object, "
                   f"where a flat map would put {percent(m_chance)}: {spread}.")
    weak = [w for w in pointing if w != best and pointing[w]["hit"] - pointing[w]["chance"] < 0.1]
    if weak:
        out.append(f"The maps of {', '.join(w.replace('_', ' ') for w in weak)} do little better than chance here.")
    sanity = result.get("sanity_spearman", {}).get(best)
    if sanity is not None and not math.isnan(sanity):
        if sanity < 0.5:
            out.append(f"**Sanity check passed.** Scrambling the model's learned weights changes the "
                       f"{best.replace('_', ' ')} map a lot (rank correlation {sanity:.2f}): the map depends on what "
                       f"the model learned, not only on the image.")
        else:
            out.append(f"**Sanity check warning.** A scrambled model gives a similar {best.replace('_', ' ')} map (rank "
                       f"correlation {sanity:.2f}): part of the picture comes from the image and the architecture, "
                       f"not from what the model learned.")
    c = result.get("curves", {}).get(best, {})
    d_map, d_rand = c.get("deletion_map_auc"), c.get("deletion_random_auc")
    if d_map is not None and d_rand is not None and not (math.isnan(d_map) or math.isnan(d_rand)):
        if d_map < d_rand - 0.02:
            out.append(f"**Faithfulness.** Greying out the map's hottest cells lowers the word's probability faster than "
                       f"greying out random cells (area {d_map:.2f} vs {d_rand:.2f}): the marked cells matter to the "
                       f"model's choice of the word.")
        else:
            out.append(f"**Faithfulness not shown.** Greying out the map's hottest cells hurts the word no more than random "
                       f"cells (area {d_map:.2f} vs {d_rand:.2f}): the map does not show what the model needs.")
    out.append("These numbers hold for scenes like these, where the truth is known; on other images a heatmap is a "
               "hint about the model, not a proof.")
    return out
