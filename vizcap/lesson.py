"""A ten-minute lesson a teacher can project: six steps, each one sentence and one existing view.

The steps are data (what to show and what to say); the app's Lesson page draws them with the same
figures as the other pages, and each step's "open in the explorer" link is a vizcap.links view.
Written for the shipped ShapeScenes models, whose world is known. A step that needs one of them
names it (`Step.model`): "Is attention an explanation?" and the decoding step use the twin whose
attention was left free, trained on every right phrasing of a scene.

The scenes of those two steps were found by `python -m vizcap.lesson` (the first held-out scene with
the property; tests/test_twin.py holds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scenes import SHAPE_WORDS

PHOTO = "photo"  # the image of the last step: a picture unlike anything the model was trained on


EVIDENCE_SCENE = "scene:201"  # the first found by `python -m vizcap.lesson` (on shapes-free)
DECODING_SCENE = "scene:29"  # idem


@dataclass(frozen=True)
class Step:
    title: str
    say: str  # the one sentence the teacher reads out
    image: str  # a links image (scene:N, compose:…) or PHOTO
    view: str  # "predict" | "heads" | "evidence" | "decoding" | "failure" | "photo"
    method: str = "cross_attention"
    model: str | None = None  # a shipped checkpoint the step needs (files.SHIPPED_TITLES); None: the chosen one
    about_model: bool = False  # the sentence describes `model` itself: where it is missing, the step is left out


STEPS: tuple[Step, ...] = (
    # scene 70: every head of the last layer finds the shape word's object, and no two alike (scene 42 until the
    # default of 2026-12-05, on which two heads drew nearly one map; tests/test_shipped_model.py holds it)
    Step("1 · Predict, then reveal",
         "The model is about to write the shape word of this caption: point at the screen where you think it "
         "will look, then press Reveal.", "scene:70", "predict"),
    Step("2 · One word, every head",
         "The map you just saw is an average: here is the same word seen by each attention head of the last "
         "layer. This model was trained to look at the object it names, so every head finds it — but each "
         "spreads its attention in its own way.", "scene:70", "heads"),
    Step("3 · Is attention an explanation?",
         "This twin learned from captions alone, and here its attention's hottest cell misses the object: grey "
         "that cell and the word stays, grey the object and the word changes — relevancy and occlusion, which "
         "ask the model, find the object.", EVIDENCE_SCENE, "evidence", model="shapes-free", about_model=True),
    Step("4 · Greedy or beam search",
         "Greedy decoding takes the likeliest word at every step; beam search keeps several captions alive and "
         "picks the best whole caption. Do they agree on this picture? Follow the tree beam search explored: "
         "which captions did it drop, and how far behind were they?",
         DECODING_SCENE, "decoding", model="shapes-free"),
    Step("5 · A planted failure: a tiny object",
         "This star is half the smallest size the model ever saw in training: compare its caption with the "
         "truth, and see where it looked for the shape it named.",
         "compose:light-grey/red-star-25-30-7/blue-circle-65-60-35", "failure"),
    Step("6 · A photo it has never seen",
         "This model only knows coloured shapes, so it describes a street scene as shapes — and is very sure of "
         "itself: a word's probability is how confident the model is, not whether the word is right.",
         PHOTO, "photo"),
)


def focus_word(tokens: list[str], truth: str | list[str] | None = None) -> int:
    """The word a step is about: the first word that differs from the true caption, if one is given
    and differs; else the caption's last shape word (else its last word). A scene with several right
    captions (`Scene.captions`) may be given them all: the caption differs from the right caption it
    follows longest, and not at all if it follows one to its end."""
    truths = [truth] if isinstance(truth, str) else list(truth or [])
    differences = [[i for i, (a, b) in enumerate(zip(tokens, t.split())) if a != b] for t in truths]
    if differences and all(differences):
        return max(d[0] for d in differences)
    shape = [i for i, w in enumerate(tokens) if w.lower() in SHAPE_WORDS]
    return shape[-1] if shape else max(len(tokens) - 1, 0)


def photo_like(width: int = 320, height: int = 240) -> Image.Image:
    """A street-scene-like picture drawn from code (no photo ships with vizcap): sky, grass, a road,
    a red car with windows and wheels, a tree. Deterministic."""
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (np.array([110, 160, 225]) * (1 - y) + np.array([200, 225, 245]) * y)
    img = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8).copy())
    d = ImageDraw.Draw(img)
    horizon = int(height * 0.55)
    d.rectangle([0, horizon, width, height], fill=(86, 140, 60))
    d.polygon([(int(width * 0.35), horizon), (int(width * 0.65), horizon), (width, height), (0, height)], fill=(90, 90, 95))
    d.rectangle([int(width * 0.78), int(height * 0.25), int(width * 0.82), horizon + 10], fill=(90, 60, 35))
    d.ellipse([int(width * 0.70), int(height * 0.08), int(width * 0.90), int(height * 0.36)], fill=(40, 110, 45))
    x0, y0 = int(width * 0.30), int(height * 0.58)
    d.rounded_rectangle([x0, y0 + 18, x0 + 130, y0 + 58], radius=10, fill=(200, 30, 35))
    d.rounded_rectangle([x0 + 25, y0, x0 + 100, y0 + 26], radius=8, fill=(185, 25, 30))
    d.rectangle([x0 + 33, y0 + 5, x0 + 60, y0 + 20], fill=(170, 210, 235))
    d.rectangle([x0 + 66, y0 + 5, x0 + 93, y0 + 20], fill=(170, 210, 235))
    for cx in (x0 + 28, x0 + 102):
        d.ellipse([cx - 13, y0 + 46, cx + 13, y0 + 72], fill=(25, 25, 25))
        d.ellipse([cx - 5, y0 + 54, cx + 5, y0 + 64], fill=(160, 160, 160))
    return img.filter(ImageFilter.GaussianBlur(0.6))


# -- "Is attention an explanation?" -------------------------------------------------------------


CLEAR_MISS = 0.5  # Evidence.teaches: the attention on the object at most half its peak elsewhere


@dataclass(frozen=True)
class Evidence:
    """One word's attention put to the test: grey the map's hottest cell, then the object's cells."""
    word: int  # index of the shape word in the caption
    text: str  # that word
    top_cell: int  # the attention map's hottest cell (row by row)
    top_on_object: bool  # does that cell touch the object's box?
    object_cells: tuple[int, ...]  # the cells the object's box touches
    p_word: float  # the word's probability on the whole picture
    without_top: tuple[str, float, float]  # (likeliest word, its p, p of the caption's word) with the top cell grey
    without_object: tuple[str, float, float]  # the same with the object's cells grey
    found_by: dict  # method -> does its hottest cell touch the object's box?
    object_peak: float  # the map's hottest cell on the object's box ÷ its hottest cell anywhere

    @property
    def teaches(self) -> bool:
        """The step's story holds: the attention misses, and clearly (on the object it stays at most
        CLEAR_MISS of its peak, so the picture shows the miss, not a near tie), greying its pick keeps
        the word, greying the object changes it, and every method in found_by finds the object."""
        return (not self.top_on_object and self.object_peak <= CLEAR_MISS and self.without_top[0] == self.text
                and self.without_object[0] != self.text and all(self.found_by.values()))


def attention_evidence(captioner, exp, scene, method: str = "cross_attention",
                       others: tuple[str, ...] = ("relevancy", "occlusion")) -> Evidence | None:
    """For the first correctly named object whose shape word's `method` map points off the object's box:
    the deletion test of that map's hottest cell against the object's own cells, and whether `others`
    point at the object. None when every such map points at its object."""
    from .explain import word_after_greying
    from .trust import box_coverage, word_targets

    maps = exp.maps(method)
    for shape_at, _, members in word_targets(exp.tokens, scene):
        cover = box_coverage(scene, members, captioner.grid).ravel()
        top = int(np.argmax(maps[shape_at]))
        if cover[top] > 0:
            continue
        hidden = np.zeros((2, cover.size), bool)
        hidden[0, top] = True
        hidden[1] = cover > 0
        without_top, without_object = word_after_greying(captioner, exp, shape_at, hidden)
        found = {m: bool(cover[int(np.argmax(exp.maps(m)[shape_at]))] > 0) for m in others}
        word_map = np.asarray(maps[shape_at], dtype=float).ravel()
        peak = float(word_map[top])
        on_object = float(np.max(np.where(cover > 0, word_map, -np.inf)))
        return Evidence(shape_at, exp.tokens[shape_at].strip(), top, False, tuple(int(c) for c in np.flatnonzero(cover)),
                        float(exp.probs[shape_at]), without_top, without_object, found,
                        on_object / peak if peak > 0 else 0.0)
    return None


def find_scenes(captioner, first: int = 0, last: int = 400) -> dict:
    """The first ShapeScenes examples (scene:N, N in first … last) for the steps that need a property:
    "evidence" (attention_evidence(...).teaches) and "decoding" (greedy and 5-beam captions differ, and
    both are right captions of the scene: two right answers, not a mistake)."""
    from .decoding import DecodingParams
    from .explain import explain
    from .scenes import render_scene

    found = {}
    for n in range(first, last + 1):
        scene = render_scene(n)
        if "evidence" not in found:
            exp = explain(captioner, scene.image)
            ev = attention_evidence(captioner, exp, scene)
            if ev is not None and ev.teaches:
                found["evidence"] = f"scene:{n}"
        if "decoding" not in found and len(scene.objects) >= 2:
            greedy = captioner.caption_batch([scene.image])[0]
            beam = explain(captioner, scene.image, DecodingParams(strategy="beam", beams=5)).caption
            if greedy != beam and greedy in scene.captions and beam in scene.captions:  # two right answers
                found["decoding"] = f"scene:{n}"
        if len(found) == 2:
            break
    return found


if __name__ == "__main__":  # python -m vizcap.lesson [MODEL]: the scenes for the steps that need a property
    import argparse
    import json

    from . import load
    from .backend import CheckpointError

    parser = argparse.ArgumentParser(prog="python -m vizcap.lesson",
                                     description="Find the first ShapeScenes scenes that the lesson's evidence and "
                                                 "decoding steps can use on a model; prints them as JSON.")
    parser.add_argument("model", nargs="?", default="shapes-free", help="a shipped model's name or a checkpoint folder "
                        "(default shapes-free)")
    parser.add_argument("--last", type=int, default=400, metavar="N", help="look at scenes 0 … N (default 400)")
    args = parser.parse_args()
    try:
        captioner = load(args.model)
    except CheckpointError as e:
        parser.exit(2, f"error: {e}\n")
    print(json.dumps(find_scenes(captioner, last=args.last), indent=1))
