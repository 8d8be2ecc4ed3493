"""vizcap.figures (and the app's other pure helpers: compose, anatomy) without a browser: every
figure has a title and a description, shows the data it was given, and tolerates missing numbers."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from conftest import make_random_captioner, run_module
from vizcap import anatomy, figures, render
from vizcap import maps as maps_module
from vizcap.compose import Placement, compose_scene, problems, visibility
from vizcap.decoding import filter_logits
from vizcap.model import IGNORE
from vizcap.scenes import render_scene


@pytest.fixture(scope="module")
def captioner():
    return make_random_captioner("both")


@pytest.fixture(scope="module")
def exp(captioner):
    return captioner.explain(render_scene(3).image, max_tokens=6)


@pytest.fixture(scope="module")
def beam(captioner):
    return captioner.explain(render_scene(3).image, strategy="beam", beams=3, max_tokens=6)


def trust_result(n_words: int = 5, nan: bool = False) -> dict:
    v = float("nan") if nan else None
    methods = ("cross_attention", "prefix", "rollout", "relevancy")
    fr = np.linspace(0, 1, 9).tolist()
    return {
        "n_scenes": 8, "n_words": n_words, "grid": [4, 4],
        "caption": {"exact": 0.5, "object_recall": 0.75},
        "pointing": {m: {"hit": v if nan else 0.9 - 0.2 * i, "chance": v if nan else 0.3} for i, m in enumerate(methods)},
        "pointing_colour_word": {m: {"hit": v if nan else 0.5, "chance": v if nan else 0.3} for m in methods},
        "mass_in_box": {m: {"mass": v if nan else 0.4, "chance": v if nan else 0.1} for m in methods},
        "sanity_spearman": {m: v if nan else 0.2 + 0.2 * i for i, m in enumerate(methods)},
        "curves": {"fractions": fr, **{m: {
            "deletion_map": [] if nan else list(np.linspace(0.9, 0.1, 9)),
            "deletion_random": [] if nan else list(np.linspace(0.9, 0.5, 9)),
            "insertion_map": [] if nan else list(np.linspace(0.1, 0.9, 9)),
            "insertion_random": [] if nan else list(np.linspace(0.1, 0.5, 9)),
            "deletion_map_auc": v if nan else 0.4, "deletion_random_auc": v if nan else 0.7,
            "insertion_map_auc": v if nan else 0.6, "insertion_random_auc": v if nan else 0.3} for m in methods}},
        "best_method": None if nan else "cross_attention",
    }


def ranking_result() -> dict:
    """trust.rank_summary of hand-made records (three scenes, one word each): cross_attention drops the word
    by 0.4 at k = 4 like the box, rollout by 0.1 like random (a word's probability 0.9; other k: half the drop)."""
    from vizcap import trust

    def entry(drops, noise):
        def probs(d):
            return [0.9 - d / 2 + noise, 0.9 - d / 2 + noise, 0.9 - d + noise, 0.9 - d + noise]

        return {"p": 0.9, "grey": 0.1, "methods": {m: {"deletion": probs(drops[m]), "insertion": [0.5] * 4}
                                                   for m in ("cross_attention", "rollout")},
                "box": {"deletion": probs(drops["box"]), "insertion": [0.6] * 4},
                "random": {"deletion": [probs(0.1)] * 2, "insertion": [[0.2] * 4] * 2}}

    records = [{"words": [{"rank": {t: entry({"cross_attention": 0.4, "rollout": 0.1, "box": 0.4}, noise)
                                    for t in ("colour", "shape")}}]} for noise in (-0.02, 0.0, 0.02)]
    return trust.rank_summary(records, ("cross_attention", "rollout"))


def check(fig: go.Figure) -> go.Figure:
    assert isinstance(fig, go.Figure)
    assert figures.title(fig), "every figure has a title"
    assert len(figures.description(fig)) > 40, "every figure has a plain-language description"
    fig.to_json()  # serialisable, as st.plotly_chart needs
    return fig


def _close(a: np.ndarray, b: np.ndarray, mean: float = 2.0) -> float:
    """Mean absolute pixel difference of two RGB arrays, asserted below `mean` (JPEG leaves ~1)."""
    assert a.shape == b.shape
    d = float(np.abs(a.astype(int) - b.astype(int)).mean())
    assert d < mean, d
    return d


def test_attention_overlay_draws_the_map_with_the_one_renderer(exp):
    """The picture the browser is sent is vizcap.render.overlay's (the renderer of Play, PNG and
    GIF), at the size it is shown; the heatmap on top is invisible and only carries the values (hover)
    and the colour bar, whose colours are the renderer's."""
    maps = exp.maps("cross_attention")
    top = float(maps.max())
    fig = check(figures.attention_overlay(exp.image, maps[0], exp.tokens[0], opacity=0.3, colorscale="cividis",
                                          vmax=top))
    image, heat = fig.data
    assert isinstance(image, go.Image) and isinstance(heat, go.Heatmap)
    pixels = figures.image_pixels(image)
    H, W = pixels.shape[:2]
    assert max(H, W) == min(figures.DISPLAY_SIDE, max(exp.image.size))
    base = exp.image.convert("RGB").resize((W, H), Image.BILINEAR) if (W, H) != exp.image.size else exp.image
    expected = np.asarray(render.overlay(base, maps[0], alpha=0.3, cmap="cividis", vmax=top))
    _close(pixels, expected)
    assert float(np.abs(pixels.astype(int) - np.asarray(base.convert("RGB"), dtype=int)).mean()) > 5  # a map is drawn
    gh, gw = exp.grid
    assert heat.dx == pytest.approx(W / gw) and heat.dy == pytest.approx(H / gh)
    assert heat.opacity == 0
    np.testing.assert_allclose(np.asarray(heat.z), maps[0])
    assert fig.layout.coloraxis.cmax == pytest.approx(top)
    assert [c[1] for c in fig.layout.coloraxis.colorscale] == ["rgb(%d,%d,%d)" % c for c in render.COLORMAPS["cividis"]]
    assert exp.tokens[0] in figures.title(fig)


def test_overlay_opacity_and_colour_range_change_the_picture():
    """A planted map: one hot cell of 0.2. Drawn on the 0..1 scale of its unit it stays dim; on its
    own 0..0.2 scale the cell is the top colour; at opacity 0 the image is untouched."""
    img = Image.new("RGB", (64, 64), (128, 128, 128))
    heat = np.zeros((4, 4))
    heat[1, 2] = 0.2
    dim = figures.image_pixels(figures.attention_overlay(img, heat, "w", opacity=1.0, vmax=1.0).data[0])
    bright = figures.image_pixels(figures.attention_overlay(img, heat, "w", opacity=1.0, vmax=0.2).data[0])
    top = np.array(render.COLORMAPS["viridis"][-1])

    def nearest_to_top(pixels):  # the pixel closest to the top colour, and how far it is
        far = np.abs(pixels.astype(int) - top).max(-1)
        return np.unravel_index(far.argmin(), far.shape), far.min()

    (y, x), far = nearest_to_top(bright)
    # near the top colour (bilinear smoothing peaks a hair below the cell's value), in cell (1, 2)
    assert far <= 45 and 16 <= y < 32 and 32 <= x < 48
    assert nearest_to_top(dim)[1] > 150  # a fifth of the way up the scale: dark blue
    none = figures.image_pixels(figures.attention_overlay(img, heat, "w", opacity=0.0, vmax=1.0).data[0])
    assert np.abs(none.astype(int) - 128).max() <= 2


def test_overlay_describes_where_the_hottest_cell_is():
    heat = np.zeros((4, 4))
    heat[0, 3] = 1.0
    from PIL import Image

    fig = figures.attention_overlay(Image.new("RGB", (64, 64)), heat, "star")
    assert "row 1 of 4, column 4 of 4 (top right)" in figures.description(fig)


def test_prefix_maps_show_each_prefix_tokens_own_map(exp, captioner):
    P = captioner.cfg.n_prefix
    mapper = exp.mapper.mean(0)
    fig = check(figures.prefix_maps(exp.image, mapper, exp.grid))
    heats = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heats) == P
    for p, heat in enumerate(heats):
        np.testing.assert_allclose(np.asarray(heat.z), mapper[p].reshape(exp.grid))
    assert fig.layout.coloraxis.cmax == pytest.approx(mapper.max())
    assert [a.text for a in fig.layout.annotations] == [f"prefix {p}" for p in range(P)]


def test_heads_grid_names_the_strongest_head_from_raw_maps():
    """Head 2 has the strongest raw cell (0.8); after max normalisation every head peaks at 1, so a
    grid that looked at the shown maps would name head 0."""
    raw = np.full((4, 3, 3), 0.05)
    raw[0, 0, 0], raw[1, 1, 1], raw[2, 2, 0], raw[3, 0, 2] = 0.3, 0.5, 0.8, 0.2
    shown = raw / raw.max(axis=(1, 2), keepdims=True)
    fig = check(figures.heads_grid(Image.new("RGB", (48, 48)), shown, "star", 1, raw=raw, vmax=1.0, normalize="max"))
    text = figures.description(fig)
    assert "Head 2 has the strongest single cell" in text and "0.8" in text
    assert "own peak" in text  # says that each panel is scaled to itself
    for h, heat in enumerate(t for t in fig.data if isinstance(t, go.Heatmap)):
        np.testing.assert_allclose(np.asarray(heat.z), shown[h])
    assert "Head 2 has" in figures.description(figures.heads_grid(Image.new("RGB", (48, 48)), raw, "star", 1))


def test_colour_range_of_each_normalisation():
    """none keeps a share's own 0..1 scale (a weak map stays weak; never clipped if a value were
    above 1); an unbounded unit (relevancy) runs to its largest value; max and global are 0..1; sum
    runs to the largest share. The colour bar says which."""
    weak = np.array([[[0.1, 0.2], [0.05, 0.0]], [[0.0, 0.1], [0.3, 0.0]]])
    top, label = maps_module.colour_range(weak, "cross_attention", "none")
    assert top == 1.0 and "0–1" in label and "attention" in label
    assert maps_module.colour_range(weak * 5, "prefix", "none")[0] == pytest.approx(1.5)
    top, label = maps_module.colour_range(weak * 7, "relevancy", "none")
    assert top == pytest.approx(2.1) and "relevance" in label
    assert maps_module.colour_range(weak, "rollout", "none")[0] == 1.0  # rollout's raw values are shares too
    assert maps_module.colour_range(weak, "rollout", "max") == (1.0, maps_module.unit("rollout", "max"))
    assert maps_module.colour_range(weak, "rollout", "global") == (1.0, maps_module.unit("rollout", "global"))
    assert maps_module.colour_range(weak, "rollout", "sum")[0] == pytest.approx(0.3)
    assert "median" in maps_module.colour_range(weak, "cross_attention", "none", sinks=True)[1]
    assert maps_module.colour_range(np.zeros((1, 2, 2)), "relevancy", "none")[0] == 1.0  # an empty map: no 0..0 scale
    fig = figures.attention_overlay(Image.new("RGB", (32, 32)), weak[0], "w", vmax=1.0, method="cross_attention")
    assert "0–1" in fig.layout.coloraxis.colorbar.title.text


def test_words_are_escaped_for_plotly(exp, beam):
    """plotly reads <b>, <br>… in any text as markup and turns &lt; &gt; &amp; back into characters:
    a word such as "<b>" must reach it escaped, in titles, axis labels and the beam tree."""
    word = "<b>x</b>&y"
    safe = "&lt;b&gt;x&lt;/b&gt;&amp;y"
    heat = np.ones((2, 2))
    img = Image.new("RGB", (32, 32))
    assert safe in figures.title(figures.attention_overlay(img, heat, word))
    assert safe in figures.title(figures.heads_grid(img, np.ones((2, 2, 2)), word, 0))
    bar = figures.alternatives_bar([word, "a"], [0.6, 0.3], word, 0)
    assert safe in figures.title(bar) and safe in list(bar.data[0].y)
    assert bar.data[0].marker.color[list(bar.data[0].y).index(safe)] == figures.OKABE_ITO[0]
    steps = figures.step_probabilities({"greedy": ([word], [0.5])})
    assert list(steps.data[0].x) == [f"1. {safe}"]
    assert safe in list(figures.distribution_reshape([word, "a"], np.array([2.0, 1.0]), context=word).data[0].x)
    tree = [dict(step, tokens=[word] * len(step["tokens"])) for step in beam.beam_tree]
    nodes = next(t for t in figures.beam_tree(tree, beam.token_ids, beam.ended).data if (t.name or "").startswith("live hypothesis"))
    assert nodes.text[0] == "&lt;bos&gt;" and set(nodes.text[1:]) == {safe}
    assert safe in list(figures.word_prefix_heatmap([word], np.array([[0.5, 0.2]])).data[0].y)[0]


def test_grid_panels_each_pair_an_image_with_its_own_map_on_separate_axes(exp, captioner):
    H = captioner.cfg.decoder_heads
    per_head = np.stack([exp.maps("cross_attention", 0, h)[0] for h in range(H)])
    fig = figures.heads_grid(exp.image, per_head, exp.tokens[0], 0)
    images = [t for t in fig.data if isinstance(t, go.Image)]
    heats = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(images) == len(heats) == H
    axes = [(t.xaxis, t.yaxis) for t in heats]
    assert axes == [(t.xaxis, t.yaxis) for t in images] and len(set(axes)) == H
    for h, heat in enumerate(heats):
        np.testing.assert_allclose(np.asarray(heat.z), per_head[h])
    boxes = []
    for x, y in axes:
        xa, ya = fig.layout[x.replace("x", "xaxis", 1)], fig.layout[y.replace("y", "yaxis", 1)]
        assert ya.autorange == "reversed" and ya.scaleanchor == x  # square pixels, image upright
        boxes.append((*xa.domain, *ya.domain))
    for i, a in enumerate(boxes):  # no two panels overlap
        for b in boxes[i + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
    assert [a.text for a in fig.layout.annotations] == [f"head {h}" for h in range(H)]


def test_image_source_photos_are_shrunk_jpegs_and_scenes_lossless_pngs():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8))
    uri, w, h = figures.image_source(photo)
    assert uri.startswith("data:image/jpeg;base64,") and (w, h) == (figures.DISPLAY_SIDE, 240)
    assert figures.image_source(photo)[0] is uri  # encoded once per image object
    scene = render_scene(3).image
    uri2, w2, h2 = figures.image_source(scene)
    assert uri2.startswith("data:image/png;base64,") and (w2, h2) == scene.size
    np.testing.assert_array_equal(figures.image_pixels(go.Image(source=uri2)), np.asarray(scene.convert("RGB")))
    other = render_scene(4).image
    assert figures.image_source(other)[0] != uri2


def test_image_source_from_many_threads_gives_each_image_its_own_uri():
    from concurrent.futures import ThreadPoolExecutor

    scenes = [render_scene(seed).image for seed in range(40)]  # more than the cache keeps
    expected = [figures.image_source(im.copy())[0] for im in scenes]  # fresh objects: no cached answers
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(lambda im: figures.image_source(im)[0], scenes)) == expected


def test_word_prefix_heatmap_rows_are_words_and_sum_to_one(exp):
    from vizcap.maps import select

    to_prefix = select(exp.self_prefix, None, None)
    fig = check(figures.word_prefix_heatmap(exp.tokens, to_prefix))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (len(exp.tokens), exp.n_prefix + 1)
    np.testing.assert_allclose(z.sum(1), 1.0, atol=1e-5)


def test_alternatives_bar_highlights_the_written_word(exp):
    fig = check(figures.alternatives_bar(exp.top_tokens[0], exp.top_probs[0], exp.tokens[0], 0))
    bar = fig.data[0]
    chosen = list(bar.y).index(exp.tokens[0])
    assert bar.marker.color[chosen] == figures.OKABE_ITO[0]
    assert sorted(bar.x, reverse=True) == pytest.approx(list(exp.top_probs[0]))


def test_step_probabilities_one_row_per_run(exp, beam):
    fig = check(figures.step_probabilities({"greedy": (exp.tokens, list(exp.probs)),
                                            "beam": (beam.tokens, list(beam.probs))}))
    assert len(fig.data) == 2
    assert list(fig.data[0].y) == pytest.approx(list(exp.probs))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 12])
def test_panels_never_overlap_and_stay_inside_the_figure(n):
    rows = figures.step_probabilities({f"run {i}": (["a", "b"], [0.5, 0.25]) for i in range(n)})
    grid = figures.map_grid(Image.new("RGB", (32, 24)), np.random.default_rng(n).random((n, 3, 4)),
                            [f"panel {i}" for i in range(n)], "t", "a description of the panels", columns=min(n, 6))
    for fig in (rows, grid):
        boxes = []
        for trace in fig.data:
            if isinstance(trace, go.Heatmap) or isinstance(trace, go.Bar):
                xa = fig.layout[trace.xaxis.replace("x", "xaxis", 1)]
                ya = fig.layout[trace.yaxis.replace("y", "yaxis", 1)]
                x0, x1 = xa.domain
                y0, y1 = ya.domain
                assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
                boxes.append((x0, x1, y0, y1))
        assert len(boxes) == n
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
    assert [a.text for a in rows.layout.annotations] == [f"run {i}" for i in range(n)]


def test_beam_tree_draws_every_hypothesis_and_the_chosen_path(beam):
    fig = check(figures.beam_tree(beam.beam_tree, beam.token_ids, beam.ended))
    nodes = next(t for t in fig.data if (t.name or "").startswith("live hypothesis"))
    assert len(nodes.x) == 1 + sum(len(s["tokens"]) for s in beam.beam_tree)
    path = next(t for t in fig.data if t.name == "chosen caption")
    assert len(path.x) == 1 + len(beam.token_ids) + (1 if beam.ended else 0)


def _synthetic_tree() -> list[dict]:
    """3 beams. Step 2 extends beams 2, 0, 0 (in that score order): drawn by beam rank, its edges cross.
    Beam 1 of step 1 is dropped; one hypothesis ends after step 1's beam 2, one after step 2's beam 0."""
    return [
        {"tokens": ["a", "two", "the"], "token_ids": [1, 2, 3], "parents": [0, 0, 0], "scores": [-0.1, -1.0, -2.0],
         "finished": []},
        {"tokens": ["red", "blue", "star"], "token_ids": [4, 5, 6], "parents": [2, 0, 0], "scores": [-0.5, -1.2, -1.5],
         "finished": [{"parent": 2, "logp": -2.5, "score": -1.25}]},
        {"tokens": ["star", "x", "y"], "token_ids": [6, 7, 8], "parents": [0, 2, 2], "scores": [-0.6, -3.0, -3.1],
         "finished": [{"parent": 0, "logp": -0.9, "score": -0.3}], "truncated": False},
    ]


def test_beam_tree_stays_readable():
    """Children are drawn next to their parent (no two edges cross), hypotheses dropped at the next
    step are faded, ended ones sit in their own lane below every live one, the chosen caption ends in
    its <eos> diamond, and <bos>, <eos>, log p and score are explained."""
    fig = check(figures.beam_tree(_synthetic_tree(), [3, 4], ended=True))  # "the red <eos>"
    nodes = next(t for t in fig.data if (t.name or "").startswith("live hypothesis"))
    edges = [t for t in fig.data if t.mode == "lines" and t.name is None]
    segments = []
    for trace in edges:
        x, y = list(trace.x), list(trace.y)
        segments += [(x[k], y[k], y[k + 1]) for k in range(0, len(x), 3)]
    for step in {x0 for x0, _, _ in segments}:
        here = sorted((y1, y0) for x0, y0, y1 in segments if x0 == step)
        starts = [y0 for _, y0 in here]
        assert starts == sorted(starts), (step, here)  # ordered by parent: no crossing
    ended = next(t for t in fig.data if t.name and "ended" in t.name)
    assert min(ended.y) > max(nodes.y)  # their own lane
    colours = dict(zip(zip(nodes.x, nodes.text), nodes.marker.color))
    assert colours[(2, "blue")] == "#c9c9c9" and colours[(2, "red")] == figures.OKABE_ITO[0]  # blue is dropped
    assert colours[(1, "two")] == "#c9c9c9" and colours[(1, "the")] == figures.OKABE_ITO[0]
    path = next(t for t in fig.data if t.name == "chosen caption")
    assert list(path.x) == [0, 1, 2, 3] and path.y[-1] in set(ended.y)
    text = figures.description(fig)
    assert all(w in text for w in ("<bos>", "<eos>", "log p", "score", "length penalty"))
    assert "5 hypotheses were dropped" in text  # "two", "blue", and the last step's three (the search stopped)


def test_beam_tree_of_a_chain(exp):
    fig = check(figures.beam_tree(exp.beam_tree, exp.token_ids, exp.ended))
    nodes = next(t for t in fig.data if (t.name or "").startswith("live hypothesis"))
    assert set(nodes.y) == {0.0}


def test_distribution_reshape_matches_filter_logits():
    words = ["a", "b", "c", "d", "e"]
    logits = np.array([3.0, 2.0, 1.0, 0.0, -np.inf])
    fig = check(figures.distribution_reshape(words, logits, temperature=0.5, top_k=0, top_p=0.9, context="x"))
    before, after = fig.data
    expected = torch.softmax(filter_logits(torch.tensor(logits)[None], 0.5, 0, 0.9)[0], -1).numpy()
    order = [words.index(w) for w in after.x]
    assert list(after.y) == pytest.approx(expected[order].tolist())
    assert list(before.y) == pytest.approx(torch.softmax(torch.tensor(logits), -1).numpy()[order].tolist())
    assert "temperature 0.5" in figures.description(fig)


def test_distribution_log_scale_shows_the_tail():
    """On the log axis the tail word (p ≈ 4.5e-5) lies inside the drawn range and above its lowest
    tick; on the linear axis it is a sliver of a 0..1 range."""
    logits = np.array([5.0, 0.0, -5.0])
    p_tail = float(torch.softmax(torch.tensor(logits), -1)[2])
    log = check(figures.distribution_reshape(list("abc"), logits, log_scale=True))
    lo, hi = log.layout.yaxis.range
    assert log.layout.yaxis.type == "log" and lo <= math.log10(p_tail) <= hi
    assert min(log.layout.yaxis.tickvals) < p_tail and list(log.data[0].y)[2] == pytest.approx(p_tail)
    linear = figures.distribution_reshape(list("abc"), logits, log_scale=False)
    assert linear.layout.yaxis.type in (None, "linear") and list(linear.layout.yaxis.range) == [0, 1]


def test_aux_predictions_leave_background_clear_and_use_true_colours():
    from PIL import Image

    classes = np.array([[0, 1], [2, 0]])
    fig = check(figures.aux_predictions(Image.new("RGB", (32, 32)), classes, ["background", "red", "blue"], "colour"))
    z = np.asarray(fig.data[1].z, dtype=float)
    assert np.isnan(z[0, 0]) and np.isnan(z[1, 1]) and not np.isnan(z[0, 1])
    assert "#dc2828" in str(fig.data[1].colorscale)  # red is drawn red


def test_temperature_flattens_and_sharpens():
    words = list("abcd")
    logits = np.array([2.0, 1.0, 0.0, -1.0])
    hot = figures.distribution_reshape(words, logits, temperature=3.0).data[1].y[0]
    cold = figures.distribution_reshape(words, logits, temperature=0.3).data[1].y[0]
    assert cold > hot


def test_architecture_and_labels_from_a_real_forward_pass(captioner):
    scene = render_scene(3)
    info = anatomy.trace(captioner, scene.image, scene.caption)
    s = info["shapes"]
    P, cfg = captioner.cfg.n_prefix, captioner.cfg
    n_words = len(captioner.tokenizer.encode(scene.caption))
    assert s["memory"] == [1, captioner.grid[0] * captioner.grid[1], cfg.d_model]
    assert s["prefix"] == [1, P, cfg.d_model]
    assert s["logits"] == [1, P + n_words + 2, cfg.vocab_size]
    labels = [r["label"] for r in info["positions"]]
    assert labels[:P] == [IGNORE] * P and labels[-1] == IGNORE
    assert [r["target"] for r in info["positions"][P : P + n_words]] == scene.caption.split()
    assert math.isfinite(info["loss"])
    assert set(info["aux"]) == {"shape"}
    fig = check(figures.architecture(s))
    text = figures.description(fig)
    assert "×".join(map(str, s["memory"])) in text and "cross-attention" in text
    check(figures.aux_predictions(scene.image, info["aux"]["shape"]["classes"], info["aux"]["shape"]["names"], "shape"))


@pytest.mark.parametrize("mode", ["prefix", "cross"])
def test_architecture_other_modes(mode):
    cap = make_random_captioner(mode)
    s = anatomy.trace(cap, render_scene(1).image, "a red circle")["shapes"]
    text = figures.description(check(figures.architecture(s)))
    assert ("cross-attention" in text) == (mode == "cross")
    assert ("prefix" in text) == (mode == "prefix")


def test_loss_curve_plots_each_logged_loss():
    rows = [{"step": s, "loss": 5 / s, "caption_loss": 3 / s, "aux_loss": 2 / s, "lr": 1e-3} for s in range(1, 6)]
    fig = check(figures.loss_curve(rows))
    assert [t.name for t in fig.data] == ["loss", "caption loss", "aux loss"]
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5]
    assert "from 5.00 to 1.00" in figures.description(fig)
    check(figures.loss_curve([]))
    shapes = [dict(r, bind_loss=1 / r["step"], attend_loss=0.5 / r["step"]) for r in rows]  # the ShapeScenes preset's
    fig = check(figures.loss_curve(shapes))
    assert [t.name for t in fig.data] == ["loss", "caption loss", "aux loss", "bind loss", "attend loss"]
    assert list(fig.data[4].y) == [0.5 / s for s in range(1, 6)]
    assert "attend loss that of the decoder's attention" in figures.description(fig)
    assert "attend loss" not in figures.description(figures.loss_curve(rows))


def test_trust_figures_and_verdict():
    r = trust_result()
    r["mass_in_box"]["rollout"] = {"mass": 0.55, "chance": 0.2}
    r["curves"]["rollout"]["deletion_map"] = [0.8, 0.3, 0.1]
    r["curves"]["rollout"]["deletion_map_auc"] = 0.33
    fig = check(figures.pointing_game(r))
    assert list(fig.data[0].x) == list(r["pointing"])
    assert list(fig.data[0].y) == pytest.approx([0.9, 0.7, 0.5, 0.3])
    assert list(fig.data[1].y) == pytest.approx([0.5] * 4)  # colour words
    fig = check(figures.mass_in_box(r))
    assert list(fig.data[0].y) == pytest.approx([0.4, 0.4, 0.55, 0.4])
    assert list(fig.data[1].y) == pytest.approx([0.1, 0.1, 0.2, 0.1])
    fig = check(figures.sanity_check(r))
    assert list(fig.data[0].y) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    green, orange = figures.OKABE_ITO[2], figures.OKABE_ITO[5]
    assert list(fig.data[0].marker.color) == [green, green, orange, orange]  # below 0.5: depends on training
    fig = check(figures.deletion_insertion(r, "rollout"))
    assert len(fig.data) == 4
    deletion = fig.data[0]
    assert list(deletion.y) == pytest.approx([0.8, 0.3, 0.1]) and list(deletion.x) == pytest.approx(r["curves"]["fractions"][:3])
    assert "0.33" in deletion.name
    text = " ".join(figures.trust_verdict(r))
    assert "90%" in text and "30%" in text and "Faithfulness." in text
    assert "Passed: *cross attention* (0.20), *prefix* (0.40)" in text and "Failed: *rollout* (0.60), *relevancy* (0.80)" in text


def test_trust_verdict_is_driven_by_the_numbers():
    r = trust_result()
    r["pointing"]["cross_attention"]["hit"] = 0.32
    r["sanity_spearman"]["cross_attention"] = 0.9
    r["curves"]["cross_attention"]["deletion_map_auc"] = 0.8
    text = " ".join(figures.trust_verdict(r))
    assert "no better than a random cell" in text
    assert "Failed: *cross attention* (0.90)" in text and "Faithfulness not shown" in text


def test_trust_verdict_reports_a_trained_map_as_its_training_target():
    """Issue 25, item 5: a map the model was trained to point with is not "the best method": its pointing
    is stated as the training target, and the verdict follows the best untrained method."""
    r = trust_result()
    r["pointing"]["cross_attention"] = {"hit": 1.0, "chance": 0.16}
    text = " ".join(figures.trust_verdict(r, trained=("cross_attention",)))
    assert "**Trained to point.** *cross attention* put their hottest cell on the named object 100%" in text
    assert "training target, not evidence" in text
    assert "The best untrained method, *" in text and "The best untrained method, *cross attention*" not in text
    untrained = " ".join(figures.trust_verdict(r))
    assert "Trained to point" not in untrained and "The best method, *cross attention*" in untrained


def test_trust_verdict_is_never_stronger_than_its_numbers():
    """The shipped model's case: the hottest cell is on the object 98 % of the time, but only 31 % of
    the map's weight is: the verdict says both, and nowhere that the maps "can be trusted"."""
    r = trust_result()
    r["pointing"]["cross_attention"] = {"hit": 0.98, "chance": 0.16}
    r["mass_in_box"]["cross_attention"] = {"mass": 0.31, "chance": 0.07}
    text = " ".join(figures.trust_verdict(r))
    assert "98%" in text and "16%" in text and "31%" in text and "7%" in text
    assert "not the whole map" in text and "trusted" not in text
    r["mass_in_box"]["cross_attention"] = {"mass": 0.7, "chance": 0.07}
    assert "most of the map's weight is on the object" in " ".join(figures.trust_verdict(r))
    assert all(len(line) > 20 for line in figures.MEASURES.values())


def test_top_k_deletion_figure():
    """Per method, the box and random: the mean drop (left) and insertion probability (right) at k = 1, 2, 4, 8
    with the 95 % intervals as error bars; the description gives the drops at k = 4. Without the
    measurement: an empty figure that says how to measure it."""
    r = {**trust_result(), "ranking": ranking_result()}
    fig = check(figures.top_k_deletion(r))
    assert [t.name for t in fig.data] == ["cross attention", "rollout", "box (the object's own cells)",
                                          "random (2 orders)"] * 2
    assert [t.showlegend for t in fig.data] == [True] * 4 + [False] * 4
    cross, box, insertion = fig.data[0], fig.data[2], fig.data[4]
    assert list(cross.x) == ["1", "2", "4", "8"] and list(cross.y) == pytest.approx([0.2, 0.2, 0.4, 0.4])
    s = r["ranking"]["deletion"]["all"]["cross_attention"]
    assert list(cross.error_y.array) == pytest.approx([h - m for h, m in zip(s["high"], s["mean"])])
    assert list(cross.error_y.arrayminus) == pytest.approx([m - lo for m, lo in zip(s["mean"], s["low"])])
    assert cross.error_y.array[2] > 0.01  # the scenes differ: a real interval
    assert list(box.y) == pytest.approx([0.2, 0.2, 0.4, 0.4]) and list(insertion.y) == pytest.approx([0.5] * 4)
    assert "Drops at k = 4: cross attention 0.40, rollout 0.10, box (the object's own cells) 0.40" in figures.description(fig)
    shape_only = check(figures.top_k_deletion(r, "shape"))
    assert "shape words of 3 named objects" in figures.description(shape_only)
    missing = check(figures.top_k_deletion(trust_result()))
    assert not missing.data and "Not measured" in figures.description(missing)
    assert "`vizcap eval --rank-n N`" in figures.description(missing)


def test_trust_with_nothing_measured_has_no_fake_numbers():
    r = trust_result(n_words=0, nan=True)
    for make in (figures.pointing_game, figures.mass_in_box, figures.sanity_check):
        fig = check(make(r))
        assert all(v is None for v in fig.data[0].y)
    check(figures.deletion_insertion(r, "prefix"))
    assert "Too little to measure" in " ".join(figures.trust_verdict(r))


def test_compose_scene_draws_what_was_asked():
    scene = compose_scene([Placement("blue", "circle", 0.75, 0.5, 0.3), Placement("red", "star", 0.25, 0.5, 0.3)],
                          width=200, height=120)
    assert scene.image.size == (200, 120)
    assert scene.caption == "a red star left of a blue circle"  # caption order: left to right
    assert [o.name for o in scene.objects] == ["red star", "blue circle"]
    star = np.asarray(scene.image)[scene.mask == 1].mean(0)
    assert star[0] > 150 and star[2] < 100  # the red object is where the mask says
    again = compose_scene([Placement("blue", "circle", 0.75, 0.5, 0.3), Placement("red", "star", 0.25, 0.5, 0.3)],
                          width=200, height=120)
    assert np.array_equal(np.asarray(scene.image), np.asarray(again.image))  # pure


def test_compose_scene_counts_and_keeps_objects_inside():
    scene = compose_scene([Placement("green", "square", 0.0, 0.0, 0.3), Placement("green", "square", 1.0, 1.0, 0.3)])
    assert scene.caption == "two green squares"
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        assert x0 >= 0 and y0 >= 0 and x1 <= 256 and y1 <= 256


def test_compose_leaves_hidden_objects_out_of_the_true_caption():
    """A red square completely behind a blue circle is not in the caption, nor in the mask; one
    that shows more than half of itself stays. visibility() says how much of each is in view."""
    hidden = [Placement("red", "square", 0.5, 0.5, 0.2), Placement("blue", "circle", 0.5, 0.5, 0.45)]
    assert visibility(hidden) == [0.0, 1.0]
    scene = compose_scene(hidden)
    assert scene.caption == "a blue circle" and [o.name for o in scene.objects] == ["blue circle"]
    assert set(np.unique(scene.mask)) == {0, 1}
    red = np.all(np.abs(np.asarray(scene.image).astype(int) - (220, 40, 40)) < 60, -1)
    assert red.sum() == 0  # indeed nothing of it can be seen
    partly = [Placement("red", "square", 0.3, 0.5, 0.3), Placement("blue", "circle", 0.55, 0.5, 0.3)]
    seen = visibility(partly)
    assert 0.5 < seen[0] < 0.95 and seen[1] == 1.0
    assert compose_scene(partly).caption == "a red square left of a blue circle"
    mostly = [Placement("red", "square", 0.45, 0.5, 0.3), Placement("blue", "circle", 0.5, 0.5, 0.35)]
    assert visibility(mostly)[0] < 0.5 and compose_scene(mostly).caption == "a blue circle"


def test_compose_refuses_bad_values():
    assert problems([]) and problems([Placement("teal", "circle")]) and problems([Placement("red", "blob")])
    assert problems([Placement("red", "circle", x=1.5)])
    with pytest.raises(ValueError, match="colour"):
        compose_scene([Placement("teal", "circle")])


def test_vizcap_never_imports_streamlit():
    code = ("import sys, vizcap, vizcap.figures, vizcap.compose, vizcap.anatomy, vizcap.render, vizcap.trust; "
            "assert 'streamlit' not in sys.modules, 'vizcap imported streamlit'")
    result = run_module("-c", code)
    assert result.returncode == 0, result.stderr


def test_percentages_never_round_to_all_or_nothing():
    """A pointing score of 0.9968 is not "100% of the time" (nor 0.004 "0%")."""
    assert [figures.percent(v) for v in (0.9968, 1.0, 0.004, 0.0, 0.5, 0.994, float("nan"), None)] == \
        ["99.7%", "100%", "0.4%", "0%", "50%", "99%", "n/a", "n/a"]


def test_percentages_round_the_share_as_written():
    """0.945 of 200 captions is 189 of them: 94.5 % rounds to 95 %, though the float 0.945 is 0.94499…"""
    assert [figures.percent(v) for v in (0.945, 0.825, 0.125, 0.9995, 0.0004)] == ["95%", "83%", "13%", "99.95%", "0.04%"]


def test_photo_trust_verdict_follows_the_numbers():
    """Issue 26, item 9: one sentence per method in plain words, each clause decided by its number."""
    result = {"words": ["a", "cat"], "methods": {
        "cross_attention": {"sanity": 0.2, "deletion_map_auc": 0.10, "deletion_random_auc": 0.30,
                            "insertion_map_auc": 0.50, "insertion_random_auc": 0.30},
        "rollout": {"sanity": 0.71, "deletion_map_auc": 0.070, "deletion_random_auc": 0.062,
                    "insertion_map_auc": 0.31, "insertion_random_auc": 0.30}}}
    cross, rollout, closing = figures.photo_trust_verdict(result)
    assert cross.startswith("**Cross attention:**") and "depends on what the model learned" in cross
    assert "those cells matter to the words" in cross and "brings the words back sooner" in cross
    assert "draws a similar map (rank correlation 0.71)" in rollout
    assert "hurts the words no more than random cells (area 0.070 vs 0.062)" in rollout
    assert "no sooner than random" in rollout and "2 words" in closing
    assert figures.photo_trust_verdict({"words": [], "methods": {}})[0].startswith("**Nothing to measure.**")


# -- readable on a projector (issue 26, items 13 and 14) ------------------------------------------------


def _contrast_on_white(colour: str) -> float:
    """WCAG contrast of a #rrggbb colour against white."""
    rgb = [int(colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lum = sum(w * (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
              for w, c in zip((0.2126, 0.7152, 0.0722), rgb))
    return 1.05 / (lum + 0.05)


def _text_settings(fig: go.Figure) -> list[tuple[str, object, object]]:
    """(where, font size, font colour) of every text a figure sets: axes (ticks, titles), colour bars,
    legend, annotations, text on traces, text in bars."""
    layout = fig.to_plotly_json()["layout"]
    out = []
    for name, axis in layout.items():
        if name[1:5] == "axis" and name[0] in "xy":
            out.append((f"{name} ticks", axis.get("tickfont", {}).get("size"), axis.get("tickfont", {}).get("color")))
            title = axis.get("title", {})
            out.append((f"{name} title", title.get("font", {}).get("size"), title.get("font", {}).get("color")))
    if "coloraxis" in layout:
        bar = layout["coloraxis"].get("colorbar", {})
        out.append(("colour bar ticks", bar.get("tickfont", {}).get("size"), bar.get("tickfont", {}).get("color")))
        out.append(("colour bar title", bar.get("title", {}).get("font", {}).get("size"), None))
    legend = layout.get("legend", {}).get("font", {})
    out.append(("legend", legend.get("size"), legend.get("color")))
    out.append(("title", layout.get("title", {}).get("font", {}).get("size"), None))
    out.append(("text in bars", layout.get("uniformtext", {}).get("minsize"), None))
    for a in layout.get("annotations", []):
        out.append((f"annotation {a.get('text')!r}", a.get("font", {}).get("size", layout.get("font", {}).get("size")),
                     None))
    for t in fig.data:
        if getattr(t, "textfont", None) is not None and t.textfont.size is not None:
            out.append((f"{t.type} text", t.textfont.size, None))
    return out


def test_chart_text_is_14_px_or_more_and_dark_enough(exp, beam):
    """Every figure sets its chart text to at least 14 px, on every axis, colour bar and legend (Streamlit's
    theme would draw them at 12 px in a 60 % grey), its titles fit a 400-px chart (wrapped), and the greys
    that carry words are WCAG AA on white."""
    img = exp.image
    maps = exp.maps("cross_attention")
    result = trust_result()
    figs = [figures.attention_overlay(img, maps[0], exp.tokens[0]),
            figures.heads_grid(img, np.stack([maps[0]] * 4), exp.tokens[0], 0),
            figures.alternatives_bar(exp.top_tokens[0], exp.top_probs[0], exp.tokens[0], 0),
            figures.step_probabilities({"greedy": (exp.tokens, list(exp.probs)), "beam": (beam.tokens, list(beam.probs))}),
            figures.distribution_reshape(["a", "b", "c"], np.array([2.0, 1.0, 0.0]), 1.5, 0, 1.0,
                                         context="<start> a blue circle above a blue square and a red"),
            figures.beam_tree(beam.beam_tree, beam.token_ids, beam.ended),
            figures.pointing_game(result), figures.mass_in_box(result), figures.sanity_check(result),
            figures.deletion_insertion(result, "cross_attention"),
            figures.top_k_deletion({**result, "ranking": ranking_result()}),
            figures.encoder_layers(img, np.stack([maps[0]] * 2), [0.1, 0.2], "the patch at row 1, column 1", cell=(0, 0)),
            figures.patch_picker(img, exp.grid, (0, 0)),
            figures.loss_curve([{"step": s, "loss": 1.0 / (s + 1), "caption_loss": 0.5} for s in range(5)])]
    for fig in figs:
        name = figures.title(fig)
        for where, size, colour in _text_settings(fig):
            assert size is not None and size >= 14, (name, where, size)
            if colour:
                assert _contrast_on_white(colour) >= 4.5, (name, where, colour)
        for line in name.split("<br>"):
            assert len(line.strip()) <= figures.TITLE_CHARACTERS + 20, (name, line)  # entities count as 4–5 characters
    assert _contrast_on_white(figures.TEXT_GREY) >= 4.5


def test_titles_wrap_at_spaces_and_still_read_as_one_sentence():
    text = "Inside the ViT: where the patch at row 3, column 5 looks"
    wrapped = figures.wrap_title(text, 44)
    assert wrapped.count("<br>") == 1 and wrapped.replace("<br>", "") == text
    assert all(len(line) <= 45 for line in wrapped.split("<br>"))
    assert figures.wrap_title("a<br>b", 44) == "a<br>b" and figures.wrap_title("short", 44) == "short"
    fig = figures.attention_overlay(Image.new("RGB", (16, 16)), np.ones((2, 2)), "w" * 60)
    assert fig.layout.margin.t > 60 and fig.layout.height > 430  # room for the extra line, the plot kept


def test_heads_grid_in_two_columns_keeps_each_panel_160_px_tall():
    """The lesson shows the 4 heads as 2×2 in a half-wide column (~480 px at 1280×800): each panel
    has at least 160 px of height (its width follows: square cells); in one row they would get ~85 px."""
    img = Image.new("RGB", (64, 64))
    fig = figures.heads_grid(img, np.ones((4, 4, 4)), "w", 1, columns=2)
    plot = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    spans = [fig.layout[f"yaxis{'' if i == 0 else i + 1}"].domain for i in range(4)]
    assert len({tuple(s) for s in spans}) == 2  # two rows
    assert min((hi - lo) * plot for lo, hi in spans) >= 160


def test_beam_tree_words_take_turns_above_and_below_their_dot():
    """Neighbouring steps' words sit on opposite sides of their dots, and rows are far enough apart
    for a word below one dot and a word above the next row's, so that words as wide as two steps never
    print over each other (lesson step 3 read "triangletriangles")."""
    fig = figures.beam_tree(_synthetic_tree(), [3, 4], ended=True)
    nodes = next(t for t in fig.data if (t.name or "").startswith("live hypothesis"))
    side = dict(zip(nodes.x, nodes.textposition))
    assert {side[x].split()[0] for x in (0, 2)} == {"top"} and {side[x].split()[0] for x in (1, 3)} == {"bottom"}
    rows = fig.layout.yaxis.range[0] - fig.layout.yaxis.range[1]
    plot = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert plot / rows >= 2 * 19 + 8  # two 19-px word boxes and the dots' own room between rows
