"""Where a ShapeScenes checkpoint's held-out captions go wrong: by number of objects, whether the
only mistake is the relation word of a pair ("left of" for "right of", "above" for "below", ...), how
many of the scenes and errors have a colour repeated (objects that only shape and place tell apart),
and how many state a pair's relation along an axis that the model's square input turns (the picture is
resized to S×S whatever its aspect ratio, so a pair 1.4 times wider apart than tall in a 184×310 picture
is taller apart than wide in what the model sees).

    python -m train.errors shapes-free --n 600
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter

from vizcap.scenes import RELATIONS, pair_relation, render_scene

from .shapes import heldout_seeds

_RELATION = re.compile("|".join(RELATIONS))


def _without_relation(caption: str) -> str:
    return _RELATION.sub("R", caption)


def axis_turned(scene) -> bool:
    """Whether the scene states a pair's relation along the axis on which its objects are further apart in
    the picture, but are nearer along it once the picture is squeezed to a square (the model's input)."""
    if pair_relation(scene.objects) is None:
        return False
    (x1, y1), (x2, y2) = (o.centre for o in scene.objects)
    width, height = scene.image.size
    return (abs(x2 - x1) >= abs(y2 - y1)) != (abs(x2 - x1) / width >= abs(y2 - y1) / height)


def tally(captions: list[str], scenes: list) -> dict:
    """{"scenes": {n objects: count}, "wrong": {n: count}, "relation_only": count, "colour_repeated":
    {"scenes": {n: count}, "wrong": {n: count}}, "axis_turned": {"scenes": count, "wrong": count}}
    (colour_repeated: the scenes in which two objects share a colour; axis_turned: `axis_turned`)."""
    scenes_by_n, wrong_by_n, relation_only = Counter(), Counter(), 0
    repeated_by_n, repeated_wrong_by_n = Counter(), Counter()
    turned = Counter()
    for caption, scene in zip(captions, scenes):
        n = len(scene.objects)
        repeated = len({o.colour for o in scene.objects}) < n
        turns = axis_turned(scene)
        scenes_by_n[n] += 1
        repeated_by_n[n] += repeated
        turned["scenes"] += turns
        if caption in scene.captions:
            continue
        wrong_by_n[n] += 1
        repeated_wrong_by_n[n] += repeated
        turned["wrong"] += turns
        relation_only += any(_without_relation(c) == _without_relation(caption) for c in scene.captions)
    counts = lambda c: {n: k for n, k in sorted(c.items()) if k}  # noqa: E731
    return {"scenes": counts(scenes_by_n), "wrong": counts(wrong_by_n), "relation_only": relation_only,
            "colour_repeated": {"scenes": counts(repeated_by_n), "wrong": counts(repeated_wrong_by_n)},
            "axis_turned": {"scenes": turned["scenes"], "wrong": turned["wrong"]}}


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
