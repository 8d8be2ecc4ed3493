"""Issue 14: the ViT's own attention in the app (explorer "Inside the ViT", How it works' patches), and
the ShapeScenes preset's prefix binding and pre-rendered scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from vizcap import figures
from vizcap.scenes import object_cells, render_scene

from test_app import APP, TIMEOUT, array, current_explanation, figure, ok, traces

RNG = np.random.default_rng(0)


def _picture(w: int = 96, h: int = 64) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8))


# -- figures -----------------------------------------------------------------------------------------


def test_patch_tokens_pulls_every_patch_apart_in_place():
    colours = RNG.integers(0, 200, (4, 6, 3), dtype=np.uint8)  # one solid colour per 16-px patch
    image = Image.fromarray(np.kron(colours, np.ones((16, 16, 1), np.uint8)))
    fig = figures.patch_tokens(image, (4, 6), gap=5)
    canvas = figures.image_pixels(fig.data[0]).astype(int)
    assert canvas.shape == (64 + 3 * 5, 96 + 5 * 5, 3)
    for r in range(4):
        for c in range(6):  # patch (r, c) sits at its place plus the gaps before it (its number label top left)
            y, x = r * (16 + 5), c * (16 + 5)
            assert (canvas[y + 12 : y + 16, x : x + 16] == colours[r, c]).all(), (r, c)
    assert (canvas[:, 16:21] == 255).all() and (canvas[16:21, :] == 255).all()  # white gaps between patches
    assert "24 patches" in figures.description(fig)


def _seen_on_any_colour(rects) -> bool:
    """The outline of issue 26 item 12: a white line on a wider black one, never one colour (an orange
    outline vanished on an orange shape): whatever the colour under it, one of the two stands out."""
    colours = {r.line.color: r.line.width for r in rects}
    return set(colours) == {"white", "black"} and colours["black"] > colours["white"] and \
        [r.line.color for r in rects][-1] == "white"  # the white line drawn on top


def test_patch_picker_has_one_clickable_point_per_cell_and_outlines_the_chosen():
    fig = figures.patch_picker(_picture(), (4, 6), selected=(1, 2))
    points = fig.data[1]
    assert len(points.x) == 24 and [tuple(c) for c in points.customdata][8] == (1, 2)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    W, H = figures.shown_image(_picture()).size
    assert len(rects) == 2 and all(r.x0 == pytest.approx(2 * W / 6) and r.y0 == pytest.approx(H / 4) for r in rects)
    assert _seen_on_any_colour(rects)
    assert not [s for s in figures.patch_picker(_picture(), (4, 6)).layout.shapes if s.type == "rect"]


def test_encoder_layers_shows_each_layer_with_its_class_token_share():
    maps = RNG.random((3, 4, 6)) * 0.2
    fig = figures.encoder_layers(_picture(), maps, [0.5, 0.25, 0.125], "the patch at row 2, column 3", cell=(1, 2))
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 and all(np.allclose(h.z, m) for h, m in zip(heatmaps, maps))
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["layer 0 · class token 50%", "layer 1 · class token 25%", "layer 2 · class token 13%"]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 2 * 3 and _seen_on_any_colour(rects)  # one outline (two lines) per layer
    assert fig.layout.coloraxis.cmax == pytest.approx(maps.max())


# -- the explorer's "Inside the ViT" tab ------------------------------------------------------------


def _explorer(monkeypatch, checkpoint) -> AppTest:
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(checkpoint))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    ok(at.run())
    at = ok(at.switch_page("app_pages/explorer.py").run())
    at.session_state["ex_view"] = "Inside the ViT"
    return ok(at.run())


def _layers_figure(at: AppTest) -> dict:
    return figure(at, "Inside the ViT")


def _heat(fig: dict) -> list[np.ndarray]:
    return [array(t["z"]) for t in traces(fig, "heatmap")]


def _rects(fig: dict) -> list[dict]:
    return [s for s in fig["layout"].get("shapes", []) if s.get("type") == "rect"]


def test_inside_the_vit_draws_where_the_chosen_patch_looks_layer_by_layer(monkeypatch, vit_checkpoint, tiny_model):
    at = _explorer(monkeypatch, vit_checkpoint)
    assert "Inside the ViT" in [t.label for t in at.tabs]
    captioner = tiny_model("vit")
    cell = at.session_state["ex_vit_cell"]
    fig = _layers_figure(at)
    heat = _heat(fig)
    n_layers = len(captioner.model.encoder.model.blocks)
    assert len(heat) == n_layers
    # the maps are the engine's: recompute from the same explanation the page stored
    page_exp = current_explanation(at)
    for layer, m in enumerate(heat):
        assert np.allclose(m, page_exp.encoder_maps(tuple(cell), layer=layer), atol=1e-9)
    # another patch: other maps; the class token: its own maps and no outline
    other = (0, 0) if tuple(cell) != (0, 0) else (1, 1)
    at.selectbox(key="ex_vit_cell").set_value(other)
    ok(at.run())
    moved = _heat(_layers_figure(at))
    assert np.allclose(moved[0], page_exp.encoder_maps(other, layer=0)) and not np.allclose(moved[0], heat[0])
    at.radio(key="ex_vit_query").set_value("the class token")
    ok(at.run())
    cls_fig = _layers_figure(at)
    assert np.allclose(_heat(cls_fig)[-1], page_exp.encoder_maps("cls", layer=-1))
    assert not _rects(cls_fig) and len(_rects(fig)) == 2 * n_layers  # a black and a white line per layer
    at.radio(key="ex_vit_method").set_value("rollout")
    ok(at.run())
    rolled = _heat(_layers_figure(at))
    assert np.allclose(rolled[-1], page_exp.encoder_maps("cls", method="rollout"))


def test_inside_the_vit_says_why_a_cnn_has_nothing_to_show(monkeypatch, tiny_model_dir):
    at = _explorer(monkeypatch, tiny_model_dir("both"))
    assert any("not a vision transformer" in i.value for i in at.info)


# -- the preset: pre-rendered scenes and the prefix binding --------------------------------------------


def test_pre_rendered_scenes_equal_scenes_rendered_on_demand(tiny_model):
    from train.shapes import RenderedScenes, ShapeScenesData

    captioner = tiny_model("both")
    data = ShapeScenesData(captioner.cfg, captioner.grid, captioner.tokenizer, first_seed=7, hard_every=3)
    rendered = RenderedScenes(data, 6, workers=2, progress=False)
    for k in (0, 2, 5, 6, 13):  # past n: scene k mod n
        want, got = data[k % 6], rendered[k]
        assert got[1] == want[1]
        for a, b in zip((got[0], *got[2:]), (want[0], *want[2:])):
            assert torch.equal(a, b)


def test_binding_targets_are_each_named_objects_share_of_the_cells(tiny_model):
    from train.shapes import BOUND, ShapeScenesData

    captioner = tiny_model("both")
    data = ShapeScenesData(captioner.cfg, captioner.grid, captioner.tokenizer, first_seed=0)
    for k in range(12):
        scene = render_scene(k)
        _, _, _, _, order, _, bound, _, _ = data[k]
        assert torch.equal(order, torch.from_numpy(object_cells(scene.mask, captioner.grid).reshape(-1)))
        n = len(scene.objects)
        sums = bound.sum(-1)
        assert torch.allclose(sums[:n], torch.ones(n)) and torch.all(sums[n:BOUND] == 0)
        # the first named object's target is largest where the first object covers most of a cell
        cells = order.reshape(captioner.grid)
        if (cells == 1).any():
            assert bound[0].reshape(captioner.grid)[cells == 1].min() > 0


def test_binding_loss_by_hand():
    from train.shapes import binding_loss

    attention = torch.tensor([[[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]])  # B1 h1 P3 N3
    attention = torch.cat([attention, attention], 1)  # two identical heads: the head mean is the same
    bound = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # 2 bound tokens, both present
    want = (-(0.5 * np.log(0.5) + 0.5 * np.log(0.25)) - np.log(0.8)) / 2
    assert float(binding_loss(attention, bound)) == pytest.approx(want, rel=1e-5)
    absent = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]])  # no second object: only the first counts
    assert float(binding_loss(attention, absent)) == pytest.approx(-(0.5 * np.log(0.5) + 0.5 * np.log(0.25)), rel=1e-5)


def test_word_referents_follow_the_captions_object_phrases(tiny_model):
    from train.shapes import ShapeScenesData, word_referents

    captioner = tiny_model("both")
    data = ShapeScenesData(captioner.cfg, captioner.grid, captioner.tokenizer, first_seed=0)
    seen_group = False
    for k in range(40):
        scene = render_scene(k)
        words, refers = scene.caption.split(), word_referents(scene)
        assert refers.shape == (len(words), 3)
        for word, row in zip(words, refers):
            named = [i for i, v in enumerate(row) if v]
            if word in ("a", "an", "two", "three", "and", "left", "right", "of", "above", "below"):
                assert not named, (scene.caption, word)
            else:  # a colour or shape word: exactly the objects of that phrase, same colour and shape
                assert named and {(scene.objects[i].colour, scene.objects[i].shape) for i in named} == \
                    {(scene.objects[named[0]].colour, scene.objects[named[0]].shape)}
                assert word in (scene.objects[named[0]].colour, scene.objects[named[0]].shape) or word.startswith(
                    scene.objects[named[0]].shape[:4])
                seen_group |= len(named) > 1
        ids_refers = data[k][-2]
        assert ids_refers.shape == (len(words) + 2, 3)  # <bos> and <eos> name nothing
        assert not ids_refers[0].any() and not ids_refers[-1].any()
        assert torch.equal(ids_refers[1:-1], torch.from_numpy(refers))
    assert seen_group  # "two green squares" names two objects with each word


def test_attend_loss_by_hand():
    from train.shapes import attend_loss

    P, N = 2, 3
    # caption <bos> w1 w2 <eos>: S = P + 4 decoder positions; word i is produced at position P + i - 1
    refers = torch.tensor([[[0, 0], [1, 0], [0, 0], [0, 0]]], dtype=torch.float32)  # only w1 names object 0
    bound = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    cross = torch.full((1, 1, 1, P + 4, N), 1 / 3)
    cross[0, 0, 0, P] = torch.tensor([0.6, 0.2, 0.2])  # the position that produces w1
    self_attention = torch.full((1, 1, 1, P + 4, P + 4), 1 / (P + 4))
    self_attention[0, 0, 0, P] = torch.tensor([0.3, 0.1, 0.6, 0.0, 0.0, 0.0])  # prefix share: 0.75 on token 0
    out = {"cross_attention": cross, "self_attention": self_attention}
    want = -(0.5 * np.log(0.6) + 0.5 * np.log(0.2)) - np.log(0.75)
    assert float(attend_loss(out, refers, bound, P)) == pytest.approx(want, rel=1e-5)
    # mean over layers and heads: a second layer that looks elsewhere changes the cross term
    out2 = {"cross_attention": torch.cat([cross, torch.full_like(cross, 1 / 3)]),
            "self_attention": torch.cat([self_attention, self_attention])}
    want2 = -(0.5 * np.log((0.6 + 1 / 3) / 2) + 0.5 * np.log((0.2 + 1 / 3) / 2)) - np.log(0.75)
    assert float(attend_loss(out2, refers, bound, P)) == pytest.approx(want2, rel=1e-5)
    # no word names an object: nothing to learn
    assert float(attend_loss(out, torch.zeros_like(refers), bound, P)) == 0.0


def test_how_it_works_shows_the_patch_tokens_for_a_vit_only(monkeypatch, vit_checkpoint, tiny_model_dir):
    import json

    def titles(checkpoint) -> list[str]:
        monkeypatch.setenv("VIZCAP_CHECKPOINT", str(checkpoint))
        at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
        at = ok(at.switch_page("app_pages/how_it_works.py").run())
        return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]

    assert "The image becomes a sequence of patch tokens" in titles(vit_checkpoint)
    assert "The image becomes a sequence of patch tokens" not in titles(tiny_model_dir("both"))
