"""The shipped default model (vizcap/checkpoints/shapes/): how well it captions held-out scenes and
scenes drawn by an independent renderer. These tests fail, rather than skip, when the checkpoint is
missing: the package promises that `vizcap.load()` works out of the box."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import vizcap
from independent_renderer import caption_objects, render_independent
from train.shapes import evaluate_scenes, heldout_seeds
from vizcap.captioner import DEFAULT_CHECKPOINT
from vizcap.evaluate import parse_objects


@pytest.fixture(scope="module")
def shipped():
    return vizcap.load()


def test_shipped_checkpoint_is_complete():
    names = {p.name for p in DEFAULT_CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= names
    assert "resume.safetensors" not in names  # a finished run, not one still in progress


def test_metrics_json_names_the_command():
    metrics = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())
    assert metrics["command"].startswith("python -m train shapes")
    assert metrics["heldout"]["n_scenes"] >= 100
    for key in ("exact", "colour_acc", "shape_acc", "bleu4", "cider"):
        assert key in metrics["heldout"], key


def test_heldout_scenes(shipped):
    """The whole held-out split of metrics.json (500 scenes: on 100, one error moves shape accuracy
    by 0.5 points); re-evaluating must also reproduce the recorded figures exactly."""
    recorded = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())["heldout"]
    scores = evaluate_scenes(shipped, heldout_seeds(recorded["n_scenes"]), batch=100, progress=False)
    assert scores["n_scenes"] == 500
    for key in ("exact", "colour_acc", "shape_acc", "count_acc", "bleu4", "cider"):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-4), key
    assert scores["exact"] >= 0.90, scores
    assert scores["colour_acc"] >= 0.97, scores
    assert scores["shape_acc"] >= 0.97, scores


def test_independent_renderer(shipped):
    """Scenes drawn by separate code (tests/independent_renderer.py): the share of true objects that
    the caption names as '<colour> <shape>' (order-free, counts expanded)."""
    scenes = [render_independent(seed) for seed in range(40)]
    captions = shipped.caption_batch([image for image, _ in scenes])
    total = recalled = 0
    misses = []
    for (image, objects), caption in zip(scenes, captions):
        truth = Counter(caption_objects(objects))
        named = Counter(parse_objects(caption))
        hit = sum((truth & named).values())
        total += sum(truth.values())
        recalled += hit
        if hit < sum(truth.values()):
            misses.append((caption, sorted(truth.elements())))
    assert total > 40
    assert recalled / total >= 0.90, f"recall {recalled}/{total}; misses: {misses[:8]}"
