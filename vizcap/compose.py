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


def compose_scene(
    placements: list[Placement],
    width: int = 256,
    height: int = 256,
    background: tuple[int, int, int] | str = "light grey",
    antialias: bool = True,
) -> Scene:
    """Draw the objects (in the given order: later ones on top) on a plain background.

    Objects are kept inside the picture (a centre too close to an edge is moved in). Overlapping
    objects are allowed; the caption grammar then still orders them by their centres."""
    found = problems(placements, width, height)
    if found:
        raise ValueError(found[0])
    bg = BACKGROUNDS[background] if isinstance(background, str) else tuple(int(v) for v in background)
    ss = 3 if antialias else 1
    canvas = Image.new("RGB", (width * ss, height * ss), bg)
    draw = ImageDraw.Draw(canvas)
    mask = Image.new("L", (width, height), 0)
    mask_draw = ImageDraw.Draw(mask)
    short = min(width, height)
    objects: list[SceneObject] = []
    for i, p in enumerate(placements):
        rng = np.random.default_rng(0)  # the shapes' typical proportions, the same every time
        size = p.size * short
        poly = _shape_polygon(p.shape, rng)
        cx = float(np.clip(p.x * width, size / 2 + 1, width - size / 2 - 1)) if size + 2 < width else width / 2
        cy = float(np.clip(p.y * height, size / 2 + 1, height - size / 2 - 1)) if size + 2 < height else height / 2
        pts = _place(poly, size, np.deg2rad(p.angle), cx, cy)
        draw.polygon([tuple(q) for q in pts * ss], fill=COLOURS[p.colour])
        mask_draw.polygon([tuple(q) for q in pts], fill=i + 1)
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1) + 1), min(height, int(y1) + 1))
        objects.append(SceneObject(p.colour, p.shape, box, float(p.size)))
    image = canvas.reduce(ss) if ss > 1 else canvas
    order = _caption_order(objects)
    index = {id(obj): k for k, obj in enumerate(objects)}  # identity: two identical objects stay two
    remap = np.zeros(len(objects) + 1, np.uint8)
    for new, obj in enumerate(order):
        remap[index[id(obj)] + 1] = new + 1
    return Scene(image=image.convert("RGB"), objects=order, caption=describe(order), mask=remap[np.asarray(mask)], seed=-1)
