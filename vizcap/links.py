"""A view of the app as a link: what a teacher prepares and opens again.

    /explorer?image=scene:42&word=3&method=rollout&normalize=max&model=shapes-free

opens ShapeScenes example 42 at its third word with rollout, max-normalised, on the shipped twin whose
attention was left free (`model` names a shipped checkpoint; without it the app keeps its model). Every setting that
decides what the explorer draws has a query parameter; `to_query` writes only the ones that differ
from the defaults, so links stay short, and `parse` reads any link back, turning each value it cannot
use into a one-line message (the rest of the link still applies). Pure functions: the app's pages
call them; tests need no Streamlit.

Images in links:
    scene:N                         ShapeScenes example N (every number always draws the same scene)
    compose:BG/OBJ/OBJ…             a composed scene: BG a background name with "-" for spaces, each
                                    OBJ colour-shape-x-y-size[-angle], x, y and size in percent
                                    (compose:white/red-star-25-50-30/blue-circle-75-50-30)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .compose import BACKGROUNDS, Placement, problems as compose_problems
from .files import SHIPPED_TITLES, shipped_names
from .strategies import DecodingParams, validate
from .maps import METHODS, NORMALIZATIONS

MAX_SCENE = 2**31 - 1
# the app's first picture: a pair on which the default model's five decoding strategies (the decoding lab's
# starting settings) do not all write the same caption (scene 7 until the default of 2026-12-05;
# tests/test_twin.py holds it)
DEFAULT_SCENE = 1
DECODING_FIELDS = tuple(f.name for f in fields(DecodingParams))


@dataclass(frozen=True)
class View:
    image: str = f"scene:{DEFAULT_SCENE}"
    word: int | None = None  # 1-based; None: the page's own choice (the first content word)
    method: str = "cross_attention"
    layer: int | None = None  # None: the mean over layers
    head: int | None = None
    normalize: str = "max"
    sinks: bool = False
    decoding: DecodingParams = DecodingParams()
    model: str | None = None  # a shipped checkpoint's name (files.SHIPPED_TITLES); None: the app's current model


def to_query(view: View) -> dict[str, str]:
    """The query parameters of `view` that differ from the defaults, in a fixed order."""
    default = View()
    out: dict[str, str] = {}
    for name in ("image", "word", "method", "layer", "head", "normalize", "sinks", "model"):
        value = getattr(view, name)
        if value != getattr(default, name):
            out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    for name in DECODING_FIELDS:
        value = getattr(view.decoding, name)
        if value != getattr(default.decoding, name):
            out[name] = str(value)
    return out


def parse(query) -> tuple[View, list[str]]:
    """A View from query parameters (a mapping of str to str, or to a list whose last item counts),
    and one-line messages for the values that could not be used (their defaults stay)."""
    q = {k: (v[-1] if isinstance(v, (list, tuple)) and v else v) for k, v in dict(query).items()}
    view, notes = View(), []

    def bad(name: str, why: str) -> None:
        shown = str(q[name])
        notes.append(f"link: {name}={shown[:40] + ('…' if len(shown) > 40 else '')} ignored ({why})")

    if "image" in q:
        problem = image_problem(str(q["image"]))
        if problem:
            bad("image", problem)
        else:
            view = replace(view, image=str(q["image"]))
    for name, lo in (("word", 1), ("layer", 0), ("head", 0)):
        if name in q:
            value = _int(q[name])
            if value is None or value < lo:
                bad(name, f"a whole number from {lo}")
            else:
                view = replace(view, **{name: value})
    if "model" in q:
        if q["model"] in shipped_names():
            view = replace(view, model=q["model"])
        else:
            bad("model", "a shipped model: " + ", ".join(shipped_names() or SHIPPED_TITLES))
    if "method" in q:
        if q["method"] in METHODS:
            view = replace(view, method=q["method"])
        else:
            bad("method", "one of " + ", ".join(METHODS))
    if "normalize" in q:
        if q["normalize"] in NORMALIZATIONS:
            view = replace(view, normalize=q["normalize"])
        else:
            bad("normalize", "one of " + ", ".join(NORMALIZATIONS))
    if "sinks" in q:
        if q["sinks"] in ("0", "1"):
            view = replace(view, sinks=q["sinks"] == "1")
        else:
            bad("sinks", "0 or 1")
    decoding = {}
    for f in fields(DecodingParams):
        if f.name not in q:
            continue
        raw = str(q[f.name])
        kind = type(getattr(DecodingParams(), f.name)) if f.name != "seed" else int
        value = {int: _int, float: _float, str: lambda s: s}[kind](raw)
        if value is None or validate({**_fields(view.decoding), **decoding, f.name: value}):
            bad(f.name, f"not a valid {f.name.replace('_', ' ')}")
        else:
            decoding[f.name] = value
    if decoding:
        view = replace(view, decoding=DecodingParams(**{**_fields(view.decoding), **decoding}))
    return view, notes


def fit(view: View, n_layers: int, n_heads: int) -> tuple[View, list[str]]:
    """`view` for a model of `n_layers` decoder layers and `n_heads` heads: a layer or head it does not
    have is dropped (the mean over all stays) with a one-line message, never quietly changed."""
    notes = []
    for name, n in (("layer", n_layers), ("head", n_heads)):
        value = getattr(view, name)
        if value is not None and value >= n:
            notes.append(f"link: {name}={value} ignored (this model has {name}s 0 to {n - 1}; showing all {name}s)")
            view = replace(view, **{name: None})
    return view, notes


def word_note(word: int, n_words: int) -> str | None:
    """The message for a link's word (1-based) that a caption of `n_words` words does not have, else None."""
    if 1 <= word <= n_words:
        return None
    return f"link: word={word} ignored (this caption has {n_words} word{'s' if n_words != 1 else ''})"


def step_note(asked: str, n_steps: int) -> str | None:
    """The message for a lesson link's step that is not 1 … n_steps, else None."""
    if asked.isdigit() and 1 <= int(asked) <= n_steps:
        return None
    return f"link: step={asked[:20]} ignored (a step number from 1 to {n_steps}; showing step 1)"


def image_problem(image: str) -> str | None:
    """None if `image` names a picture a link can carry, else why not (one line)."""
    kind, _, rest = image.partition(":")
    if kind == "scene":
        n = _int(rest)
        return None if n is not None and 0 <= n <= MAX_SCENE else f"scene:N with N from 0 to {MAX_SCENE}"
    if kind == "compose":
        try:
            placements, _ = parse_compose(rest)
        except ValueError as e:
            return str(e)
        found = compose_problems(placements)
        return found[0] if found else None
    return "scene:N or compose:…"


def compose_spec(placements: list[Placement], background: str) -> str:
    """The compose:… form of a composed scene (positions and sizes rounded to whole percent)."""
    objects = [f"{p.colour}-{p.shape}-{round(p.x * 100)}-{round(p.y * 100)}-{round(p.size * 100)}"
               + (f"-{round(p.angle)}" if round(p.angle) else "") for p in placements]
    return "compose:" + "/".join([background.replace(" ", "-"), *objects])


def parse_compose(spec: str) -> tuple[list[Placement], str]:
    """(placements, background) from the part after "compose:"; ValueError (one line) if malformed."""
    parts = spec.split("/")
    background = parts[0].replace("-", " ")
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(b.replace(' ', '-') for b in BACKGROUNDS)}")
    placements = []
    for i, part in enumerate(parts[1:], 1):
        bits = part.split("-")
        numbers = [_int(b) for b in bits[2:]]
        if len(bits) not in (5, 6) or any(n is None for n in numbers):
            raise ValueError(f"object {i} must read colour-shape-x-y-size[-angle] with whole percents")
        x, y, size, *angle = numbers
        placements.append(Placement(bits[0], bits[1], x / 100, y / 100, size / 100, float(angle[0]) if angle else 0.0))
    return placements, background


def _fields(params: DecodingParams) -> dict:
    return {name: getattr(params, name) for name in DECODING_FIELDS}


def _int(text) -> int | None:
    text = str(text).strip()
    if not text.lstrip("-").isdigit() or len(text) > 12:
        return None
    return int(text)


def _float(text) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
