"""Writes tests/golden/: a fixed set of pictures and what `vizcap caption --json --maps all` prints for
them with the shipped model (greedy, beam 3, sampling seed 3). tests/test_golden.py re-runs the same
commands and compares, so a refactoring that changes any caption, probability or map is caught.

    python tests/make_golden.py        # only when a change of output is intended (a new checkpoint)
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(HERE.parents[1]))

# (file name, how it is made); the pictures are committed, so the renderers may change later
PICTURES = ("scene7.png", "scene42.png", "hard5.png", "independent3.png", "grey.png")
RUNS = {  # name -> extra CLI arguments
    "greedy": [],
    "beam": ["--strategy", "beam", "--beams", "3"],
    "sample": ["--strategy", "sample", "--top-k", "5", "--temperature", "1.5", "--seed", "3"],
}


def make_pictures() -> None:
    from vizcap.scenes import HARD, render_scene
    from vizcap.trust import independent_scene

    HERE.mkdir(exist_ok=True)
    render_scene(7).image.save(HERE / "scene7.png")
    render_scene(42).image.save(HERE / "scene42.png")
    render_scene(5, HARD).image.save(HERE / "hard5.png")
    independent_scene(3).image.save(HERE / "independent3.png")
    Image.fromarray(np.full((90, 140, 3), 128, np.uint8)).save(HERE / "grey.png")


def run(extra: list[str]) -> list[dict]:
    from vizcap.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["caption", *[str(HERE / p) for p in PICTURES], "--json", "--maps", "all", *extra])
    assert code == 0, code
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    for r in records:
        r["image"] = Path(r["image"]).name  # no path of this machine in the file
    return records


if __name__ == "__main__":
    make_pictures()
    golden = {name: run(extra) for name, extra in RUNS.items()}
    (HERE / "caption_maps_all.json").write_text(json.dumps(golden) + "\n")
    print(f"wrote {HERE / 'caption_maps_all.json'}")
