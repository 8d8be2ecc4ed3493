"""Trust metrics (vizcap.trust): word targets on ShapeScenes captions, the pointing game, mass in
box, Spearman's rho, the randomised model of the sanity check, and evaluate_trust end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vizcap import trust
from vizcap.explain import explain
from vizcap.scenes import COLOURS, PLURALS, SceneConfig, render_scene

SCENE_SEEDS = range(60)


def _truth_groups(scene):
    """(colour, shape) groups in caption order, with their object indices."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, obj in enumerate(scene.objects):
        groups.setdefault((obj.colour, obj.shape), []).append(i)
    return list(groups.items())


@pytest.mark.parametrize("config", [SceneConfig(), SceneConfig(size_words=True)], ids=["plain", "size_words"])
def test_word_targets_find_every_object_phrase_of_the_true_caption(config):
    seen_counts, seen_relations = False, False
    for seed in SCENE_SEEDS:
        scene = render_scene(seed, config)
        tokens = scene.caption.split()
        targets = trust.word_targets(tokens, scene)
        groups = _truth_groups(scene)
        assert len(targets) == len(groups), (scene.caption, targets)
        for (shape_j, colour_j, members), ((colour, shape), truth_members) in zip(targets, groups):
            assert tokens[shape_j] in (shape, PLURALS[shape]), scene.caption
            assert tokens[colour_j] == colour and colour_j == shape_j - 1, scene.caption
            assert members == truth_members
        assert sorted(i for _, _, m in targets for i in m) == list(range(len(scene.objects)))
        seen_counts |= any(len(m) > 1 for _, _, m in targets)
        seen_relations |= any(w in tokens for w in ("left", "right", "above", "below"))
    assert seen_counts and seen_relations, "the scenes should include counted objects and relations"


def test_word_targets_skip_wrongly_named_objects():
    scene = next(s for s in map(render_scene, SCENE_SEEDS) if len(_truth_groups(s)) >= 2)
    tokens = scene.caption.split()
    full = trust.word_targets(tokens, scene)
    # a wrong colour for the first object: that phrase is dropped, the second is still matched
    first_colour = full[0][1]
    wrong = next(c for c in COLOURS if c != tokens[first_colour])
    tokens_wrong = tokens[:first_colour] + [wrong] + tokens[first_colour + 1 :]
    assert trust.word_targets(tokens_wrong, scene) == full[1:]
    assert trust.word_targets([], scene) == []
    assert trust.word_targets(["a", "circle"], scene) == []  # no colour word: nothing to check


def test_pointing_game_by_hand():
    coverage = np.zeros((3, 4))
    coverage[1, 1:3] = [0.5, 1.0]  # the object touches two of twelve cells
    heat = np.zeros((3, 4))
    heat[1, 2] = 1.0
    assert trust.pointing(heat, coverage) == (True, pytest.approx(2 / 12))
    heat_off = np.zeros((3, 4))
    heat_off[2, 3] = 1.0
    assert trust.pointing(heat_off, coverage) == (False, pytest.approx(2 / 12))
    hit, chance = trust.pointing(np.ones((3, 4)), coverage)  # a flat map points at the first cell
    assert hit is False and chance == pytest.approx(1 / 6)


def test_mass_in_box_by_hand():
    heat = np.array([[1.0, 3.0], [0.0, 4.0]])
    coverage = np.array([[0.0, 1.0], [0.0, 0.5]])
    mass, chance = trust.mass_in_box(heat, coverage)
    assert mass == pytest.approx((3 + 0.5 * 4) / 8)
    assert chance == pytest.approx(1.5 / 4)
    assert trust.mass_in_box(np.zeros((2, 2)), coverage) == (0.0, pytest.approx(0.375))


def test_spearman_by_hand():
    a = np.array([[0.1, 0.4], [0.2, 0.9]])
    assert trust.spearman(a, a) == pytest.approx(1.0)
    assert trust.spearman(a, -a) == pytest.approx(-1.0)
    assert trust.spearman(a, np.exp(5 * a)) == pytest.approx(1.0)  # ranks only
    # ties share their average rank: ranks (4, 2, 2, 2) vs (2, 2, 2, 4) correlate at -1/3
    assert trust.spearman(np.array([1.0, 0, 0, 0]), np.array([0.0, 0, 0, 1])) == pytest.approx(-1 / 3)
    # d² formula without ties: ranks (1, 2, 3, 4, 5) vs (2, 1, 4, 3, 5): 1 - 6·4 / (5·24) = 0.8
    assert trust.spearman(np.array([1.0, 2, 3, 4, 5]), np.array([20.0, 10, 40, 30, 50])) == pytest.approx(0.8)
    # a flat map has no ranking at all
    assert trust.spearman(np.zeros(6), np.arange(6.0)) == 0.0
    assert trust.spearman(np.arange(6.0), np.full(6, 3.0)) == 0.0


def test_randomized_copy(tiny_model):
    cap = tiny_model("both")
    original = {n: p.detach().clone() for n, p in cap.model.named_parameters()}
    clone = trust.randomized_copy(cap)
    assert clone is not cap and clone.model is not cap.model
    for n, p in cap.model.named_parameters():
        assert torch.equal(p, original[n]), f"{n} of the original changed"
    changed = {n for n, p in clone.model.named_parameters() if not torch.equal(p, original[n])}
    for n, p in clone.model.named_parameters():
        if n.startswith(("encoder.", "project.", "pos", "ln_memory.", "aux.")):
            assert n not in changed, f"{n} should be kept"
        elif n.startswith(("mapper.", "decoder.")) and p.dim() >= 2:
            assert n in changed, f"{n} should be re-initialised"
    assert any(n.startswith("mapper.") for n in changed) and any(n.startswith("decoder.") for n in changed)
    # the clone is a working captioner with the same hook points, and a different view of the image
    image = render_scene(7).image
    e, r = explain(cap, image, max_tokens=4), explain(clone, image, max_tokens=4)
    assert r.hook_names == e.hook_names
    forced = explain(clone, image, forced=e.token_ids)
    assert forced.token_ids == e.token_ids
    assert not np.allclose(forced.cross, e.cross)
    assert trust.randomized_copy(cap, seed=3).model.state_dict().keys() == cap.model.state_dict().keys()


def _check_result(result: dict, n: int, allow_nan: bool):
    assert {"n_scenes", "n_words", "grid", "caption", "pointing", "pointing_colour_word", "mass_in_box",
            "sanity_spearman", "curves", "best_method"} <= set(result)
    assert result["n_scenes"] == n and result["n_words"] >= 0
    methods = list(result["pointing"])
    assert methods and set(methods) <= {"cross_attention", "prefix", "rollout", "relevancy"}

    def unit(x, lo=0.0):
        if allow_nan and isinstance(x, float) and math.isnan(x):
            return True
        return lo - 1e-9 <= x <= 1 + 1e-9

    for m in methods:
        assert unit(result["pointing"][m]["hit"]) and unit(result["pointing"][m]["chance"])
        assert unit(result["pointing_colour_word"][m]["hit"])
        assert unit(result["mass_in_box"][m]["mass"]) and unit(result["mass_in_box"][m]["chance"])
        assert unit(result["sanity_spearman"][m], lo=-1.0)
        curves = result["curves"][m]
        for kind in ("deletion_map", "deletion_random", "insertion_map", "insertion_random"):
            assert all(unit(p) for p in curves[kind])
            assert len(curves[kind]) in (0, len(result["curves"]["fractions"]))
            assert unit(curves[f"{kind}_auc"])
    for key in ("exact", "colour_acc", "shape_acc", "count_acc", "object_recall", "bleu4", "rouge_l"):
        assert 0 <= result["caption"][key] <= 1
    assert result["best_method"] in (None, *methods)


def test_evaluate_trust_on_the_tiny_checkpoint(tiny_captioner):
    result = trust.evaluate_trust(tiny_captioner, n=3, curves_n=1, progress=False)
    _check_result(result, 3, allow_nan=result["n_words"] == 0)  # 8 training steps rarely name an object right
    assert result["grid"] == list(tiny_captioner.grid)
    assert set(result["pointing"]) == {"cross_attention", "prefix", "rollout", "relevancy"}


def test_evaluate_trust_when_every_object_is_named(tiny_model, monkeypatch):
    """The model is made to read the true caption (a forced replay), so every object counts and
    every figure is a number in range."""
    cap = tiny_model("both")
    real_explain = trust.explain
    scenes = [render_scene(5000 + i) for i in range(2)]  # what evaluate_trust(first_seed=5000) renders
    truths = {scene.image.tobytes(): scene.caption for scene in scenes}

    def explain_truth(captioner, image, forced=None, **kwargs):
        if forced is None:
            forced = captioner.tokenizer.encode(truths[image.tobytes()]) + [captioner.cfg.eos_id]
        return real_explain(captioner, image, forced=forced)

    monkeypatch.setattr(trust, "explain", explain_truth)
    result = trust.evaluate_trust(cap, n=2, first_seed=5000, curves_n=1, progress=False)
    _check_result(result, 2, allow_nan=False)
    assert result["n_words"] == sum(len(_truth_groups(scene)) for scene in scenes)
    assert result["caption"]["exact"] == 1.0
    for m in result["pointing"]:
        assert len(result["curves"][m]["deletion_map"]) == len(result["curves"]["fractions"])
    assert result["best_method"] in result["pointing"]
