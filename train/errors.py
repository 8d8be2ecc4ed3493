"""Where a ShapeScenes checkpoint's held-out captions go wrong: by number of objects, and whether the
only mistake is the relation word of a pair ("left of" for "right of", "above" for "below", ...).

    python -m train.errors shapes-free --n 600
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter

from vizcap.scenes import RELATIONS, render_scene

from .shapes import heldout_seeds

_RELATION = re.compile("|".join(RELATIONS))


def _without_relation(caption: str) -> str:
    return _RELATION.sub("R", caption)


def tally(captions: list[str], scenes: list) -> dict:
    """{"scenes": {n objects: count}, "wrong": {n: count}, "relation_only": count}."""
    scenes_by_n, wrong_by_n, relation_only = Counter(), Counter(), 0
    for caption, scene in zip(captions, scenes):
        n = len(scene.objects)
        scenes_by_n[n] += 1
        if caption in scene.captions:
            continue
        wrong_by_n[n] += 1
        relation_only += any(_without_relation(c) == _without_relation(caption) for c in scene.captions)
    return {"scenes": dict(sorted(scenes_by_n.items())), "wrong": dict(sorted(wrong_by_n.items())),
            "relation_only": relation_only}


def main(argv: list[str] | None = None) -> None:
    import vizcap

    p = argparse.ArgumentParser(prog="python -m train.errors", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint name (shapes, shapes-free) or folder")
    p.add_argument("--n", type=int, default=600, help="held-out scenes (the first n)")
    args = p.parse_args(argv)
    captioner = vizcap.load(args.checkpoint)
    scenes = [render_scene(seed) for seed in heldout_seeds(args.n)]
    captions = []
    for i in range(0, len(scenes), 64):
        captions += captioner.caption_batch([s.image for s in scenes[i : i + 64]])
    print(json.dumps(tally(captions, scenes)))


if __name__ == "__main__":
    main()
