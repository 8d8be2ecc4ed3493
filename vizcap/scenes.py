"""ShapeScenes: a procedural world of coloured shapes whose truth is known.

Every scene is a pure function of its seed: ``render_scene(seed)`` gives the same image, the same
objects (with their boxes) and the same caption on every machine. Because we know which object is
where, heatmaps can be *measured* (does the map for "star" point at the star?).

Caption grammar (word level, lower case):

* every object is named ``[size] <colour> <shape>``: the colour word immediately before the shape;
* identical objects are counted: "two red circles", "three blue stars";
* two distinct objects get a relation: "a red circle left of a blue star", "a red circle above a
  blue star"; any other scene joins its noun phrases with "and": "a red circle and a blue star and
  a green square".

A scene has several right captions (`phrasings`, `Scene.captions`): the noun phrases in any order,
and a relation read from either object ("a blue star right of a red circle"). One of them is the
canonical caption (`describe`, `Scene.caption`): objects mentioned left to right (a vertically
stacked pair top to bottom), hence always "left of" or "above". The shipped model was trained on
the canonical caption only.

Domain randomisation (so the model also works on scenes drawn by other renderers): low-saturation
backgrounds (solid, gradient, noise), jittered shades, sizes 15–40 % of the shorter side, free
position, rotation, optional outlines, star/cross/triangle proportions, image size and aspect ratio,
aliased or anti-aliased edges and JPEG compression.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
}
SHAPE_WORDS: frozenset[str] = frozenset([*SHAPES, *PLURALS.values()])  # "circle" and "circles"
SIZES: tuple[str, ...] = ("small", "large")
NUMBERS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
MIRRORED: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

# Every word the grammar can produce: the tokenizer's vocabulary is built from this list.
VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(
        ["a", "an", "two", "three", "and", "left", "right", "of", "above", "below", *SIZES, *COLOURS, *SHAPES]
        + list(PLURALS.values())
    )
)


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the world. The defaults are what the shipped model was trained on."""

    min_objects: int = 1
    max_objects: int = 3
    min_side: int = 160  # image width and height are drawn from [min_side, max_side]
    max_side: int = 320
    min_size: float = 0.15  # object size as a fraction of the shorter image side
    max_size: float = 0.40
    p_same: float = 0.25  # chance that an extra object copies an earlier one (to teach counting)
    p_jpeg: float = 0.5
    min_jpeg_quality: int = 35  # JPEG quality drawn from [min, max] when a scene is compressed
    max_jpeg_quality: int = 91
    p_antialias: float = 0.5
    p_outline: float = 0.25
    size_words: bool = False  # "small"/"large" before the colour (size < 0.22 / > 0.32 of the side)
    relations: bool = True


# Hard scenes (small objects in large, heavily compressed images): the stress test of issue 14 and
# the "hard" column of metrics.json. Three objects of 12–22 % of the short side, images 300–640 px
# a side, every one saved as JPEG quality 40.
HARD = SceneConfig(min_objects=3, max_objects=3, min_side=300, max_side=640, min_size=0.12, max_size=0.22,
                   p_jpeg=1.0, min_jpeg_quality=40, max_jpeg_quality=40)


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the scene image (x1, y1 exclusive)
    size: float  # bounding size as a fraction of the shorter image side

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    image: Image.Image  # RGB
    objects: list[SceneObject]  # in (canonical) caption order
    caption: str  # the canonical caption: describe(objects, config)
    mask: np.ndarray = field(repr=False)  # H×W uint8: 0 background, i+1 where objects[i] is drawn
    seed: int = 0
    config: SceneConfig = field(default=SceneConfig(), repr=False)  # the world it was drawn in

    @property
    def captions(self) -> list[str]:
        """Every right caption of the scene, the canonical one first (`phrasings`)."""
        return phrasings(self.objects, self.config)


# --------------------------------------------------------------------------------------------
# Geometry: every shape is a polygon (a circle is a 64-gon) in a unit box centred at 0.


def _shape_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of `shape` with random proportions, inside [-0.5, 0.5]²."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        aspect = rng.uniform(0.92, 1.0)
        return np.stack([0.5 * np.cos(t), 0.5 * aspect * np.sin(t)], 1)
    if shape == "square":
        a = 0.5 * rng.uniform(0.9, 1.0)
        return np.array([[-0.5, -a], [0.5, -a], [0.5, a], [-0.5, a]])
    if shape == "triangle":
        apex = rng.uniform(-0.15, 0.15)  # equilateral-ish to slightly skewed
        return np.array([[apex, -0.5], [0.5, 0.5 * rng.uniform(0.75, 1.0)], [-0.5, 0.5 * rng.uniform(0.75, 1.0)]])
    if shape == "star":
        points = 5
        inner = rng.uniform(0.35, 0.55)
        t = np.arange(2 * points) * np.pi / points - np.pi / 2
        r = np.where(np.arange(2 * points) % 2 == 0, 0.5, 0.5 * inner)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        h = 0.5 * rng.uniform(0.26, 0.42)  # half the arm thickness
        return np.array(
            [[-h, -0.5], [h, -0.5], [h, -h], [0.5, -h], [0.5, h], [h, h], [h, 0.5], [-h, 0.5], [-h, h], [-0.5, h],
             [-0.5, -h], [-h, -h]]
        )
    raise ValueError(f"unknown shape {shape!r}")


def _place(poly: np.ndarray, size: float, angle: float, cx: float, cy: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rotated = poly @ np.array([[c, s], [-s, c]])
    extent = np.abs(rotated).max()  # rescale so the rotated shape spans `size` pixels
    return rotated / (2 * extent) * size + np.array([cx, cy])


def _jitter_colour(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    scale = rng.uniform(0.88, 1.06)
    return tuple(int(np.clip(v * scale + rng.uniform(-14, 14), 0, 255)) for v in rgb)  # type: ignore[return-value]


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Low-saturation background: solid, gradient or noise (float H×W×3 in 0..255)."""

    def muted() -> np.ndarray:
        grey = rng.choice([rng.uniform(150, 250), rng.uniform(15, 90)], p=[0.8, 0.2])
        return np.clip(grey + rng.uniform(-18, 18, 3), 0, 255)

    kind = rng.choice(["solid", "gradient", "noise"], p=[0.45, 0.35, 0.2])
    if kind == "solid":
        return np.broadcast_to(muted(), (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        a, b = muted(), muted()
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle) + 0.5
        t = np.clip(t, 0, 1)[..., None]
        return (a * (1 - t) + b * t).astype(np.float32)
    base = muted()
    noise = rng.normal(0, rng.uniform(4, 14), (h, w, 1)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Layout and caption


def _boxes_overlap(a: tuple[float, ...], b: tuple[float, ...], gap: float) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _relation(first: SceneObject, second: SceneObject) -> str:
    (x1, y1), (x2, y2) = first.centre, second.centre
    if abs(x2 - x1) >= abs(y2 - y1):
        return "left of" if x1 < x2 else "right of"
    return "above" if y1 < y2 else "below"


def _caption_order(objects: list[SceneObject]) -> list[SceneObject]:
    """Left to right; a vertically stacked pair (|dy| > |dx|) is read top to bottom."""
    if len(objects) == 2:
        a, b = objects
        (xa, ya), (xb, yb) = a.centre, b.centre
        if abs(yb - ya) > abs(xb - xa):
            return sorted(objects, key=lambda o: o.centre[1])
    return sorted(objects, key=lambda o: o.centre[0])


def _size_word(obj: SceneObject) -> str | None:
    if obj.size < 0.22:
        return "small"
    if obj.size > 0.32:
        return "large"
    return None


def _noun_phrase(obj: SceneObject, count: int, size_words: bool) -> str:
    words = [NUMBERS[count]]
    if size_words and count == 1 and (size := _size_word(obj)):
        words.append(size)
    words.append(obj.colour)
    words.append(obj.shape if count == 1 else PLURALS[obj.shape])
    if words[0] == "a" and words[1][0] in "aeiou":  # "an orange square"
        words[0] = "an"
    return " ".join(words)


def name_groups(objects: list[SceneObject]) -> list[list[int]]:
    """The indices of the objects that one noun phrase names ("two red circles"), phrase by phrase:
    same colour and shape, in order of first mention."""
    groups: list[list[int]] = []
    for i, obj in enumerate(objects):
        for g in groups:
            if objects[g[0]].name == obj.name:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _noun_phrases(objects: list[SceneObject], config: SceneConfig) -> list[str]:
    return [_noun_phrase(objects[g[0]], len(g), config.size_words) for g in name_groups(objects)]


def _is_related_pair(objects: list[SceneObject]) -> bool:
    """Two single objects of different kinds: the grammar says where one is from the other."""
    return len(objects) == 2 and objects[0].name != objects[1].name


PAIR_MARGIN = 1.3  # a pair is drawn only where its dominant axis is this many times the other (`_unambiguous`)


def clear_cut(objects: list[SceneObject]) -> bool:
    """Whether the grammar's right captions are beyond doubt: True unless the scene is a related pair
    set nearly diagonally (neither axis PAIR_MARGIN times the other), where `_relation` reads "above"
    or "left of" from a few pixels' difference. ShapeScenes never draws such a pair; another renderer
    (vizcap/independent_renderer.py) may, and there either axis would be a fair description."""
    if not _is_related_pair(objects):
        return True
    (x1, y1), (x2, y2) = objects[0].centre, objects[1].centre
    dx, dy = abs(x2 - x1), abs(y2 - y1)
    return max(dx, dy) >= PAIR_MARGIN * min(dx, dy)


def pair_relation(objects: list[SceneObject], config: SceneConfig = SceneConfig()) -> str | None:
    """Where the first of a related pair (objects in caption order) is from the second ("left of"
    or "above"), or None when the scene names no relation."""
    if _is_related_pair(objects) and config.relations:
        return _relation(objects[0], objects[1])
    return None


def describe(objects: list[SceneObject], config: SceneConfig = SceneConfig()) -> str:
    """The canonical caption of a scene whose objects are already in caption order."""
    phrases = _noun_phrases(objects, config)
    relation = pair_relation(objects, config)
    return f"{phrases[0]} {relation} {phrases[1]}" if relation else " and ".join(phrases)


class Phrasing(NamedTuple):
    """A right caption, and the objects (indices into the scene's) in an order that it is the
    canonical caption of: describe([objects[i] for i in order]) == caption."""

    caption: str
    order: tuple[int, ...]


def ordered_phrasings(objects: list[SceneObject], config: SceneConfig = SceneConfig()) -> list[Phrasing]:
    """Every right caption of a scene whose objects are in caption order, `describe`'s first, each
    with an object order it follows (`Phrasing`). Each names every object once (identical ones counted in
    one noun phrase) and says nothing else:

    * a pair of different objects: its relation read from either one, "A left of B" / "B right of
      A" ("A above B" / "B below A"). Not "A and B": where the two are is part of a pair's
      description in this grammar (`describe` always states it), so the relation-less form is
      incomplete here, and training on it would teach the model to drop relations;
    * any other scene: its noun phrases joined by "and" in every order (k groups: k! captions).
    """
    phrases = _noun_phrases(objects, config)
    relation = pair_relation(objects, config)
    if relation:
        return [Phrasing(f"{phrases[0]} {relation} {phrases[1]}", (0, 1)),
                Phrasing(f"{phrases[1]} {MIRRORED[relation]} {phrases[0]}", (1, 0))]
    groups = name_groups(objects)
    canonical = tuple(range(len(groups)))
    return [Phrasing(" and ".join(phrases[g] for g in order),
                     # the canonical caption keeps the scene's order, in which a counted group's members
                     # may be apart ("two red circles and a blue star" over circle, star, circle)
                     tuple(range(len(objects))) if order == canonical else tuple(i for g in order for i in groups[g]))
            for order in itertools.permutations(canonical)]  # the identity order first


def phrasings(objects: list[SceneObject], config: SceneConfig = SceneConfig()) -> list[str]:
    """Every right caption of a scene whose objects are in caption order, `describe`'s first."""
    return [p.caption for p in ordered_phrasings(objects, config)]


# --------------------------------------------------------------------------------------------
# Rendering


def render_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Draw scene number `seed`. Deterministic: same seed and config, same scene."""
    rng = np.random.default_rng([seed, 0x5CE7E])
    w, h = (int(rng.integers(config.min_side, config.max_side + 1)) for _ in range(2))
    short = min(w, h)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))

    # Choose identities; sometimes repeat one so that counting appears in captions.
    kinds: list[tuple[str, str]] = []
    for _ in range(n):
        if kinds and rng.random() < config.p_same:
            kinds.append(kinds[int(rng.integers(len(kinds)))])
        else:
            kinds.append((str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))))

    # Place objects without overlap; retry the whole layout with smaller objects if crowded.
    placed: list[tuple[str, str, float, np.ndarray]] = []
    boxes: list[tuple[float, float, float, float]] = []
    shrink = 1.0
    for colour, shape in kinds:
        for attempt in range(200):
            size_frac = rng.uniform(config.min_size, config.max_size) * (shrink if attempt < 100 else 0.75)
            size_frac = max(size_frac, config.min_size)
            size = size_frac * short
            poly = _shape_polygon(shape, rng)
            upright = rng.random() < 0.5
            angle = rng.uniform(-0.26, 0.26) if upright else rng.uniform(0, 2 * np.pi)
            cx = rng.uniform(size / 2 + 2, w - size / 2 - 2)
            cy = rng.uniform(size / 2 + 2, h - size / 2 - 2)
            pts = _place(poly, size, angle, cx, cy)
            box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
            if all(not _boxes_overlap(box, b, gap=0.04 * short) for b in boxes) and _unambiguous(box, boxes):
                placed.append((colour, shape, size_frac, pts))
                boxes.append(box)
                break
        else:  # no room: drop this object (rare; the caption follows what is drawn)
            continue

    # Draw. Anti-aliasing by supersampling; the mask is always drawn aliased at full size.
    aa = rng.random() < config.p_antialias
    ss = 3 if aa else 1
    canvas = Image.fromarray(_background(w, h, rng).astype(np.uint8)).resize((w * ss, h * ss), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    mask = Image.new("L", (w, h), 0)
    mask_draw = ImageDraw.Draw(mask)
    outline = rng.random() < config.p_outline
    objects: list[SceneObject] = []
    for i, (colour, shape, size_frac, pts) in enumerate(placed):
        fill = _jitter_colour(COLOURS[colour], rng)
        line = tuple(int(v * rng.uniform(0.45, 0.75)) for v in fill) if outline else None
        draw.polygon([tuple(p) for p in pts * ss], fill=fill, outline=line, width=max(1, int(ss * rng.uniform(1, 2.5))))
        mask_draw.polygon([tuple(p) for p in pts], fill=i + 1)
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        box = (max(0, int(x0)), max(0, int(y0)), min(w, int(x1) + 1), min(h, int(y1) + 1))
        objects.append(SceneObject(colour, shape, box, float(size_frac)))
    image = canvas.reduce(ss) if aa else canvas  # box-filter downsampling = area coverage
    if rng.random() < 0.15:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < config.p_jpeg:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(rng.integers(config.min_jpeg_quality, config.max_jpeg_quality + 1)))
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    # Caption order, and the mask relabelled to match it.
    order = _caption_order(objects)
    remap = np.zeros(len(objects) + 1, np.uint8)
    for new, obj in enumerate(order):
        remap[objects.index(obj) + 1] = new + 1
    mask_arr = remap[np.asarray(mask)]
    return Scene(image=image.convert("RGB"), objects=order, caption=describe(order, config), mask=mask_arr, seed=seed,
                 config=config)


def _unambiguous(box: tuple[float, ...], others: list[tuple[float, ...]]) -> bool:
    """Keep captions decidable: centres must not be nearly tied on the axis that orders them."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for b in others:
        dx, dy = abs(cx - (b[0] + b[2]) / 2), abs(cy - (b[1] + b[3]) / 2)
        if len(others) == 1:  # a pair: its relation must be clear-cut (dominant axis)
            if max(dx, dy) < PAIR_MARGIN * min(dx, dy):
                return False
        if dx < 0.08 * max(b[2] - b[0], box[2] - box[0]):  # left-to-right order must be clear
            if len(others) > 1 or dx >= dy:
                return False
    return True


def cell_coverage(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[K + 1, gh, gw]: the share of each grid cell that label k covers (k = 0 background, k = i
    object i), sampled on 8 × 8 points per cell. The image is split into gh×gw equal cells, like the
    model's map."""
    gh, gw = grid
    h, w = mask.shape
    ys = (np.arange(gh * 8) + 0.5) * h / (gh * 8)
    xs = (np.arange(gw * 8) + 0.5) * w / (gw * 8)
    sub = mask[ys.astype(int)[:, None], xs.astype(int)[None, :]].reshape(gh, 8, gw, 8).transpose(0, 2, 1, 3)
    sub = sub.reshape(gh, gw, 64)
    n = int(mask.max()) + 1
    return np.stack([(sub == k).mean(-1) for k in range(n)], 0)


def object_cells(mask: np.ndarray, grid: tuple[int, int], min_cover: float = 0.25) -> np.ndarray:
    """Per grid cell, the object (1-based; 0 = background) covering most of it, if it covers at
    least `min_cover` of the cell."""
    return cells_from_coverage(cell_coverage(mask, grid), min_cover)


def cells_from_coverage(cover: np.ndarray, min_cover: float = 0.25) -> np.ndarray:
    """object_cells from a `cell_coverage` array [K + 1, ...]."""
    objects = cover.copy()
    objects[0] = 0
    return np.where(objects.max(0) >= min_cover, objects.argmax(0), 0).astype(np.int64)
