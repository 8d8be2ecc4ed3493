"""The shipped model's heatmaps point at the objects they name: on held-out ShapeScenes and on
scenes drawn by the independent renderer (tests/independent_renderer.py), which shares no code with
vizcap.scenes."""

from __future__ import annotations

import numpy as np
import pytest

import vizcap
from vizcap.scenes import Scene, SceneObject, _caption_order, describe
from vizcap.trust import evaluate_trust

from independent_renderer import render_independent


@pytest.fixture(scope="module")
def shipped():
    return vizcap.load()


def independent_scene(i: int) -> Scene:
    image, objects = render_independent(10_000 + i)
    short = min(image.size)
    objs = [SceneObject(o["colour"], o["shape"], tuple(o["box"]), (o["box"][2] - o["box"][0]) / short) for o in objects]
    ordered = _caption_order(objs)
    return Scene(image=image, objects=ordered, caption=describe(ordered), mask=np.zeros(image.size[::-1], np.uint8))


def test_pointing_game_on_heldout_scenes(shipped):
    r = evaluate_trust(shipped, n=60, curves_n=0, progress=False)
    best = r["best_method"]
    assert r["n_words"] >= 60
    assert r["pointing"][best]["hit"] >= 0.90, r["pointing"]
    assert r["pointing"][best]["chance"] < 0.5
    # every method beats chance by a wide margin on a model whose captions are right
    for method, p in r["pointing"].items():
        assert p["hit"] > p["chance"] + 0.2, (method, p)


def test_pointing_game_on_independent_renderer(shipped):
    r = evaluate_trust(shipped, n=40, curves_n=0, progress=False, scene_fn=independent_scene)
    best = r["best_method"]
    assert r["caption"]["object_recall"] >= 0.90, r["caption"]
    assert r["pointing"][best]["hit"] >= 0.85, r["pointing"]
    assert r["pointing"][best]["hit"] > 2 * r["pointing"][best]["chance"]
