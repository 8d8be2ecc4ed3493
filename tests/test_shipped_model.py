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
    """The whole held-out split of metrics.json (2,000 scenes: on 500, one missed object moves recall
    by 0.0008, as much as the margin issue 14's bar is met by); re-evaluating (against the references
    it was scored with) must reproduce the recorded figures exactly, and they must meet the issue's
    bars (exact >= 0.97, recall >= 0.99)."""
    recorded = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())["heldout"]
    references = recorded.get("references", "canonical")  # how it was scored: before issue 24, canonical only
    scores = evaluate_scenes(shipped, heldout_seeds(recorded["n_scenes"]), batch=100, progress=False,
                             references=references)
    assert scores["n_scenes"] == 2000
    for key in ("exact", "object_recall", "colour_acc", "shape_acc", "count_acc", "bleu4", "cider"):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-4), key
    assert scores["exact"] >= 0.97 and scores["object_recall"] >= 0.99, scores
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


def test_the_shipped_encoder_is_a_vision_transformer(shipped):
    """Issue 14: a timm VisionTransformer (conv stem) whose self-attention the explanation captures."""
    import numpy as np
    from PIL import Image

    vit = shipped.model.encoder.model
    assert type(vit).__name__ == "VisionTransformer" and shipped.cfg.encoder == "vizcap_vit_convstem"
    assert tuple(vit.patch_embed.grid_size) == shipped.grid and vit.num_prefix_tokens == 1
    exp = shipped.explain(Image.new("RGB", (128, 128), (200, 200, 200)))
    assert exp.encoder.shape == (len(vit.blocks), vit.blocks[0].attn.num_heads, 1 + 64, 1 + 64)
    assert np.allclose(exp.encoder.sum(-1), 1, atol=1e-5)


def test_hard_heldout_scenes(shipped):
    """The hard split of metrics.json (three objects of 12-22 % of the short side, 300-640 px, JPEG 40)
    re-evaluated (2,000 scenes): the recorded figures exactly, and issue 14's bars (recall >= 0.95,
    exact >= 0.85) under them."""
    from vizcap.scenes import HARD

    recorded = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())["heldout_hard"]
    scores = evaluate_scenes(shipped, heldout_seeds(recorded["n_scenes"]), batch=100, progress=False, config=HARD,
                             references=recorded.get("references", "canonical"))
    for key in ("exact", "object_recall", "colour_acc", "shape_acc"):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-4), key
    assert scores["n_scenes"] == 2000
    assert scores["object_recall"] >= 0.95 and scores["exact"] >= 0.85, scores


def test_the_lessons_claims_hold_for_the_shipped_model(shipped):
    """The Lesson page's sentences are about this model: on step 2's scene every head of the last layer
    has its hottest cell on the named object (and no two heads have the same map), the tiny star of the
    planted failure is misnamed, and the street picture is captioned as shapes. (The steps on the twin
    whose attention was left free: tests/test_twin.py.)"""
    import numpy as np

    from vizcap.compose import compose_scene
    from vizcap.lesson import STEPS, focus_word, photo_like
    from vizcap.links import parse_compose
    from vizcap.scenes import SHAPES, render_scene
    from vizcap.trust import box_coverage, word_targets

    heads = next(s for s in STEPS if s.view == "heads")
    scene = render_scene(int(heads.image.split(":")[1]))
    exp = shipped.explain(scene.image)
    word = focus_word(exp.tokens)
    members = next(m for shape_j, _, m in word_targets(exp.tokens, scene) if shape_j == word)
    touch = box_coverage(scene, members, shipped.grid) > 0
    maps = [exp.maps("cross_attention", layer=-1, head=h)[word] for h in range(shipped.cfg.decoder_heads)]
    assert all(touch[np.unravel_index(np.argmax(m), m.shape)] for m in maps)
    assert all(not np.allclose(a, b, atol=0.02) for i, a in enumerate(maps) for b in maps[i + 1:])
    failure = next(s for s in STEPS if s.view == "failure")
    placements, background = parse_compose(failure.image.split(":", 1)[1])
    tiny = compose_scene(placements, background=background)
    assert shipped.caption(tiny.image) != tiny.caption
    photo = shipped.caption(photo_like())
    assert any(shape in photo for shape in SHAPES), photo


def test_readme_states_the_checkpoints_size():
    """README's "the default checkpoint (X MB of safetensors)" is the shipped file's size."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    stated = float(re.search(r"default checkpoint \(([\d.]+) MB of safetensors\)", readme).group(1))
    assert stated == round((DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size / 1e6, 1)


def test_readme_quotes_metrics_json():
    """README's "Result on N held-out scenes" sentence and its training time are metrics.json's
    figures (three decimals; minutes to one decimal), so a retrained checkpoint cannot leave them stale."""
    import re
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    metrics = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())
    normal, hard = metrics["heldout"], metrics["heldout_hard"]
    assert (f"Result on {normal['n_scenes']:,} held-out scenes (`metrics.json`): **exact match {normal['exact']:.3f}, "
            f"colour {normal['colour_acc']:.3f}, shape {normal['shape_acc']:.3f}, count {normal['count_acc']:.3f}, "
            f"object recall {normal['object_recall']:.3f}**") in readme
    assert (f"on {hard['n_scenes']:,} hard held-out scenes: exact {hard['exact']:.3f}, colour {hard['colour_acc']:.3f}, "
            f"shape {hard['shape_acc']:.3f}, object recall {hard['object_recall']:.3f}") in readme
    minutes = re.search(r"Time: \*\*([\d.]+) minutes of wall time\*\* \(`wall_seconds` (\d+)", readme)
    assert minutes, "README's Time sentence is missing"
    assert int(minutes.group(2)) == round(metrics["wall_seconds"])
    assert minutes.group(1) == f"{metrics['wall_seconds'] / 60:.1f}"
    assert metrics["command"].startswith("python -m train shapes") and f"{metrics['args']['steps']:,} steps" in readme
    _assert_the_default_command_reproduces_it(metrics)


def _assert_the_default_command_reproduces_it(metrics: dict) -> None:
    """`python -m train shapes` is the shipped run: every training argument metrics.json records (the flags
    its command passed included) is today's default, the output folder aside, and it records them all."""
    from dataclasses import asdict

    from train.shapes import ShapesArgs

    defaults = asdict(ShapesArgs())
    recorded = metrics["args"]
    differ = {k: (recorded.get(k), v) for k, v in defaults.items() if k != "out" and recorded.get(k, v) != v}
    assert not differ, differ
    assert set(defaults) <= set(recorded), set(defaults) - set(recorded)
