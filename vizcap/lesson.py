"""A ten-minute lesson a teacher can project: five steps, each one sentence and one existing view.

The steps are data (what to show and what to say); the app's Lesson page draws them with the same
figures as the other pages, and each step's "open in the explorer" link is a vizcap.links view.
Written for the shipped ShapeScenes model, whose world is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .scenes import SHAPE_WORDS
PHOTO = "photo"  # the image of the last step: a picture unlike anything the model was trained on


@dataclass(frozen=True)
class Step:
    title: str
    say: str  # the one sentence the teacher reads out
    image: str  # a links image (scene:N, compose:…) or PHOTO
    view: str  # "predict" | "heads" | "decoding" | "failure" | "photo"
    method: str = "cross_attention"


STEPS: tuple[Step, ...] = (
    Step("1 · Predict, then reveal",
         "The model is about to write the shape word of this caption: point at the screen where you think it "
         "will look, then press Reveal.", "scene:42", "predict"),
    Step("2 · One word, every head",
         "The map you just saw is an average: here is the same word seen by each attention head of the last "
         "layer. This model was trained to look at the object it names, so every head finds it — but each "
         "spreads its attention in its own way.", "scene:42", "heads"),
    Step("3 · Greedy or beam search",
         "Greedy decoding takes the likeliest word at every step; beam search keeps several captions alive and "
         "picks the best whole caption. Do they agree on this picture? Follow the tree beam search explored: "
         "which captions did it drop, and how far behind were they?",
         "scene:98", "decoding"),
    Step("4 · A planted failure: a tiny object",
         "This star is half the smallest size the model ever saw in training: compare its caption with the "
         "truth, and see where it looked for the shape it named.",
         "compose:light-grey/red-star-25-30-7/blue-circle-65-60-35", "failure"),
    Step("5 · A photo it has never seen",
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
