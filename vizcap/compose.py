"""Compose a ShapeScenes picture from chosen objects, to test a hypothesis ("does it still say *star*
when the star is in the corner?"). Pure function of its arguments; drawn with the same shapes,
colours and caption grammar as `vizcap.scenes`, so the true caption of a composed scene is known.

    scene = compose_scene([Placement("red", "star", x=0.25, y=0.5),
                           Placement("blue", "circle", x=0.75, y=0.5, size=0.3)])
    scene.caption   # 'a red star left of a blue circle'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .scenes import COLOURS, SHAPES, Scene, SceneObject, _caption_order, _place, _shape_polygon, describe

MAX_OBJECTS = 6
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "light grey": (205, 205, 200),
    "white": (245, 245, 245),
    "dark grey": (60, 60, 64),
    "beige": (222, 210, 185),
}


@dataclass(frozen=True)
class Placement:
    """One object: its colour and shape, its centre (x, y as fractions of the width and height),
    its size (a fraction of the shorter side; the training range is 0.15–0.40) and a rotation in
    degrees."""

    colour: str
    shape: str
    x: float = 0.5
    y: float = 0.5
    size: float = 0.3
    angle: float = 0.0


def problems(placements: list[Placement], width: int = 256, height: int = 256) -> list[str]:
    """One-line messages for every invalid value (empty if all are fine)."""
    out = []
    if not 1 <= len(placements) <= MAX_OBJECTS:
        out.append(f"a scene needs 1 to {MAX_OBJECTS} objects; got {len(placements)}")
    if not (32 <= width <= 1024 and 32 <= height <= 1024):
        out.append(f"width and height must be from 32 to 1024 pixels; got {width}×{height}")
    for i, p in enumerate(placements, 1):
        if p.colour not in COLOURS:
            out.append(f"object {i}: colour must be one of {', '.join(COLOURS)}; got {p.colour!r}")
        if p.shape not in SHAPES:
            out.append(f"object {i}: shape must be one of {', '.join(SHAPES)}; got {p.shape!r}")
        for name, value, lo, hi in (("x", p.x, 0, 1), ("y", p.y, 0, 1), ("size", p.size, 0.05, 0.9)):
            if not isinstance(value, (int, float)) or not np.isfinite(value) or not lo <= value <= hi:
                out.append(f"object {i}: {name} must be from {lo} to {hi}; got {value!r}")
    return out


MIN_VISIBLE = 0.5  # an object with less than half of itself in view is hidden: it leaves the true caption


def _polygons(placements: list[Placement], width: int, height: int) -> list[np.ndarray]:
    """Each object's polygon in pixels, kept inside the picture (a centre too close to an edge moves in)."""
    short = min(width, height)
    out = []
    for p in placements:
        rng = np.random.default_rng(0)  # the shapes' typical proportions, the same every time
        size = p.size * short
        poly = _shape_polygon(p.shape, rng)
        cx = float(np.clip(p.x * width, size / 2 + 1, width - size / 2 - 1)) if size + 2 < width else width / 2
        cy = float(np.clip(p.y * height, size / 2 + 1, height - size / 2 - 1)) if size + 2 < height else height / 2
        out.append(_place(poly, size, np.deg2rad(p.angle), cx, cy))
    return out


def _masks(polygons: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, list[int]]:
    """(which object is on top at each pixel, 0 = background; each object's own area in pixels)."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    areas = []
    for i, pts in enumerate(polygons):
        alone = Image.new("1", (width, height), 0)
        ImageDraw.Draw(alone).polygon([tuple(q) for q in pts], fill=1)
        areas.append(int(np.asarray(alone).sum()))
        draw.polygon([tuple(q) for q in pts], fill=i + 1)
    return np.asarray(mask), areas


def visibility(placements: list[Placement], width: int = 256, height: int = 256) -> list[float]:
    """The share of each object that stays in view once the later objects are drawn over it (1.0 =
    fully visible, 0.0 = completely hidden). compose_scene leaves objects under MIN_VISIBLE out of
    the true caption."""
    found = problems(placements, width, height)
    if found:
        raise ValueError(found[0])
    mask, areas = _masks(_polygons(placements, width, height), width, height)
    return [float((mask == i + 1).sum() / a) if a else 0.0 for i, a in enumerate(areas)]


def compose_scene(
    placements: list[Placement],
    width: int = 256,
    height: int = 256,
    background: tuple[int, int, int] | str = "light grey",
    antialias: bool = True,
) -> Scene:
    """Draw the objects (in the given order: later ones on top) on a plain background.

    Objects are kept inside the picture (a centre too close to an edge is moved in). Overlapping
    objects are allowed; the caption grammar then still orders them by their centres. An object
    mostly hidden behind later ones (less than MIN_VISIBLE of it in view, see `visibility`) is not
    part of the scene's objects, mask or true caption: the caption says what can be seen."""
    found = problems(placements, width, height)
    if found:
        raise ValueError(found[0])
    bg = BACKGROUNDS[background] if isinstance(background, str) else tuple(int(v) for v in background)
    ss = 3 if antialias else 1
    canvas = Image.new("RGB", (width * ss, height * ss), bg)
    draw = ImageDraw.Draw(canvas)
    polygons = _polygons(placements, width, height)
    mask, areas = _masks(polygons, width, height)
    objects: list[SceneObject | None] = []
    for i, (p, pts) in enumerate(zip(placements, polygons)):
        draw.polygon([tuple(q) for q in pts * ss], fill=COLOURS[p.colour])
        visible = (mask == i + 1).sum() / areas[i] if areas[i] else 0.0
        if visible < MIN_VISIBLE:
            objects.append(None)  # drawn, but hidden: not in the caption
            continue
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1) + 1), min(height, int(y1) + 1))
        objects.append(SceneObject(p.colour, p.shape, box, float(p.size)))
    image = canvas.reduce(ss) if ss > 1 else canvas
    shown = [obj for obj in objects if obj is not None]
    order = _caption_order(shown)
    index = {id(obj): k for k, obj in enumerate(objects) if obj is not None}  # identity: two identical objects stay two
    remap = np.zeros(len(objects) + 1, np.uint8)
    for new, obj in enumerate(order):
        remap[index[id(obj)] + 1] = new + 1
    return Scene(image=image.convert("RGB"), objects=order, caption=describe(order), mask=remap[mask], seed=-1)
