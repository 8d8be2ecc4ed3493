"""Images in figures. An image goes to the browser as a PNG/JPEG data URI (`go.Image(source=...)`,
~10 KB) rather than as pixel lists (`z=`, ~250 KB of JSON per panel), and the resized image is
remembered per image object. A map is drawn onto the image here, by vizcap.render.overlay (the
renderer of Play, the PNG and the GIF too), not by plotly's own smoothing, so that a map looks the
same in every view; an invisible heatmap on top gives the hover values and the colour bar."""

from __future__ import annotations

import base64
import io
import threading
import weakref

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .. import render
from .common import axis_span, plain

DISPLAY_SIDE = 320  # images are shown (and sent to the browser) at most this many pixels wide
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



def data_uri(shown: Image.Image) -> str:
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
        return data_uri(shown), shown.width, shown.height

    return _remembered(image, "source", make)



def image_pixels(trace: go.Image) -> np.ndarray:
    """The pixels [H, W, 3] an image trace shows (decoded from its data URI, or its `z`)."""
    if trace.source:
        data = base64.b64decode(trace.source.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.asarray(trace.z)



def image_and_map(image: Image.Image, heatmap: np.ndarray, opacity: float, axis: str = "",
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
    label = plain(name)
    return [
        {"type": "image", "source": data_uri(picture), "hoverinfo": "skip", "name": "image", **xy},
        {"type": "heatmap", "z": heatmap, "x0": W / gw / 2 - 0.5, "dx": W / gw, "y0": H / gh / 2 - 0.5, "dy": H / gh,
         "opacity": 0.0, "coloraxis": coloraxis, "name": label,
         "hovertemplate": "row %{customdata[0]}, column %{customdata[1]}<br>value %{z:.3f}<extra>" + label + "</extra>",
         "customdata": np.stack([rows, cols], -1), **xy},
    ]



def image_axes(axis: str = "", x_domain=(0.0, 1.0), y_domain=(0.0, 1.0)) -> dict:
    """Hidden axes for an image panel: square pixels, y downwards."""
    return {f"xaxis{axis}": {"visible": False, "constrain": "domain", "domain": axis_span(*x_domain), "anchor": f"y{axis}"},
            f"yaxis{axis}": {"visible": False, "scaleanchor": f"x{axis}", "autorange": "reversed",
                             "constrain": "domain", "domain": axis_span(*y_domain), "anchor": f"x{axis}"}}



def plotly_colorscale(name: str) -> list[list]:
    """vizcap.render's colour map `name` as a plotly colour scale: the colour bar shows exactly the
    colours the overlay is drawn with."""
    anchors = render.COLORMAPS[name]
    k = len(anchors) - 1
    return [[i / k, "rgb(%d,%d,%d)" % c] for i, c in enumerate(anchors)]



def colour_axis(colorscale: str, top: float, title_text: str = "weight") -> dict:
    return {"colorscale": plotly_colorscale(colorscale), "cmin": 0.0, "cmax": max(top, 1e-12),
            # xpad: Streamlit's theme puts 40 px between plot and colour bar, taken from the maps' width
            "colorbar": {"title": {"text": plain(title_text), "side": "right"}, "thickness": 12, "xpad": 10}}

