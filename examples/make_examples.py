"""Writes the ShapeScenes example pictures README's commands use (each seed always draws the same scene):

    python examples/make_examples.py

photo.jpg is not made here: it is scikit-image's sample photograph `chelsea.png` (a cat; CC0, by Stefan
van der Walt; scikit-image 0.26.0, skimage/data/chelsea.png, SHA-256 596aa1e7…c4bb), saved as JPEG
quality 90 with Pillow."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SCENES = {"scene.png": 7, "scene42.png": 42}  # file -> ShapeScenes seed


def main() -> None:
    from vizcap.scenes import render_scene

    for name, seed in SCENES.items():
        scene = render_scene(seed)
        scene.image.save(HERE / name)
        print(f"wrote {HERE / name}: {scene.caption!r}")


if __name__ == "__main__":
    main()
