"""Trust metrics (vizcap.trust): word targets on ShapeScenes captions, the pointing game, mass in
box, Spearman's rho, the randomised model of the sanity check, and evaluate_trust end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vizcap import trust
from vizcap.explain import explain
from vizcap.scenes import COLOURS, PLURALS, Scene, SceneConfig, SceneObject, render_scene

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


def test_word_targets_follow_any_right_order():
    """Every right caption of a scene, in whatever order it names the objects, has a target for each
    object group: the phrase's own group (same colour and shape), not the group at its place."""
    seen_other_order = False
    for seed in SCENE_SEEDS:
        scene = render_scene(seed)
        groups = dict(_truth_groups(scene))
        for caption in scene.captions:
            tokens = caption.split()
            targets = trust.word_targets(tokens, scene)
            assert len(targets) == len(groups), (caption, targets)
            for shape_j, colour_j, members in targets:
                pair = (tokens[colour_j], tokens[shape_j])
                assert members == next(m for (c, s), m in groups.items() if (c, s) == pair or (c, PLURALS[s]) == pair)
            seen_other_order |= [t[2] for t in targets] != sorted(t[2] for t in targets)
    assert seen_other_order


def test_word_targets_match_each_group_once():
    red = SceneObject("red", "circle", (0, 0, 10, 10), 0.2)
    blue = SceneObject("blue", "star", (30, 0, 40, 10), 0.2)
    scene = Scene(image=Image.new("RGB", (40, 10)), objects=[red, blue], caption="", mask=np.zeros((10, 40), np.uint8))
    tokens = "a blue star right of a red circle".split()
    assert trust.word_targets(tokens, scene) == [(2, 1, [1]), (7, 6, [0])]
    assert trust.word_targets("a red circle and a red circle".split(), scene) == [(2, 1, [0])]


def test_summarise_accepts_every_right_caption():
    """A record's "truths" (all right captions) decide exact; a record without them (written before
    issue 24) has only its canonical "truth"."""
    record = {"i": 0, "caption": "a blue star right of a red circle", "truth": "a red circle left of a blue star",
              "n_objects": 2, "words": []}
    assert trust.summarise([record], ("a",), (4, 4))["caption"]["exact"] == 0.0
    record["truths"] = ["a red circle left of a blue star", "a blue star right of a red circle"]
    caption = trust.summarise([record], ("a",), (4, 4))["caption"]
    assert caption["exact"] == 1.0 and caption["bleu4"] == pytest.approx(1.0, abs=1e-4)


def test_scene_records_hold_every_right_caption(monkeypatch):
    scene = next(s for s in map(render_scene, SCENE_SEEDS) if len(s.captions) > 1)
    monkeypatch.setattr(trust, "explain", lambda *a, **k: type("E", (), {"caption": "", "tokens": []})())
    record = trust.scene_record(None, None, scene, 0, (), curves=False)
    assert record["truth"] == scene.caption and record["truths"] == scene.captions


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


METHODS4 = ("cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion")
PER_WORD = [("pointing", "hit"), ("pointing", "chance"), ("pointing_colour_word", "hit"), ("mass_in_box", "mass"),
            ("mass_in_box", "chance")]
CURVE_KINDS = ("deletion_map", "deletion_random", "insertion_map", "insertion_random")


def _check_result(result: dict, n: int, defined: bool):
    """Every figure is a number in range when defined; when no object was named correctly (defined
    False), every per-word figure is NaN and no curve has points -- never a number made up."""
    assert {"n_scenes", "n_words", "grid", "caption", "pointing", "pointing_colour_word", "mass_in_box",
            "sanity_spearman", "curves", "best_method"} <= set(result)
    assert result["n_scenes"] == n and (result["n_words"] > 0) == defined
    methods = list(result["pointing"])
    assert methods and set(methods) <= set(METHODS4)
    values = [result[a][m][b] for m in methods for a, b in PER_WORD] + [result["sanity_spearman"][m] for m in methods]
    values += [result["curves"][m][f"{k}_auc"] for m in methods for k in CURVE_KINDS]
    if defined:
        assert all(isinstance(v, float) and -1 <= v <= 1 for v in values), values
        assert all(0 <= result[a][m][b] <= 1 for m in methods for a, b in PER_WORD)
        for m in methods:
            for kind in CURVE_KINDS:
                assert len(result["curves"][m][kind]) == len(result["curves"]["fractions"])
                assert all(0 <= p <= 1 for p in result["curves"][m][kind])
                assert 0 <= result["curves"][m][f"{kind}_auc"] <= 1
        assert result["best_method"] in methods
    else:
        assert all(isinstance(v, float) and math.isnan(v) for v in values), values
        assert all(result["curves"][m][k] == [] for m in methods for k in CURVE_KINDS)
        assert result["best_method"] is None
    for key in ("exact", "colour_acc", "shape_acc", "count_acc", "object_recall", "bleu4", "rouge_l"):
        assert 0 <= result["caption"][key] <= 1


def _explain_truth(monkeypatch, scenes):
    """Make evaluate_trust's model read each scene's true caption (a forced replay), so every object counts."""
    real_explain = trust.explain
    truths = {scene.image.tobytes(): scene.caption for scene in scenes}

    def explain_truth(captioner, image, forced=None, **kwargs):
        if forced is None:
            forced = captioner.tokenizer.encode(truths[image.tobytes()]) + [captioner.cfg.eos_id]
        return real_explain(captioner, image, forced=forced)

    monkeypatch.setattr(trust, "explain", explain_truth)


def test_evaluate_trust_when_no_object_is_named(tiny_model, monkeypatch):
    """A model that names no object right: caption figures are numbers, every map figure is NaN."""
    cap = tiny_model("both")
    real_explain = trust.explain
    monkeypatch.setattr(trust, "explain", lambda captioner, image, forced=None, **kw: real_explain(
        captioner, image, forced=forced or captioner.tokenizer.encode("a") + [captioner.cfg.eos_id]))
    result = trust.evaluate_trust(cap, n=2, first_seed=5000, curves_n=1, progress=False)
    _check_result(result, 2, defined=False)
    assert result["caption"]["exact"] == 0.0 and result["caption"]["object_recall"] == 0.0


def test_evaluate_trust_when_every_object_is_named(tiny_model, monkeypatch):
    """The model is made to read the true caption (a forced replay), so every object counts and
    every figure is a number in range."""
    cap = tiny_model("both")
    scenes = [render_scene(5000 + i) for i in range(3)]  # what evaluate_trust(first_seed=5000) renders
    _explain_truth(monkeypatch, scenes)
    result = trust.evaluate_trust(cap, n=3, first_seed=5000, curves_n=2, progress=False, records=True, rank_n=2)
    _check_result(result, 3, defined=True)
    assert result["n_words"] == sum(len(_truth_groups(scene)) for scene in scenes)
    assert result["caption"]["exact"] == 1.0
    assert set(result["pointing"]) == set(METHODS4)
    # curves and the top-k test only for scenes 0, 1 (curves_n=2, rank_n=2)
    records = result.pop("scenes")
    assert [r["i"] for r in records] == [0, 1, 2] and result["curves_n"] == result["rank_n"] == 2
    assert all("deletion_map" in w["methods"]["rollout"] and "rank" in w for r in records[:2] for w in r["words"])
    assert not any("sanity" in w["methods"]["rollout"] or "rank" in w for w in records[2]["words"])
    assert result["ranking"]["n_scenes"] == 2 and result["ranking"]["n_words"] == sum(len(r["words"]) for r in records[:2])
    # each record's numbers are the defined quantities, with coverage counted pixel by pixel
    for scene, record in zip(scenes, records):
        exp = explain(cap, scene.image, forced=cap.tokenizer.encode(scene.caption) + [cap.cfg.eos_id])
        for w in record["words"]:
            cov = _coverage_by_pixels(scene, w["members"], cap.grid)
            assert w["chance"] == pytest.approx((cov > 0).mean(), abs=1e-6)
            assert w["mass_chance"] == pytest.approx(cov.mean(), abs=1e-6)
            for m, v in w["methods"].items():
                shape_map, colour_map = exp.maps(m)[w["shape_j"]], exp.maps(m)[w["colour_j"]]
                assert v["hit"] == bool(cov.flat[np.argmax(shape_map)] > 0)
                assert v["colour_hit"] == bool(cov.flat[np.argmax(colour_map)] > 0)
                positive = np.clip(shape_map, 0, None)  # occlusion's negative drops are no mass
                assert v["mass"] == pytest.approx((positive * cov).sum() / positive.sum(), abs=1e-6)
    # any scene recomputed alone gives its record (each scene draws its own random order)
    alone = trust.scene_record(cap, trust.randomized_copy(cap), scenes[1], 1, tuple(METHODS4), curves=True, rank=True)
    assert alone == records[1]
    # the top-k test draws its random orders from a stream of its own: with it or without it, the curves' orders
    # (and every other number) are the same
    without = trust.scene_record(cap, trust.randomized_copy(cap), scenes[1], 1, tuple(METHODS4), curves=True)
    assert without == {**alone, "words": [{k: v for k, v in w.items() if k != "rank"} for w in alone["words"]]}


def _word(chance, mass_chance, **per_method):
    return {"shape_j": 0, "colour_j": 0, "members": [0], "chance": chance, "mass_chance": mass_chance,
            "methods": per_method}


def test_summarise_by_hand():
    """Means over correctly named words (not over scenes), sanity and curves over the words that have
    them, AUC by the trapezoid rule, the best method by pointing."""
    up = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]  # y = x: AUC 1/2
    flat = [1.0] * 9  # AUC 1
    records = [
        {"i": 0, "caption": "a red circle", "truth": "a red circle", "n_objects": 1, "words": [
            _word(0.25, 0.1, a={"hit": True, "colour_hit": False, "mass": 0.5, "sanity": 0.2, "deletion_map": up,
                                "deletion_random": flat, "insertion_map": flat, "insertion_random": up},
                  b={"hit": False, "colour_hit": True, "mass": 0.1, "sanity": -0.4, "deletion_map": flat,
                     "deletion_random": flat, "insertion_map": up, "insertion_random": up})]},
        {"i": 1, "caption": "a blue star", "truth": "a red star", "n_objects": 1, "words": []},  # colour wrong
        {"i": 2, "caption": "two green squares", "truth": "two green squares", "n_objects": 2, "words": [
            _word(0.5, 0.3, a={"hit": True, "colour_hit": True, "mass": 0.2},
                  b={"hit": True, "colour_hit": False, "mass": 0.4})]},
    ]
    r = trust.summarise(records, ("a", "b"), (4, 4), source="hand")
    assert r["source"] == "hand" and r["n_scenes"] == 3 and r["n_words"] == 2 and r["grid"] == [4, 4]
    assert r["pointing"] == {"a": {"hit": 1.0, "chance": 0.375}, "b": {"hit": 0.5, "chance": 0.375}}
    assert r["pointing_colour_word"] == {"a": {"hit": 0.5, "chance": 0.375}, "b": {"hit": 0.5, "chance": 0.375}}
    assert r["mass_in_box"] == {"a": {"mass": 0.35, "chance": 0.2}, "b": {"mass": 0.25, "chance": 0.2}}
    assert r["sanity_spearman"] == {"a": 0.2, "b": -0.4}  # only the first word has a sanity check
    assert r["curves"]["a"]["deletion_map"] == up and r["curves"]["a"]["deletion_map_auc"] == 0.5
    assert r["curves"]["a"]["deletion_random_auc"] == 1.0 and r["curves"]["b"]["insertion_map_auc"] == 0.5
    assert r["best_method"] == "a"
    # caption figures over all three scenes: 2 of 3 exact; colours right for 3 of 4 objects (counts expand)
    assert r["caption"]["exact"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["caption"]["colour_acc"] == 0.75 and r["caption"]["shape_acc"] == 1.0
    assert r["caption"]["count_acc"] == 1.0 and r["caption"]["object_recall"] == 0.75


def _coverage_by_pixels(scene, members, grid) -> np.ndarray:
    """An independent coverage: paint the members' boxes on the pixel grid, blow every pixel up to a
    gh×gw block (so the cell borders fall on whole pixels), and take each cell's painted share of the
    pixels of each box; a cell keeps the largest share among the boxes."""
    gh, gw = grid
    W, H = scene.image.size
    out = np.zeros(grid)
    for m in members:
        x0, y0, x1, y1 = scene.objects[m].box
        painted = np.zeros((H, W))
        painted[max(y0, 0):y1, max(x0, 0):x1] = 1
        big = np.kron(painted, np.ones((gh, gw)))  # [H·gh, W·gw]: cell (r, c) is rows r·H…(r+1)·H, cols c·W…(c+1)·W
        out = np.maximum(out, big.reshape(gh, H, gw, W).mean(axis=(1, 3)))
    return out


def test_coverage_by_hand():
    """A 40×20 image on a 2×4 grid: cells are 10×10 pixels. Member 0's box (5, 0, 20, 10) covers half of
    cell (0, 0) and all of (0, 1); member 2's box (15, 5, 40, 20) covers the lower half of row 0 from x 15
    and row 1 from x 15; the cell keeps the larger share where boxes overlap. Object 1 is not a member."""
    objects = [SceneObject("red", "circle", (5, 0, 20, 10), 0.5), SceneObject("blue", "star", (0, 10, 10, 20), 0.5),
               SceneObject("red", "circle", (15, 5, 40, 20), 0.5)]
    scene = Scene(image=Image.new("RGB", (40, 20)), objects=objects, caption="", mask=np.zeros((20, 40), np.uint8))
    expected = np.array([[0.5, 1.0, 0.5, 0.5],
                         [0.0, 0.5, 1.0, 1.0]])
    np.testing.assert_allclose(trust.box_coverage(scene, [0, 2], (2, 4)), expected)
    np.testing.assert_allclose(trust.box_coverage(scene, [1], (2, 4)), [[0, 0, 0, 0], [1, 0, 0, 0]])
    # a 3×3 grid of a 30×30 image: box (10, 10, 25, 30) covers cell (1, 1) fully, (1, 2) and (2, 2) by half
    square = Scene(image=Image.new("RGB", (30, 30)), objects=[SceneObject("red", "square", (10, 10, 25, 30), 0.6)],
                   caption="", mask=np.zeros((30, 30), np.uint8))
    np.testing.assert_allclose(trust.box_coverage(square, [0], (3, 3)), [[0, 0, 0], [0, 1, 0.5], [0, 1, 0.5]])


def test_coverage_of_real_scenes_equals_pixel_counting():
    for seed in range(20):
        scene = render_scene(seed)
        for grid in ((8, 8), (3, 5)):
            for members in ([0], list(range(len(scene.objects)))):
                np.testing.assert_allclose(trust.box_coverage(scene, members, grid),
                                           _coverage_by_pixels(scene, members, grid), atol=1e-9)


def test_masked_batch_by_hand():
    """Cells of a 2×2 grid on a 4×4 image, greyed (deletion) or revealed (insertion) in the order
    3, 0, 2, 1. FRACTIONS of 4 cells round to k = 0, 0, 1, 2, 2, 2, 3, 4, 4 (Python rounds half to even)."""
    assert trust.FRACTIONS.tolist() == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    pixels = torch.arange(1, 49, dtype=torch.float32).reshape(1, 3, 4, 4)
    order = np.array([3, 0, 2, 1])
    ks = [0, 0, 1, 2, 2, 2, 3, 4, 4]
    cell_of = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])  # the cell of each pixel
    deletion = trust._masked_batch(pixels, order, (2, 2), insertion=False)
    insertion = trust._masked_batch(pixels, order, (2, 2), insertion=True)
    assert deletion.shape == insertion.shape == (9, 3, 4, 4)
    for f, k in enumerate(ks):
        gone = torch.from_numpy(np.isin(cell_of, order[:k]))
        assert torch.equal(deletion[f], torch.where(gone, 0.0, pixels[0])), f
        assert torch.equal(insertion[f], torch.where(gone, pixels[0], 0.0)), f
    assert torch.equal(deletion[0], pixels[0]) and torch.equal(insertion[-1], pixels[0])
    assert not deletion[-1].any() and not insertion[0].any()


def test_word_probability_equals_the_decoders_own_probabilities(tiny_model):
    """P(token j | tokens < j) for a batch of images: row b equals the probability explain() reports for
    token j when it reads the same caption from image b alone (the KV-cache path: another computation)."""
    cap = tiny_model("both")
    images = [render_scene(11).image, render_scene(12).image]
    ids = cap.tokenizer.encode("a red circle left of a blue star")
    runs = [explain(cap, image, forced=ids) for image in images]
    pixels = cap.pixels(images)
    for j in range(len(ids)):
        got = trust._word_probability(cap, pixels, ids, j)
        assert got.shape == (2,)
        np.testing.assert_allclose(got, [r.probs[j] for r in runs], rtol=1e-4, atol=1e-6, err_msg=f"token {j}")
    assert not np.allclose(runs[0].probs, runs[1].probs)  # the two images really give different numbers


def test_token_probabilities_read_each_row_at_its_own_position(tiny_model):
    """One pass, rows asking for different words: row b equals the probability explain() reports for word
    positions[b] of its image (the KV-cache path: another computation)."""
    cap = tiny_model("both")
    images = [render_scene(11).image, render_scene(12).image]
    ids = cap.tokenizer.encode("a red circle left of a blue star")
    runs = [explain(cap, image, forced=ids) for image in images]
    pixels = cap.pixels([images[0], images[1], images[0], images[1]])
    got = trust._token_probabilities(cap, pixels, ids, [2, 5, 0, 7])
    np.testing.assert_allclose(got, [runs[0].probs[2], runs[1].probs[5], runs[0].probs[0], runs[1].probs[7]],
                               rtol=1e-4, atol=1e-6)


# -- a model whose dependence on the image is known by construction ----------------------------------------

READ = {5: 4.0, 6: 3.0, 9: 2.0, 10: 1.0}  # cell of a 4×4 grid -> how much the word's logit reads it
GAIN, WORD, VOCAB = 6.0, 7, 12


class ReadsCells(torch.nn.Module):
    """A captioner's model, written out: the memory of cell n is the mean |pixel| of its 16×16 pixels, and
    at every position the logit of token WORD is GAIN · Σ_n READ[n] · memory_n / Σ READ (every other logit
    0). Greying a cell (0 after normalisation) removes its term, so the word depends on exactly the READ
    cells, cell 5 most: its true map is READ."""

    def encode(self, pixels):
        b = len(pixels)
        return pixels.abs().mean(1).reshape(b, 4, 16, 4, 16).mean(dim=(2, 4)).reshape(b, 16)

    def prefix(self, memory):
        return None, None

    def decode(self, memory, prefix, input_ids, use_cache=False):
        weight = torch.zeros(16)
        weight[list(READ)] = torch.tensor(list(READ.values()))
        logits = torch.zeros(len(memory), input_ids.shape[1], VOCAB)
        logits[..., WORD] = (GAIN * memory @ weight / weight.sum())[:, None]
        return type("Out", (), {"logits": logits})()


def reads_cells():
    from types import SimpleNamespace

    return SimpleNamespace(model=ReadsCells(), cfg=SimpleNamespace(bos_id=0, n_prefix=0), grid=(4, 4))


def _pixels(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) + 0.5


def _p_by_hand(pixels: torch.Tensor, hidden) -> float:
    """The ReadsCells word's probability with the cells `hidden` greyed, from the formula."""
    a = pixels[0].abs().numpy()
    logit = sum(w * a[:, (n // 4) * 16:(n // 4 + 1) * 16, (n % 4) * 16:(n % 4 + 1) * 16].mean()
                for n, w in READ.items() if n not in set(hidden))
    logit *= GAIN / sum(READ.values())
    return float(np.exp(logit) / (np.exp(logit) + VOCAB - 1))


def _true_map() -> np.ndarray:
    heat = np.zeros(16)
    heat[list(READ)] = list(READ.values())
    return heat.reshape(4, 4)


def test_curves_fall_faster_in_the_order_of_the_cells_a_model_reads():
    """curves_of on ReadsCells: every point is the formula's probability with the first round(f·16) cells
    greyed (or alone kept), and greying in the true map's order lowers the word faster than the reversed
    order, which greys the cells it never reads first (insertion: the other way round)."""
    cap, pixels, ids = reads_cells(), _pixels(0), [WORD] * 3
    heat = _true_map()
    reversed_order = np.argsort(heat.ravel(), kind="stable")  # the cells it never reads first
    c = trust.curves_of(cap, pixels, ids, 1, heat, shuffled=reversed_order)
    order = np.argsort(-heat.ravel(), kind="stable")
    assert order[:4].tolist() == [5, 6, 9, 10]
    for f, frac in enumerate(trust.FRACTIONS):
        k = int(round(frac * 16))
        rest = [n for n in range(16) if n not in order[:k]]
        assert c["deletion_map"][f] == pytest.approx(_p_by_hand(pixels, order[:k]), abs=2e-6), f
        assert c["deletion_random"][f] == pytest.approx(_p_by_hand(pixels, reversed_order[:k]), abs=2e-6), f
        assert c["insertion_map"][f] == pytest.approx(_p_by_hand(pixels, rest), abs=2e-6), f
    area = {k: np.trapezoid(v, trust.FRACTIONS) for k, v in c.items()}
    assert area["deletion_map"] < area["deletion_random"] - 0.1
    assert area["insertion_map"] > area["insertion_random"] + 0.1
    assert c["deletion_random"][:6] == [c["deletion_random"][0]] * 6  # 12 unread cells go first: nothing changes


def _reads_cells_scene() -> Scene:
    """A 64×64 scene whose one object covers exactly the cells ReadsCells reads (5, 6, 9, 10)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 1
    return Scene(image=Image.new("RGB", (64, 64)), objects=[SceneObject("red", "square", (16, 16, 48, 48), 0.5)],
                 caption="a red square", mask=mask)


def test_top_k_test_ranks_a_map_by_what_the_model_reads():
    """The top-k test on ReadsCells over five pictures: the true map drops the word as much as the box (the
    object covers exactly the cells it reads) and beats random; the reversed map greys unread cells, drops
    nothing, cannot beat random and stays below the box, and the verdict says so."""
    cap, ids, scene = reads_cells(), [WORD] * 3, _reads_cells_scene()
    box = trust.box_order(scene, [0], (4, 4))
    assert box[:4].tolist() == [5, 6, 9, 10]
    heat, rng, records = _true_map(), np.random.default_rng(0), []
    for seed in range(5):
        pixels = _pixels(seed)
        entries = {name: trust.rank_word(cap, pixels, ids, j, _p_by_hand(pixels, []), {"map": heat, "reversed": -heat},
                                         box, [rng.permutation(16) for _ in range(4)])
                   for name, j in (("colour", 0), ("shape", 1))}
        for k_at, k in enumerate(trust.RANK_KS):
            top = np.argsort(-heat.ravel(), kind="stable")[:k]
            assert entries["shape"]["methods"]["map"]["deletion"][k_at] == pytest.approx(_p_by_hand(pixels, top), abs=2e-6)
            kept_out = [n for n in range(16) if n not in top]
            assert entries["shape"]["methods"]["map"]["insertion"][k_at] == pytest.approx(_p_by_hand(pixels, kept_out),
                                                                                         abs=2e-6)
        assert entries["shape"]["grey"] == pytest.approx(_p_by_hand(pixels, range(16)), abs=2e-6)
        records.append({"words": [{"rank": entries}]})
    r = trust.rank_summary(records, ("map", "reversed"))
    assert r["n_scenes"] == 5 and r["orders"] == 4 and r["ks"] == [1, 2, 4, 8]
    m, rev = r["methods"]["map"], r["methods"]["reversed"]
    assert m["ratio_to_box"] == pytest.approx(1.0) and m["beats_random"] and not m["below_box"]
    assert rev["drop"] == pytest.approx(0.0, abs=2e-6) and not rev["beats_random"] and rev["below_box"]
    assert r["box"]["beats_random"]
    drops = r["deletion"]["all"]
    assert all(a > b for a, b in zip(drops["map"]["mean"], drops["random"]["mean"]))
    text = trust.ranking_verdict({"ranking": r})
    said = {line.split("*")[1]: line for line in text if line.startswith("*") and not line.startswith("**")}
    assert "beats random" in said["map"] and "cannot be told from the box" in said["map"]
    assert "**cannot beat random**" in said["reversed"] and "**stays below the box**" in said["reversed"]


def test_top_k_deletion_of_an_occlusion_map_is_its_peak(tiny_model, monkeypatch):
    """An independent oracle on a real model: the occlusion map is, by its definition, the drop of the word when
    each single cell is greyed. So in scene_record's top-k test the k = 1 deletion drop of the occlusion map
    equals that map's maximum, and no single cell greyed by any other order (box, random, rollout) drops the
    word more."""
    cap = tiny_model("both")
    scene = render_scene(5000)
    _explain_truth(monkeypatch, [scene])
    record = trust.scene_record(cap, None, scene, 0, ("occlusion", "rollout"), curves=False, rank=True, orders=3)
    exp = explain(cap, scene.image, forced=cap.tokenizer.encode(scene.caption) + [cap.cfg.eos_id])
    occlusion = exp.maps("occlusion")
    assert record["words"]
    for w in record["words"]:
        for name, j in (("colour", w["colour_j"]), ("shape", w["shape_j"])):
            e, peak = w["rank"][name], float(occlusion[j].max())
            assert e["p"] == pytest.approx(exp.probs[j], abs=1e-6)
            assert peak - np.median(occlusion[j]) > 1e-5  # the peak stands out at the records' precision
            assert e["p"] - e["methods"]["occlusion"]["deletion"][0] == pytest.approx(peak, abs=2e-6), (name, j)
            others = [e["box"]["deletion"][0], e["methods"]["rollout"]["deletion"][0],
                      *(d[0] for d in e["random"]["deletion"])]
            assert all(e["p"] - p <= peak + 2e-6 for p in others), (name, j)
            assert len(e["random"]["deletion"]) == 3 and all(len(d) == 4 for d in e["random"]["insertion"])


def _rank_entry(p: float, drops: dict, random_drops: list, insertion: float = 0.5) -> dict:
    """A word's top-k entry from drops at k = 4 (the other k: the same drop halved)."""
    def probs(drop):
        return [round(p - drop / 2, 6), round(p - drop / 2, 6), round(p - drop, 6), round(p - drop, 6)]

    return {"p": p, "grey": 0.1, "methods": {m: {"deletion": probs(d), "insertion": [insertion] * 4} for m, d in drops.items()
                                             if m != "box"},
            "box": {"deletion": probs(drops["box"]), "insertion": [0.7] * 4},
            "random": {"deletion": [probs(d) for d in random_drops], "insertion": [[0.2] * 4 for _ in random_drops]}}


def test_rank_summary_by_hand():
    """Three measured scenes (the third with two words, which count as one scene: their mean), one scene with
    no named object and one measured without the test (both left out). At k = 4, method a's per-scene drops
    are 0.3, 0.4, 0.5: mean 0.4, sd 0.1, 95 % interval 0.4 ± 1.959964 · 0.1 / √3; the box drops 0.5 in
    every scene (ratio 0.8), random 0.1 (mean of its orders). a − random: 0.2, 0.3, 0.4 (above 0: beats
    random); a − box: -0.2, -0.1, 0 (interval -0.1 ± 0.113: cannot be told from the box). Method b drops
    0 on colour words and 0.2 on shape words."""
    def word(a, box, randoms):
        return {"rank": {"colour": _rank_entry(0.9, {"a": a, "b": 0.0, "box": box}, randoms),
                         "shape": _rank_entry(0.9, {"a": a, "b": 0.2, "box": box}, randoms)}}

    records = [{"words": [word(0.3, 0.5, [0.0, 0.2])]}, {"words": [word(0.4, 0.5, [0.1, 0.1])]},
               {"words": [word(0.4, 0.5, [0.0, 0.0]), word(0.6, 0.5, [0.2, 0.2])]},
               {"words": []}, {"words": [{"shape_j": 2}]}]
    r = trust.rank_summary(records, ("a", "b"))
    half = 1.959964 * 0.1 / np.sqrt(3)
    assert r["n_scenes"] == 3 and r["n_words"] == 4 and r["orders"] == 2 and r["k"] == 4
    a = r["deletion"]["all"]["a"]
    assert a["mean"] == pytest.approx([0.2, 0.2, 0.4, 0.4]) and a["low"][2] == pytest.approx(0.4 - half, abs=1e-6)
    assert a["high"][2] == pytest.approx(0.4 + half, abs=1e-6)
    assert r["deletion"]["all"]["box"]["mean"][2] == pytest.approx(0.5) and r["deletion"]["all"]["box"]["low"][2] == pytest.approx(0.5)
    assert r["deletion"]["all"]["random"]["mean"] == pytest.approx([0.05, 0.05, 0.1, 0.1])
    assert r["deletion"]["colour"]["b"]["mean"][2] == pytest.approx(0.0) and r["deletion"]["shape"]["b"]["mean"][2] == pytest.approx(0.2)
    assert r["deletion"]["all"]["b"]["mean"][2] == pytest.approx(0.1)
    assert r["insertion"]["all"]["a"]["mean"] == pytest.approx([0.5] * 4) and r["insertion"]["all"]["box"]["mean"] == pytest.approx([0.7] * 4)
    ma = r["methods"]["a"]
    assert ma["drop"] == pytest.approx(0.4) and ma["box_drop"] == pytest.approx(0.5) and ma["ratio_to_box"] == pytest.approx(0.8)
    assert ma["vs_random"]["mean"] == pytest.approx(0.3) and ma["vs_random"]["low"] == pytest.approx(0.3 - half, abs=1e-6)
    assert ma["beats_random"] and not ma["below_box"] and not ma["above_box"]
    assert ma["vs_box"]["high"] == pytest.approx(-0.1 + half, abs=1e-6)
    mb = r["methods"]["b"]  # 0.1 in every scene: random's 0.1 exactly, the box's 0.5 far above
    assert mb["vs_random"]["mean"] == pytest.approx(0.0, abs=1e-9) and not mb["beats_random"] and mb["below_box"]
    assert r["box"]["beats_random"] and r["box"]["vs_random"]["mean"] == pytest.approx(0.4)
    assert trust.rank_summary(records[3:], ("a", "b")) is None  # nothing measured: no figures at all
    one = trust.rank_summary(records[:1], ("a", "b"))  # one scene: a mean, but no interval
    assert one["methods"]["a"]["drop"] == pytest.approx(0.3) and math.isnan(one["methods"]["a"]["vs_random"]["low"])
    assert not one["methods"]["a"]["beats_random"]
    # summarise carries it (rounded to 4 places), and the verdict reads it
    full = [{"i": i, "caption": "a red circle", "truth": "a red circle", "n_objects": 1, **rec}
            for i, rec in enumerate(records[:3])]
    for rec in full:
        for w in rec["words"]:
            w.update(shape_j=0, colour_j=0, members=[0], chance=0.1, mass_chance=0.1,
                     methods={m: {"hit": True, "colour_hit": True, "mass": 0.5} for m in ("a", "b")})
    assert trust.summarise(full, ("a", "b"), (4, 4))["ranking"]["methods"]["a"]["vs_random"]["low"] == round(0.3 - half, 4)
    text = trust.ranking_verdict({"ranking": r})
    assert text[0].startswith("**Top-4 deletion** (4 named objects") and "by 0.50" in text[0] and "by 0.10" in text[0]
    assert text[1].startswith("*a*: greying its 4 hottest cells lowers the word's probability by 0.40")
    assert "0.80 × the box's drop" in text[1] and "beats random" in text[1] and "cannot be told from the box" in text[1]
    assert "**cannot beat random**" in text[2] and "**stays below the box**" in text[2]


def test_ranking_verdict_without_the_measurement():
    """A trust.json written before the top-k test (the shipped one until `vizcap eval` runs again): one
    sentence that says it was not measured and how to measure it, no number."""
    for result in (None, {}, {"pointing": {}}):
        (line,) = trust.ranking_verdict(result)
        assert "not measured" in line and "`vizcap eval --rank-n N`" in line and not any(c.isdigit() for c in line)


def test_interval_by_hand():
    got = trust.interval([1.0, 2.0, 3.0])
    assert got["mean"] == 2.0 and got["low"] == pytest.approx(2 - 1.959964 / np.sqrt(3), abs=1e-6)
    assert got["high"] == pytest.approx(2 + 1.959964 / np.sqrt(3), abs=1e-6)
    cols = trust.interval([[0.0, 1.0], [2.0, 1.0]])
    assert cols["mean"] == [1.0, 1.0] and cols["low"][1] == cols["high"][1] == 1.0
    assert cols["low"][0] == pytest.approx(1 - 1.959964 * np.sqrt(2) / np.sqrt(2), abs=1e-6)
    one = trust.interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["low"]) and math.isnan(one["high"])


def test_box_order_by_hand():
    """A 40×40 image on a 4×4 grid (10-px cells). The object's drawn pixels fill cells 0 and 1 and the top
    half of cell 5; its box is (0, 0, 20, 15). By coverage: 0, 1 (1.0, tied: the first first), 5 (0.5), then
    the cells it does not touch nearest the box centre (10, 7.5) first: 4 (9.0 px), 2 (15.2), 6 (16.8), 8 and 9
    (18.2). Without a mask (the independent renderer) the box decides: cells 4 and 5 are half covered."""
    mask = np.zeros((40, 40), np.uint8)
    mask[0:10, 0:20] = 1
    mask[10:15, 10:20] = 1
    obj = SceneObject("red", "square", (0, 0, 20, 15), 0.5)
    scene = Scene(image=Image.new("RGB", (40, 40)), objects=[obj], caption="a red square", mask=mask)
    np.testing.assert_allclose(trust.object_coverage(scene, [0], (4, 4)).ravel()[[0, 1, 4, 5]], [1, 1, 0, 0.5])
    assert trust.box_order(scene, [0], (4, 4))[:8].tolist() == [0, 1, 5, 4, 2, 6, 8, 9]
    unmasked = Scene(image=scene.image, objects=[obj], caption=scene.caption, mask=np.zeros((40, 40), np.uint8))
    assert trust.box_order(unmasked, [0], (4, 4))[:4].tolist() == [0, 1, 4, 5]
    assert sorted(trust.box_order(scene, [0], (4, 4)).tolist()) == list(range(16))
