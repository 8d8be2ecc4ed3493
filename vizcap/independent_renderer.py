"""Independent second renderer for the vizcap shapes world.

It lives in the library so that `vizcap eval --independent` can measure on it; it imports nothing
from vizcap (tests/test_shipped_trust.py checks this), so it still shares no code with vizcap.scenes.

Why this exists
---------------
The captioner is trained on scenes produced by the project's own generator.
A model can score well on held-out scenes from that generator while relying
on quirks of how it draws (PIL ``ImageDraw`` edge pixels, exact colours,
fixed shape proportions, background style).  To check that the captioner has
learnt *colours and shapes* rather than *that renderer*, this module draws the
same world (same 7 colours, same 5 shapes, 1-3 non-overlapping objects) with
completely separate code that was written without looking at the project
generator:

* every shape is rasterised by hand with numpy from a signed distance field
  (circle: analytic; polygons: distance to edges + even-odd point-in-polygon
  test), evaluated on a 3x3 sub-pixel grid and averaged for anti-aliasing;
* shape proportions are its own (5-point star with inner/outer ratio ~0.45,
  plus-shaped cross with arms ~1/3 of the size, equilateral triangles and
  squares rotated by up to +-20 degrees);
* colours are jittered by up to +-12 per channel, backgrounds vary (white-ish,
  light grey, pale beige, soft vertical gradient) with faint uniform noise,
  and half the images give objects a thin darker inner outline.

Only numpy and Pillow are used; Pillow is used only to wrap the final array,
to write PNG files and, for hard scenes only, to compress them as JPEG.

API
---
``render_independent(seed) -> (PIL.Image.Image RGB, list[dict])`` where each
dict is ``{"colour": str, "shape": str, "box": (x0, y0, x1, y1)}``; boxes are
integer pixel coordinates of the tight bounding box of the rendered object
(every pixel with non-zero coverage), with ``x1``/``y1`` exclusive (so
``img.crop(box)`` is exactly the object), and objects are listed left to right
by box centre.

``caption_objects(objects) -> list[(colour, shape)]``.

Command line::

    python tests/independent_renderer.py OUTDIR --n 20 --seed 0

writes ``OUTDIR/indep_00000.png`` ... and ``OUTDIR/truth.jsonl``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# The same canonical colours and shape names as vizcap.scenes, written out again on purpose: this
# renderer must share no code with the one it checks (a deliberate duplicate).
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

COLOUR_JITTER = 12          # max per-channel shift of object colours
MIN_SIDE, MAX_SIDE = 170, 300
SIZE_FRAC = (0.18, 0.38)    # object extent as a fraction of the shorter side
GAP = 5.0                   # min gap (px) between analytic boxes
MARGIN = 3.0                # min distance (px) from analytic box to image edge
SUB = 3                     # sub-pixel grid is SUB x SUB per pixel
NOISE = 4                   # background/image noise amplitude (uniform +-)
STAR_RATIO = 0.45           # inner / outer radius of the star
CROSS_THICK = 1.0 / 3.0     # arm thickness / size of the cross
MAX_ROT_DEG = 20.0          # rotation range for squares and triangles
# hard scenes (issue 14): always three small objects on large pictures, JPEG-compressed
HARD_MIN_SIDE, HARD_MAX_SIDE = 300, 640
HARD_SIZE_FRAC = (0.12, 0.22)
HARD_JPEG_QUALITY = 40


# --------------------------------------------------------------------------
# Geometry: unit shapes (centred at the origin, y axis pointing down)
# --------------------------------------------------------------------------

def _rot(pts: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return pts @ np.array([[c, s], [-s, c]])


def _unit_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (k, 2) of a shape of roughly unit scale, before sizing."""
    if shape == "square":
        sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
        return _rot(sq, rng.uniform(-MAX_ROT_DEG, MAX_ROT_DEG))
    if shape == "triangle":
        # apex pointing up (negative y), equilateral, circumradius 1
        ang = np.radians([-90.0, 30.0, 150.0])
        tri = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return _rot(tri, rng.uniform(-MAX_ROT_DEG, MAX_ROT_DEG))
    if shape == "star":
        k = np.arange(10)
        ang = np.radians(-90.0 + 36.0 * k)
        r = np.where(k % 2 == 0, 1.0, STAR_RATIO)
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    if shape == "cross":
        t = CROSS_THICK  # full size is 2 (from -1 to 1); half thickness = t
        return np.array([
            [-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t],
            [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t],
        ], dtype=float)
    raise ValueError(shape)


class _Obj:
    """A sized, placed shape with a signed distance function."""

    def __init__(self, shape: str, size: float, rng: np.random.Generator):
        self.shape = shape
        if shape == "circle":
            self.poly = None
            self.radius = size / 2.0
            self.half = (self.radius, self.radius)
        else:
            p = _unit_polygon(shape, rng)
            p = p - (p.max(0) + p.min(0)) / 2.0          # centre its bbox
            ext = (p.max(0) - p.min(0)).max()
            self.poly = p * (size / ext)                  # max extent == size
            mx = self.poly.max(0)
            self.half = (float(mx[0]), float(mx[1]))
        self.cx = self.cy = 0.0

    def place(self, cx: float, cy: float) -> None:
        self.cx, self.cy = cx, cy

    def abox(self) -> tuple[float, float, float, float]:
        hx, hy = self.half
        return (self.cx - hx, self.cy - hy, self.cx + hx, self.cy + hy)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside) at points (x, y) of equal shape."""
        px, py = x - self.cx, y - self.cy
        if self.poly is None:
            return np.hypot(px, py) - self.radius
        a = self.poly
        b = np.roll(a, -1, axis=0)
        ax, ay = a[:, 0], a[:, 1]
        ex, ey = b[:, 0] - ax, b[:, 1] - ay
        px_ = px[..., None]
        py_ = py[..., None]
        wx, wy = px_ - ax, py_ - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.sqrt(((wx - t * ex) ** 2 + (wy - t * ey) ** 2).min(axis=-1))
        # even-odd crossing test for a horizontal ray to +x
        by = b[:, 1]
        straddle = (ay > py_) != (by > py_)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = ax + ex * (py_ - ay) / ey
        inside = (straddle & (px_ < xint)).sum(axis=-1) % 2 == 1
        return np.where(inside, -d, d)


# --------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------

def _pale(rng: np.random.Generator) -> np.ndarray:
    """A light, low-saturation colour (HSV-ish: s in .05-.18, v in .88-.98)."""
    h = rng.uniform(0, 6)
    s = rng.uniform(0.05, 0.18)
    v = rng.uniform(0.88, 0.98)
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    img = np.empty((h, w, 3), dtype=np.float64)
    if kind == 0:    # white-ish
        base = rng.uniform(242, 255) + rng.uniform(-3, 3, 3)
        img[:] = base
    elif kind == 1:  # light grey
        img[:] = rng.uniform(205, 228) + rng.uniform(-2, 2, 3)
    elif kind == 2:  # pale beige
        img[:] = np.array([240.0, 230.0, 208.0]) + rng.uniform(-8, 8) + rng.uniform(-4, 4, 3)
    else:            # soft vertical gradient between two pale colours
        c0, c1 = _pale(rng), _pale(rng)
        t = np.linspace(0.0, 1.0, h)[:, None, None]
        img[:] = c0 * (1 - t) + c1 * t
    return img


# --------------------------------------------------------------------------
# Layout and rasterisation
# --------------------------------------------------------------------------

def _separated(b0, b1, gap: float) -> bool:
    return (b0[2] + gap <= b1[0] or b1[2] + gap <= b0[0]
            or b0[3] + gap <= b1[1] or b1[3] + gap <= b0[1])


def _layout(w: int, h: int, n: int, rng: np.random.Generator, size_frac: tuple[float, float] = SIZE_FRAC) -> list[_Obj]:
    short = min(w, h)
    while True:
        for _attempt in range(40):
            objs: list[_Obj] = []
            ok = True
            for _ in range(n):
                shape = SHAPES[rng.integers(len(SHAPES))]
                placed = False
                for _try in range(60):
                    o = _Obj(shape, rng.uniform(*size_frac) * short, rng)
                    hx, hy = o.half
                    lo_x, hi_x = MARGIN + hx, w - MARGIN - hx
                    lo_y, hi_y = MARGIN + hy, h - MARGIN - hy
                    if lo_x > hi_x or lo_y > hi_y:
                        continue
                    o.place(rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
                    if all(_separated(o.abox(), q.abox(), GAP) for q in objs):
                        objs.append(o)
                        placed = True
                        break
                if not placed:
                    ok = False
                    break
            if ok:
                return objs
        n -= 1  # practically never reached; keeps the loop finite


def _coverage(o: _Obj, w: int, h: int, outline: float):
    """Return (y0, x0, cov_total, cov_inner) on a patch around the object.

    cov_total: fraction of the 3x3 sub-samples with sdf < 0.
    cov_inner: fraction with sdf < -outline (the fill, inside the outline).
    """
    bx0, by0, bx1, by1 = o.abox()
    x0, y0 = max(0, int(math.floor(bx0)) - 1), max(0, int(math.floor(by0)) - 1)
    x1, y1 = min(w, int(math.ceil(bx1)) + 2), min(h, int(math.ceil(by1)) + 2)
    # 1) distance at pixel centres.  The SDF is a true Euclidean distance
    #    (1-Lipschitz) and sub-samples lie within sqrt(2)/3 < 0.5 px of the
    #    centre, so pixels further than 0.5 px from a level set are uniform.
    Xc, Yc = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    dc = o.sdf(Xc, Yc)
    tot = (dc < 0).astype(np.float64)
    inner = (dc < -outline).astype(np.float64)
    # 2) supersample only the pixels in a band around either level set.
    band = (np.abs(dc) < 0.5) | (np.abs(dc + outline) < 0.5)
    iy, ix = np.nonzero(band)
    if iy.size:
        off = (np.arange(SUB) - (SUB - 1) / 2.0) / SUB       # -1/3, 0, 1/3
        ox, oy = np.meshgrid(off, off)
        xs = Xc[iy, ix][:, None] + ox.ravel()[None, :]       # (m, SUB*SUB)
        ys = Yc[iy, ix][:, None] + oy.ravel()[None, :]
        d = o.sdf(xs, ys)
        tot[iy, ix] = (d < 0).mean(axis=1)
        inner[iy, ix] = (d < -outline).mean(axis=1)
    if outline <= 0:
        inner = tot
    return y0, x0, tot, inner


def render_independent(seed: int, hard: bool = False) -> tuple[Image.Image, list[dict]]:
    """Render one scene; same seed -> same image and objects. hard=True: the hard world of issue 14
    (three objects of HARD_SIZE_FRAC of the shorter side, sides HARD_MIN_SIDE..HARD_MAX_SIDE, saved
    as JPEG at HARD_JPEG_QUALITY)."""
    rng = np.random.default_rng([seed, 1] if hard else seed)
    lo, hi = (HARD_MIN_SIDE, HARD_MAX_SIDE) if hard else (MIN_SIDE, MAX_SIDE)
    w = int(rng.integers(lo, hi + 1))
    h = int(rng.integers(lo, hi + 1))
    img = _background(w, h, rng)
    outline = float(rng.uniform(1.0, 2.0)) if rng.random() < 0.5 else 0.0
    n = 3 if hard else int(rng.integers(1, 4))
    objs = _layout(w, h, n, rng, HARD_SIZE_FRAC if hard else SIZE_FRAC)

    names = list(COLOURS)
    out: list[dict] = []
    for o in objs:
        cname = names[rng.integers(len(names))]
        fill = np.clip(np.array(COLOURS[cname], float)
                       + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
        edge = fill * 0.7
        y0, x0, tot, inner = _coverage(o, w, h, outline)
        ring = tot - inner
        patch = img[y0:y0 + tot.shape[0], x0:x0 + tot.shape[1]]
        patch[:] = (patch * (1.0 - tot)[..., None]
                    + fill * inner[..., None] + edge * ring[..., None])
        rows = np.nonzero(tot.max(axis=1) > 0)[0]
        cols = np.nonzero(tot.max(axis=0) > 0)[0]
        box = (int(x0 + cols[0]), int(y0 + rows[0]),
               int(x0 + cols[-1] + 1), int(y0 + rows[-1] + 1))
        out.append({"colour": cname, "shape": o.shape, "box": box})

    img += rng.integers(-NOISE, NOISE + 1, img.shape)
    arr = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    out.sort(key=lambda d: (d["box"][0] + d["box"][2]) / 2.0)
    image = Image.fromarray(arr, "RGB")
    if hard:
        import io

        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=HARD_JPEG_QUALITY)
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return image, out


def caption_objects(objects: list[dict]) -> list[tuple[str, str]]:
    """(colour, shape) pairs in the given (left-to-right) order."""
    return [(o["colour"], o["shape"]) for o in objects]
