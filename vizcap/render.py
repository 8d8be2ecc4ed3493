"""Heatmaps drawn on the image, as pictures (PNG overlay, GIF animation). Pure functions.

A map cell (r, c) of a gh×gw map covers rows r·H/gh … (r+1)·H/gh and columns c·W/gw … (c+1)·W/gw of
the H×W image, because preprocessing squashes the whole image (no crop); upsampling the map to the
image size therefore puts every cell back where it came from.

This is vizcap's one overlay renderer: the app's static map (vizcap.figures), its Play animation,
the PNG and GIF downloads and the CLI's --export all draw with `overlay`, so one map looks the same
everywhere (tests/test_render.py compares them pixel by pixel)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe sequential scales (perceptually uniform): anchor colours sampled from the
# matplotlib/plotly originals, interpolated linearly.
COLORMAPS: dict[str, list[tuple[int, int, int]]] = {
    "viridis": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
    "cividis": [(0, 32, 77), (65, 77, 107), (124, 123, 120), (188, 175, 111), (255, 234, 70)],
    "magma": [(0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191)],
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
}


_LUT_STEPS = 1024  # table entries per segment between two anchors: anchors and midpoints fall on entries
_LUTS: dict[str, np.ndarray] = {}


def _lut(cmap: str) -> np.ndarray:
    """The colour map as a table of k·1024 + 1 uint8 colours (k segments between anchors), built once."""
    if cmap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {cmap!r}")
    if cmap not in _LUTS:
        anchors = np.asarray(COLORMAPS[cmap], dtype=np.float64)
        k = len(anchors) - 1
        v = np.arange(k * _LUT_STEPS + 1) / _LUT_STEPS  # exact at every anchor: 0, 1, …, k
        lo = np.floor(v).astype(int).clip(0, k - 1)
        frac = (v - lo)[:, None]
        _LUTS[cmap] = (anchors[lo] * (1 - frac) + anchors[lo + 1] * frac).round().astype(np.uint8)
    return _LUTS[cmap]


def colorize(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)): the anchors interpolated linearly,
    read from a fine table (a value moves by at most 1/2048 of a segment; ~10× faster than computing)."""
    lut = _lut(cmap)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0, 1)
    return lut[np.rint(v * (len(lut) - 1)).astype(np.intp)]


def upsample(heatmap: np.ndarray, size: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """gh×gw map -> H×W float array (size = (W, H)), each cell stretched over its image region."""
    img = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.BILINEAR if smooth else Image.NEAREST), dtype=np.float64)


def overlay(
    image: Image.Image,
    heatmap: np.ndarray,
    alpha: float = 0.55,
    cmap: str = "viridis",
    vmax: float | None = None,
    smooth: bool = True,
) -> Image.Image:
    """The image with `heatmap` (gh×gw, non-negative) blended on top. vmax fixes the colour scale
    (default: the map's own maximum, i.e. per-token max scaling)."""
    image = image.convert("RGB")
    hm = upsample(heatmap, image.size, smooth)
    top = vmax if vmax is not None else float(np.max(heatmap)) if np.size(heatmap) else 1.0
    colours = colorize(hm / max(top, 1e-12), cmap)
    base = np.asarray(image, dtype=np.float64)
    return Image.fromarray((base * (1 - alpha) + colours * alpha).round().astype(np.uint8))


def resized(image: Image.Image, width: int) -> Image.Image:
    """`image` (RGB) scaled to `width` pixels wide, aspect kept (bilinear); itself if already that wide."""
    image = image.convert("RGB")
    if image.width == width:
        return image
    return image.resize((width, max(1, round(image.height * width / image.width))), Image.BILINEAR)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def caption_frame(image: Image.Image, tokens: list[str], current: int, heatmap: np.ndarray, **kw) -> Image.Image:
    """One animation frame: the overlay for token `current` above the caption so far, the current
    word highlighted."""
    # the image is scaled first and the map drawn over it at the frame's size, as the app's static
    # view does (scaling a finished overlay would blur its colours differently)
    over = overlay(resized(image, max(image.width, 320)), heatmap, **kw)
    w = over.width
    font = _font(18)
    frame = Image.new("RGB", (w, over.height + 56), (255, 255, 255))
    frame.paste(over, (0, 0))
    draw = ImageDraw.Draw(frame)
    x, y = 8, over.height + 16
    for i, word in enumerate(tokens[: current + 1]):
        colour = (200, 30, 30) if i == current else (30, 30, 30)
        draw.text((x, y), word, fill=colour, font=font)
        x += int(draw.textlength(word + " ", font=font))
    return frame


def caption_gif(image: Image.Image, tokens: list[str], maps: np.ndarray, ms_per_word: int = 700, **kw) -> bytes:
    """Animated GIF: the caption appearing word by word, each frame with that word's map."""
    if len(tokens) == 0:
        frames = [image.convert("RGB")]
    else:
        vmax = kw.pop("vmax", float(np.max(maps)) if np.size(maps) else 1.0)
        frames = [caption_frame(image, tokens, i, maps[i], vmax=vmax, **kw) for i in range(len(tokens))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=ms_per_word, loop=0)
    return buf.getvalue()


def labelled_overlay(image: Image.Image, heatmap: np.ndarray, word: str, unit: str, vmax: float,
                     note: str = "", alpha: float = 0.55, cmap: str = "viridis", width: int = 480) -> Image.Image:
    """A slide-ready picture of one word's map: the word on top, the overlay, a colour bar from 0 to
    vmax labelled with the map's unit, and an optional line saying how the map was made (method,
    layer, head, normalisation: `note`). Drawn with `overlay`, so it matches every other view."""
    over = overlay(resized(image, max(width, 64)), heatmap, alpha=alpha, cmap=cmap, vmax=vmax)
    title, small = _font(22), _font(14)
    pad, bar_w = 12, 18
    ticks = [0.0, vmax / 2, vmax]
    labels = [_tick(t) for t in ticks]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.textlength(s, font=small)) for s in labels)
    W = over.width + 2 * pad + bar_w + 8 + label_w + pad
    lines = _wrap(probe, _plain(f"Colour: {unit}" + (f" · {note}" if note else "")), small, W - 2 * pad)
    H = pad + 30 + over.height + 8 + 18 * len(lines) + pad
    frame = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(frame)
    draw.text((pad, pad), f"“{word}”", fill=(20, 20, 20), font=title)
    top = pad + 30
    frame.paste(over, (pad, top))
    x0 = pad + over.width + pad
    ramp = colorize(np.linspace(1, 0, over.height)[:, None].repeat(bar_w, 1), cmap)
    frame.paste(Image.fromarray(ramp), (x0, top))
    draw.rectangle([x0, top, x0 + bar_w - 1, top + over.height - 1], outline=(90, 90, 90))
    for t, s in zip(ticks, labels):
        y = top + (over.height - 1) * (1 - (t / vmax if vmax else 0))
        draw.line([x0 + bar_w, y, x0 + bar_w + 4, y], fill=(60, 60, 60))
        draw.text((x0 + bar_w + 8, min(max(y - 7, top), top + over.height - 14)), s, fill=(40, 40, 40), font=small)
    y = top + over.height + 8
    for line in lines:
        draw.text((pad, y), line, fill=(60, 60, 60), font=small)
        y += 18
    return frame


_MISSING_GLYPHS = str.maketrans({"–": "-", "—": "-", "÷": "/", "×": "x", "→": "->"})  # not in PIL's default font


def _plain(text: str) -> str:
    return text.translate(_MISSING_GLYPHS)


def _tick(value: float) -> str:
    return f"{value:.3g}" if value else "0"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])
