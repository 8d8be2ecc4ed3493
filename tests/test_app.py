"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest (no browser): the default flow
and each widget path of every page, friendly errors for bad inputs, and the proof that display-only
widgets never run the model.

The app is pointed at a small random checkpoint through VIZCAP_CHECKPOINT, so these tests are fast
and do not need the shipped model."""

from __future__ import annotations

import base64
import html
import io
import json
import struct
import zlib
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import make_random_captioner
from test_figures import ranking_result, trust_result
from vizcap import figures, render
from vizcap import maps as vizcap_maps
from vizcap.captioner import Captioner
from vizcap.decoding import DecodingParams, params_for
from vizcap.links import DEFAULT_SCENE
from transformers import GPT2Model
from vizcap.model import CaptionModel

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = ["app_pages/explorer.py", "app_pages/decoding_lab.py", "app_pages/how_it_works.py", "app_pages/training_and_trust.py"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def app_checkpoint(tmp_path_factory) -> Path:
    """A random 64-px captioner that writes long captions, with a training log and metrics."""
    out = tmp_path_factory.mktemp("app_checkpoint")
    make_random_captioner("both").save_pretrained(out)
    rows = [{"step": s, "loss": 4.0 / s, "caption_loss": 3.0 / s, "aux_loss": 1.0 / s} for s in range(1, 11)]
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "metrics.json").write_text(json.dumps({"heldout": {"exact": 0.25, "object_recall": 0.5, "n_scenes": 8},
                                                  "args": {"steps": 10, "batch_size": 4, "aux_weight": 1.0},
                                                  "samples_seen": 40, "train_seconds": 3.0}))
    return out


@pytest.fixture(scope="module")
def trusted_checkpoint(app_checkpoint, tmp_path_factory) -> Path:
    """The same checkpoint with a precomputed trust.json."""
    out = tmp_path_factory.mktemp("trusted_checkpoint")
    for f in app_checkpoint.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    independent = trust_result()
    independent["n_scenes"] = 6
    independent["pointing"]["cross_attention"]["hit"] = 0.55
    independent["ranking"] = ranking_result()  # the held-out set has no top-k test (a trust.json written before it)
    hard = trust_result()
    hard.update(n_scenes=7, curves_n=0, curves={"fractions": hard["curves"]["fractions"]},
                sanity_spearman={m: float("nan") for m in hard["sanity_spearman"]})
    hard["pointing"]["cross_attention"]["hit"] = 0.45
    (out / "trust.json").write_text(json.dumps({**trust_result(), "command": "vizcap eval --n 8 --independent --hard",
                                                "independent": independent, "hard": hard}))
    return out


@pytest.fixture
def app(app_checkpoint, monkeypatch):
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(app_checkpoint))
    monkeypatch.setenv("VIZCAP_PLAY_SECONDS", "0")
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


@pytest.fixture
def calls(monkeypatch):
    """Counts Captioner.explain calls, and every pass through the model's encoder and its GPT-2
    decoder (any use of the model at all, whoever makes it)."""
    counts = {"explain": 0, "encode": 0, "decoder": 0}
    explain, encode, decoder = Captioner.explain, CaptionModel.encode, GPT2Model.forward

    def counted(name, fn):
        def wrapper(self, *a, **k):
            counts[name] += 1
            return fn(self, *a, **k)
        return wrapper

    monkeypatch.setattr(Captioner, "explain", counted("explain", explain))
    monkeypatch.setattr(CaptionModel, "encode", counted("encode", encode))
    monkeypatch.setattr(GPT2Model, "forward", counted("decoder", decoder))
    return counts


def common_md(text: str) -> str:
    from app_pages.common.widgets import md

    return md(text)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def caption_of(at: AppTest) -> str:
    shown = [m.value for m in at.markdown if "vz-caption" in m.value]
    assert shown, "the caption is on the page"
    return shown[0]


def shown_figures(at: AppTest) -> list[dict]:
    """Every plotly figure on the page, as the JSON the browser gets."""
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def figure(at: AppTest, title: str) -> dict:
    found = [f for f in shown_figures(at) if f["layout"].get("title", {}).get("text", "").startswith(title)]
    assert len(found) == 1, [f["layout"].get("title", {}).get("text") for f in shown_figures(at)]
    return found[0]


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(v) for v in str(value.get("shape", len(data))).split(",")]
        return data.reshape(shape)
    return np.asarray(value, dtype=float)


def traces(fig: dict, kind: str) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == kind]


def pixels(trace: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(trace["source"].split(",", 1)[1]))).convert("RGB"))


def current_explanation(at: AppTest, params: DecodingParams | None = None):
    """The stored explanation of the current image under `params` (greedy by default)."""
    key = astuple(params or DecodingParams())
    found = [v for k, v in at.session_state["vz_explanations"].items()
             if k[0] == at.session_state["vz_image"]["id"] and k[2] == key]
    assert len(found) == 1
    return found[0]


def png_bytes(size=(48, 40), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels (no pixel data): refused before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# -- Home ------------------------------------------------------------------------------------------


def test_home_default_flow(app, app_checkpoint):
    at = ok(app.run())
    assert at.title[0].value.startswith("vizcap")
    assert len(caption_of(at)) > len("<p></p>")
    assert at.session_state["vz_image"]["id"] == f"scene:{DEFAULT_SCENE}"
    assert at.radio(key="vz_ckpt_choice").value == "directory"
    assert at.text_input(key="vz_ckpt_dir").value == str(app_checkpoint)
    assert any("True caption" in w.value for w in [*at.warning, *at.success])
    assert not at.error
    text = " ".join(e.value for e in [*at.markdown, *at.caption])
    assert str(app_checkpoint) not in text and "/" not in at.caption[0].value  # no filesystem path for newcomers
    assert f"folder “{common_md(app_checkpoint.name)}”" in text and "mode both" not in text
    assert "trained to look at the objects" not in text  # its metrics.json records no attention loss: nothing said


def test_home_says_when_the_maps_were_trained_to_point(app_checkpoint, tmp_path, monkeypatch):
    """Issue 25, item 5: where maps are read, a model whose training pulled them onto the objects says so."""
    import shutil

    folder = tmp_path / "trained"
    shutil.copytree(app_checkpoint, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["args"].update(attend_weight=1.0, bind_weight=1.0)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(folder))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    text = " ".join(e.value for e in at.caption).replace("\\", "")
    assert "This model was trained to look at the objects it names: its cross-attention and prefix maps" in text


@pytest.mark.parametrize("relations", [True, False])
def test_the_pages_say_when_a_pairs_relation_word_was_supervised_too(app_checkpoint, tmp_path, monkeypatch, relations):
    """A model trained with --attend-relations (the shipped default since 2026-12-04) says, where the trained
    attention is explained (Training & trust, How it works), that the relation word was supervised too."""
    import shutil

    folder = tmp_path / "trained"
    shutil.copytree(app_checkpoint, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["args"].update(attend_weight=1.0, bind_weight=1.0, attend_relations=relations)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(folder))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    trust_page = ok(at.switch_page("app_pages/training_and_trust.py").run())
    said = " ".join(i.value for i in trust_page.info)
    assert "trained to point" in said and ("a pair's relation word" in said) == relations
    how = ok(at.switch_page("app_pages/how_it_works.py").run())
    text = " ".join(m.value for m in how.markdown)
    assert "supervised-attention loss" in text and ("a pair's relation word" in text) == relations


@pytest.mark.parametrize("key, weight, formula, sentence", [
    ("named_weight", 1.0, "+ 1.0 × named-so-far loss", "not on where any map points"),  # the twin of 2026-12-04
    ("named_weight", 0.0, "× named-so-far loss", "not on where any map points"),
    ("repeat_weight", 0.5, "+ 0.5 × repeat loss", "The *repeat loss* lowers the probability"),
    ("repeat_weight", 0.0, "× repeat loss", "The *repeat loss* lowers the probability"),
])
def test_how_it_works_names_the_word_losses_a_model_was_trained_with(app_checkpoint, tmp_path, monkeypatch, key, weight,
                                                                      formula, sentence):
    """A model trained with --named-weight or --repeat-weight: How it works writes that loss into its
    formula and says it is not a loss on any map; without it, neither."""
    import shutil

    folder = tmp_path / "words"
    shutil.copytree(app_checkpoint, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["args"].update({key: weight})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(folder))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    how = ok(at.switch_page("app_pages/how_it_works.py").run())
    text = " ".join(m.value for m in how.markdown)
    assert (formula in text) == (weight > 0)
    assert (sentence in text) == (weight > 0)


def test_home_gallery_and_any_example(app):
    at = ok(app.run())
    first = caption_of(at)
    ok(at.button(key="vz_use_42").click().run())
    assert at.session_state["vz_image"]["id"] == "scene:42"
    assert at.session_state["vz_image"]["truth"]
    at.number_input(key="vz_seed").set_value(123)
    ok(at.button(key="vz_use_seed").click().run())
    assert at.session_state["vz_image"]["id"] == "scene:123"
    assert caption_of(at) and first


def test_home_upload_good_and_bad_files(app):
    at = ok(app.run())
    ok(at.segmented_control(key="vz_source").set_value("Upload").run())
    assert len(at.file_uploader) == 1
    ok(at.file_uploader[0].set_value(("red.png", png_bytes(), "image/png")).run())
    assert at.session_state["vz_image"]["id"].startswith("upload:")
    assert "red.png" in at.session_state["vz_image"]["label"]
    assert not at.error

    ok(at.file_uploader[0].set_value(("broken.png", b"this is not a picture", "image/png")).run())
    assert any("not an image" in e.value for e in at.error), [e.value for e in at.error]

    ok(at.file_uploader[0].set_value(("bomb.png", huge_png_header(20_000, 20_000), "image/png")).run())
    assert any("pixel" in e.value for e in at.error), [e.value for e in at.error]

    big = b"\x89PNG" + b"\0" * (20 * 1024 * 1024 + 10)
    ok(at.file_uploader[0].set_value(("big.png", big, "image/png")).run())
    assert any("20 MB" in e.value for e in at.error), [e.value for e in at.error]


def test_home_compose_a_scene(app):
    at = ok(app.run())
    ok(at.segmented_control(key="vz_source").set_value("Compose").run())
    assert at.session_state["vz_image"]["id"].startswith("compose:")
    assert at.session_state["vz_image"]["truth"] == "a red star left of a blue circle"
    at.selectbox(key="vz_c0").set_value("green")
    at.selectbox(key="vz_s0").set_value("triangle")
    at.slider(key="vz_x1").set_value(0.4)  # the circle moves left, out of the triangle's way
    ok(at.slider(key="vz_x0").set_value(0.9).run())
    assert at.session_state["vz_image"]["truth"] == "a blue circle left of a green triangle"
    ok(at.number_input(key="vz_n_objects").set_value(3).run())
    assert at.session_state["vz_image"]["truth"].count(" and ") == 2
    from vizcap.compose import BACKGROUNDS

    ok(at.selectbox(key="vz_background").set_value("dark grey").run())
    image = np.asarray(at.session_state["vz_image"]["image"])
    assert tuple(image[0, 0]) == BACKGROUNDS["dark grey"]  # a corner is background
    blue = np.all(np.abs(image.astype(int) - (40, 90, 220)) < 60, -1).sum()
    ok(at.slider(key="vz_z1").set_value(0.6).run())  # object 2, the blue circle, twice as large
    image = np.asarray(at.session_state["vz_image"]["image"])
    assert np.all(np.abs(image.astype(int) - (40, 90, 220)) < 60, -1).sum() > 2.5 * blue
    before = at.session_state["vz_image"]["id"]
    ok(at.slider(key="vz_a2").set_value(45).run())
    assert at.session_state["vz_image"]["id"] != before  # a rotated object is a new image, explained anew
    assert caption_of(at)
    np.testing.assert_array_equal(np.asarray(current_explanation(at).image),  # the caption is of this picture
                                  np.asarray(at.session_state["vz_image"]["image"]))


def test_compose_warns_about_a_hidden_object_and_leaves_it_out(app):
    at = ok(app.run())
    ok(at.segmented_control(key="vz_source").set_value("Compose").run())
    assert not at.warning or not any("hidden" in w.value for w in at.warning)
    at.slider(key="vz_x0").set_value(0.75)  # the red star moves behind the (later, larger) blue circle
    at.slider(key="vz_z0").set_value(0.15)
    ok(at.slider(key="vz_z1").set_value(0.45).run())
    assert at.session_state["vz_image"]["truth"] == "a blue circle"
    warnings = [w.value for w in at.warning if "hidden" in w.value]
    assert len(warnings) == 1 and "Object 1 (the red star)" in warnings[0], warnings


def test_bad_checkpoint_directory_is_a_friendly_error(app, tmp_path):
    at = ok(app.run())
    ok(at.text_input(key="vz_ckpt_dir").set_value(str(tmp_path / "nowhere")).run())
    assert any("cannot be loaded" in e.value for e in at.error)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{not json")
    ok(at.text_input(key="vz_ckpt_dir").set_value(str(tmp_path / "half")).run())
    assert any("cannot be loaded" in e.value for e in at.error)
    for page in PAGES:  # every page stops with the same message, no traceback
        ok(at.switch_page(page).run())
        assert any("cannot be loaded" in e.value for e in at.error), page
    ok(at.text_input(key="vz_ckpt_dir").set_value("").run())
    assert at.info and not at.error


def test_checkpoint_choice_survives_page_switches(app, app_checkpoint):
    at = ok(app.run())
    for page in PAGES:
        ok(at.switch_page(page).run())
        assert at.text_input(key="vz_ckpt_dir").value == str(app_checkpoint), page
        assert not at.error, page


# -- Caption & attention explorer -------------------------------------------------------------------


def explorer(app) -> AppTest:
    at = ok(app.run())
    return ok(at.switch_page("app_pages/explorer.py").run())


def test_explorer_default_flow(app):
    at = explorer(app)
    assert at.title[0].value == "Caption & attention explorer"
    assert "background:#0072B2" in caption_of(at)  # the chosen word is highlighted
    assert at.metric[0].label.startswith("Probability of")
    # only the open tab is drawn: overlay, alternatives and the heads grid
    assert [t.label for t in at.tabs] == ["All heads of a layer", "Prefix tokens", "Inside the ViT", "Export",
                                          "Link to this view"]
    assert len(at.get("plotly_chart")) == 3 and not at.get("download_button")
    at.session_state["ex_view"] = "Prefix tokens"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 4  # overlay, alternatives, prefix maps, word→prefix
    at.session_state["ex_view"] = "Export"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 2 and len(at.get("download_button")) == 4  # PNG, GIF, JSON, HTML page
    at.session_state["ex_view"] = "All heads of a layer"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 3


def test_explorer_every_display_widget(app):
    """Each display widget changes what is drawn the way it says: the word (buttons, slider, Play),
    method, layer, head, normalisation, sinks, opacity, colour scale and the heads' layer, checked
    against the stored explanation's own maps and the one overlay renderer."""
    at = explorer(app)
    exp = current_explanation(at)

    def overlay_shows(method, layer, head, norm, sinks, j, opacity=0.55, cmap="viridis"):
        fig = figure(at, "Where the model looked")
        expected = exp.maps(method, layer, head, norm, sinks)
        heat = traces(fig, "heatmap")[0]
        np.testing.assert_allclose(array(heat["z"]), expected[j], atol=1e-9)
        top = fig["layout"]["coloraxis"]["cmax"]
        assert top == pytest.approx(vizcap_maps.colour_range(expected, method, norm, sinks)[0])
        assert fig["layout"]["coloraxis"]["colorscale"] == [list(c) for c in figures.plotly_colorscale(cmap)]
        shown = pixels(traces(fig, "image")[0])
        base = figures.shown_image(exp.image)
        drawn = np.asarray(render.overlay(base, expected[j], alpha=opacity, cmap=cmap, vmax=top), dtype=int)
        assert np.abs(shown.astype(int) - drawn).mean() < 2.0
        assert exp.tokens[j] in fig["layout"]["title"]["text"]

    assert at.selectbox(key="ex_norm").value == "max"  # the default: every word's spot visible on a projector
    assert at.selectbox(key="ex_layer").value == "all" and at.selectbox(key="ex_head").value == "all"
    assert at.selectbox(key="ex_layer").format_func("all") == "all (mean)"
    ok(at.select_slider(key="ex_tok").set_value(0).run())
    overlay_shows("cross_attention", None, None, "max", False, 0)
    ok(at.button(key="ex_next").click().run())
    assert at.select_slider(key="ex_tok").value == 1
    overlay_shows("cross_attention", None, None, "max", False, 1)
    ok(at.button(key="ex_prev").click().run())
    assert at.select_slider(key="ex_tok").value == 0
    ok(at.select_slider(key="ex_tok").set_value(3).run())
    ok(at.button(key="ex_play_btn").click().run())
    assert at.select_slider(key="ex_tok").value == len(exp) - 1  # play ends on the last word
    overlay_shows("cross_attention", None, None, "max", False, len(exp) - 1)
    ok(at.select_slider(key="ex_tok").set_value(2).run())
    ok(at.selectbox(key="ex_norm").set_value("none").run())
    assert at.selectbox(key="ex_method").options == ["cross attention", "prefix", "rollout", "relevancy",
                                                     "decoder relevancy", "occlusion"]
    for method in ("prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion", "cross_attention"):
        ok(at.selectbox(key="ex_method").set_value(method).run())
        assert at.selectbox(key="ex_layer").disabled == (method in ("rollout", "relevancy", "decoder_relevancy", "occlusion"))
        overlay_shows(method, None, None, "none", False, 2)
    ok(at.selectbox(key="ex_layer").set_value(0).run())
    ok(at.selectbox(key="ex_head").set_value(2).run())
    overlay_shows("cross_attention", 0, 2, "none", False, 2)
    for norm in ("max", "sum", "global", "none"):
        ok(at.selectbox(key="ex_norm").set_value(norm).run())
        overlay_shows("cross_attention", 0, 2, norm, False, 2)
    ok(at.selectbox(key="ex_cmap").set_value("cividis").run())
    overlay_shows("cross_attention", 0, 2, "none", False, 2, cmap="cividis")
    ok(at.slider(key="ex_opacity").set_value(0.2).run())
    overlay_shows("cross_attention", 0, 2, "none", False, 2, opacity=0.2, cmap="cividis")
    ok(at.toggle(key="ex_sinks").set_value(True).run())
    overlay_shows("cross_attention", 0, 2, "none", True, 2, opacity=0.2, cmap="cividis")
    ok(at.selectbox(key="ex_grid_layer").set_value(0).run())
    grid = figure(at, "All heads of layer 0")
    H = len(traces(grid, "heatmap"))
    assert H == exp.cross.shape[2]
    for h, heat in enumerate(traces(grid, "heatmap")):
        np.testing.assert_allclose(array(heat["z"]), exp.maps("cross_attention", 0, h, "none", True)[2], atol=1e-9)
    ok(at.selectbox(key="ex_method").set_value("prefix").run())
    overlay_shows("prefix", 0, 2, "none", True, 2, opacity=0.2, cmap="cividis")


def test_play_moves_the_map_and_the_probability_panel_together(app, monkeypatch):
    """Play draws, for every word in turn, its map and its probability panel (not the map alone
    while the panel stays on the old word), and ends with the slider on the last word."""
    at = explorer(app)
    exp = current_explanation(at)
    drawn = {"overlay": [], "alternatives": []}
    overlay, alternatives = figures.attention_overlay, figures.alternatives_bar
    monkeypatch.setattr(figures, "attention_overlay",
                        lambda image, heat, word, *a, **k: drawn["overlay"].append(word) or overlay(image, heat, word, *a, **k))
    monkeypatch.setattr(figures, "alternatives_bar",
                        lambda tokens, probs, chosen, step: drawn["alternatives"].append(step) or alternatives(tokens, probs, chosen, step))
    ok(at.button(key="ex_play_btn").click().run())
    T = len(exp)
    assert drawn["alternatives"] == [*range(T), T - 1]  # each word during Play, then the last one stays
    assert drawn["overlay"] == [*exp.tokens, exp.tokens[-1]]
    assert at.select_slider(key="ex_tok").value == T - 1
    assert exp.tokens[-1] in at.metric[0].label


def test_explorer_why_this_word_and_not_another(app, calls):
    """Issue 25 item 3: choosing an alternative under the word's probabilities draws the contrastive map
    (relevancy of the logit difference) in the map's place, labelled as such; "—" brings the word's own map
    back. Catches a picker that lists the chosen word, a contrastive map that is not exp.contrastive's, a
    label that does not say what is shown, and a picker that runs the model before anything is chosen."""
    at = explorer(app)
    exp = current_explanation(at)
    ok(at.select_slider(key="ex_tok").set_value(1).run())
    before = dict(calls)
    box = at.selectbox(key="ex_contrast_1")
    assert box.value is None and calls == before
    listed = [k for k in box.options if not k.startswith("—")]
    assert len(listed) == sum(1 for i, p in zip(exp.top_ids[1], exp.top_probs[1]) if i != exp.token_ids[1] and p > 0)
    assert not any(f"“{exp.tokens[1]}”" in k for k in listed)
    k = next(i for i, t in enumerate(exp.top_ids[1].tolist()) if t != exp.token_ids[1])
    ok(at.selectbox(key="ex_contrast_1").set_value(k).run())
    alt = int(exp.top_ids[1][k])
    fig = figure(at, "Where the model looked")
    expected = vizcap_maps.normalize(exp.contrastive(1, alt, "relevancy")[None], "max")[0]
    np.testing.assert_allclose(array(traces(fig, "heatmap")[0]["z"]), expected, atol=1e-9)
    assert f"not {exp.top_tokens[1][k]}" in fig["layout"]["title"]["text"].replace(" <br>", " ").replace("<br>", " ")  # titles wrap
    assert any(c.value.startswith("Contrastive relevancy: why") for c in at.caption)
    ok(at.selectbox(key="ex_contrast_1").set_value(None).run())
    fig = figure(at, "Where the model looked")
    np.testing.assert_allclose(array(traces(fig, "heatmap")[0]["z"]), exp.maps("cross_attention", normalize="max")[1],
                               atol=1e-9)


def test_explorer_none_and_global_draw_different_maps(app):
    """normalize "none" keeps the raw unit's range (0..1 for attention shares), so a weak map stays
    weak; "global" divides by the caption's peak. The same word must look different under the two
    (dimmer under "none") whenever the peak is below 1, and the colour bars name different units."""
    at = explorer(app)
    exp = current_explanation(at)
    peak = float(exp.maps("cross_attention").max())
    assert peak < 0.9  # a random model spreads its attention: a weak map
    ok(at.select_slider(key="ex_tok").set_value(1).run())
    drawn = {}
    for norm in ("none", "global"):
        ok(at.selectbox(key="ex_norm").set_value(norm).run())
        fig = figure(at, "Where the model looked")
        z, top = array(traces(fig, "heatmap")[0]["z"]), fig["layout"]["coloraxis"]["cmax"]
        drawn[norm] = (z / top, pixels(traces(fig, "image")[0]).astype(int),
                       fig["layout"]["coloraxis"]["colorbar"]["title"]["text"])
    assert fig["layout"]["coloraxis"]["cmax"] == 1.0  # global: 0..1
    np.testing.assert_allclose(drawn["none"][0], drawn["global"][0] * peak, atol=1e-9)  # colour positions
    assert np.abs(drawn["none"][1] - drawn["global"][1]).mean() > 3  # a visibly different picture
    assert "0–1" in drawn["none"][2] and "all words" in drawn["global"][2]  # the colour bars name the units


def test_explorer_display_settings_survive_a_visit_to_another_page(app):
    at = explorer(app)
    assert at.slider(key="ex_opacity").value == 0.55 and at.selectbox(key="ex_method").value == "cross_attention"
    ok(at.selectbox(key="ex_method").set_value("prefix").run())
    ok(at.selectbox(key="ex_layer").set_value(0).run())
    ok(at.selectbox(key="ex_head").set_value(1).run())
    ok(at.selectbox(key="ex_norm").set_value("sum").run())
    ok(at.selectbox(key="ex_cmap").set_value("cividis").run())
    ok(at.slider(key="ex_opacity").set_value(0.2).run())
    ok(at.toggle(key="ex_sinks").set_value(True).run())
    ok(at.switch_page("app_pages/decoding_lab.py").run())
    at = ok(at.switch_page("app_pages/explorer.py").run())
    assert (at.selectbox(key="ex_method").value, at.selectbox(key="ex_layer").value, at.selectbox(key="ex_head").value,
            at.selectbox(key="ex_norm").value, at.selectbox(key="ex_cmap").value, at.slider(key="ex_opacity").value,
            at.toggle(key="ex_sinks").value) == ("prefix", 0, 1, "sum", "cividis", 0.2, True)
    assert not at.warning, [w.value for w in at.warning]


def test_explorer_decoding_controls(app):
    """The explorer's decoding settings reach the explanation it shows."""
    at = explorer(app)
    ok(at.selectbox(key="ex_strategy").set_value("beam").run())
    ok(at.number_input(key="ex_beams").set_value(2).run())
    beam = current_explanation(at, DecodingParams(strategy="beam", beams=2))
    assert beam.params.strategy == "beam" and beam.params.beams == 2 and beam.beam_tree
    assert max(len(step["tokens"]) for step in beam.beam_tree) <= 2
    assert at.select_slider(key="ex_tok").options == [f"{i + 1}. {w}" for i, w in enumerate(beam.tokens)]
    ok(at.selectbox(key="ex_strategy").set_value("sample").run())
    ok(at.number_input(key="ex_temp").set_value(0.5).run())
    ok(at.number_input(key="ex_topk").set_value(3).run())
    ok(at.number_input(key="ex_topp").set_value(0.5).run())
    ok(at.number_input(key="ex_seed").set_value(9).run())
    ok(at.number_input(key="ex_max").set_value(3).run())
    sample = current_explanation(at, DecodingParams(strategy="sample", temperature=0.5, top_k=3, top_p=0.5, seed=9,
                                                    max_tokens=3))
    assert sample.seed == 9 and len(sample) <= 3
    assert at.select_slider(key="ex_tok").options == [f"{i + 1}. {w}" for i, w in enumerate(sample.tokens)]


def test_the_explorer_offers_a_registered_method_and_strategy(app, throwaway):
    """A map method and a strategy registered at run time (AppTest runs in this process) appear in the
    explorer's menus with their declared help and knobs, and the explanation shown uses them."""
    at = explorer(app)
    assert "my rollout" in at.selectbox(key="ex_method").options  # its label
    ok(at.selectbox(key="ex_method").set_value("my_rollout").run())
    assert at.selectbox(key="ex_layer").disabled  # a copy of rollout combines every layer and head
    assert "a copy of rollout" in at.selectbox(key="ex_method").help
    assert any(c.value.startswith("Map: my rollout · every layer and head") for c in at.caption)
    assert "my sampling" in at.selectbox(key="ex_strategy").options  # its label
    ok(at.selectbox(key="ex_strategy").set_value("my_sample").run())
    assert not at.number_input(key="ex_temp").disabled and at.number_input(key="ex_beams").disabled
    chosen = current_explanation(at, params_for("my_sample", temperature=1.0, top_k=0, top_p=1.0, seed=0))
    assert chosen.params.strategy == "my_sample" and chosen.seed == 0


def test_the_explorers_header_names_the_decoding_of_the_caption_it_shows(app):
    """Issue 26, item 7: with sampling chosen the header said "Model's caption (greedy): …" above the
    sampled caption being explained; it now names the strategy and shows that caption."""
    at = explorer(app)
    ok(at.selectbox(key="ex_strategy").set_value("sample").run())
    ok(at.number_input(key="ex_temp").set_value(3.0).run())
    ok(at.number_input(key="ex_seed").set_value(4).run())
    sampled = current_explanation(at, DecodingParams(strategy="sample", temperature=3.0, seed=4))
    header = [m.value.replace("\\", "") for m in at.markdown if "vz-greedy-caption" in m.value]  # md() escapes
    assert len(header) == 1 and "Model's caption (sampling (temperature 3, seed 4)):" in header[0]
    assert f"vz-greedy-caption'>{html.escape(sampled.caption)}<" in header[0].replace('"', "'")


def test_display_widgets_never_call_the_model(app, calls):
    """The explanation is kept in st.session_state keyed by (image, checkpoint, decoding parameters):
    changing the word, method, layer, head, normalisation, sinks, opacity, colour scale, the heads'
    layer or pressing play redraws it without running the model."""
    at = explorer(app)
    assert calls["explain"] == 1  # Home explained the image (greedy); the explorer reused it
    before = dict(calls)
    ok(at.button(key="ex_next").click().run())
    ok(at.select_slider(key="ex_tok").set_value(2).run())
    ok(at.button(key="ex_play_btn").click().run())
    ok(at.selectbox(key="ex_method").set_value("prefix").run())
    ok(at.selectbox(key="ex_method").set_value("rollout").run())
    ok(at.selectbox(key="ex_method").set_value("cross_attention").run())
    ok(at.selectbox(key="ex_layer").set_value(0).run())
    ok(at.selectbox(key="ex_head").set_value(1).run())
    ok(at.selectbox(key="ex_norm").set_value("max").run())
    ok(at.toggle(key="ex_sinks").set_value(True).run())
    ok(at.slider(key="ex_opacity").set_value(0.9).run())
    ok(at.selectbox(key="ex_cmap").set_value("cividis").run())
    ok(at.selectbox(key="ex_grid_layer").set_value(0).run())
    for view in ("Prefix tokens", "Export", "All heads of a layer"):
        at.session_state["ex_view"] = view
        ok(at.run())
    assert at.selectbox(key="ex_grid_layer").value == 0  # kept while another tab was open
    assert calls == before, "a display-only widget ran the model"
    assert at.session_state["vz_model_calls"] == 1

    # relevancy needs one more pass (forward and backward), once per explanation, then it is kept
    ok(at.selectbox(key="ex_method").set_value("relevancy").run())
    assert calls["explain"] == before["explain"] and calls["decoder"] == before["decoder"] + 1
    after_relevancy = dict(calls)
    ok(at.button(key="ex_next").click().run())
    ok(at.selectbox(key="ex_method").set_value("cross_attention").run())
    ok(at.selectbox(key="ex_method").set_value("relevancy").run())
    assert calls == after_relevancy

    # a new decoding setting does run the model, once; going back does not
    ok(at.selectbox(key="ex_strategy").set_value("beam").run())
    assert calls["explain"] == before["explain"] + 1
    ok(at.selectbox(key="ex_strategy").set_value("greedy").run())
    ok(at.selectbox(key="ex_strategy").set_value("beam").run())
    assert calls["explain"] == before["explain"] + 1


def test_heads_grid_names_the_strongest_head_from_the_raw_maps(app):
    """Planted attention: in layer 0, head 2 puts 0.7 of the word's attention on one cell, the other
    heads at most 0.2. Under "max" normalisation every panel peaks at 1, yet the grid must still say
    that head 2 has the strongest single cell (read before normalisation), with its raw value."""
    at = explorer(app)
    exp = current_explanation(at)
    ok(at.select_slider(key="ex_tok").set_value(1).run())
    T, L, H, N = exp.cross.shape
    rng = np.random.default_rng(0)
    planted = rng.uniform(0.5, 1.0, (T, H, N))
    planted /= planted.sum(-1, keepdims=True)  # spread out: every cell ≤ 2/N
    planted[:, 0, 0] = 0.2  # head 0 has a clear peak too, but a weaker one
    planted[:, 2, 5] = 0.7
    for h in (0, 2):  # the rest of each row shares what is left
        others = np.arange(N) != (0 if h == 0 else 5)
        planted[:, h, others] *= (1 - planted[:, h, 0 if h == 0 else 5])[:, None] / planted[:, h, others].sum(-1, keepdims=True)
    exp.cross[:, 0] = planted
    for norm in ("max", "none", "global"):
        ok(at.selectbox(key="ex_norm").set_value(norm).run())
        ok(at.selectbox(key="ex_grid_layer").set_value(0).run())
        text = figure(at, "All heads of layer 0")["layout"]["meta"]["description"]
        assert "Head 2 has the strongest single cell" in text and "0.7" in text, (norm, text)


def test_captions_with_markup_are_shown_as_text(app):
    """Model output is text, never markup: a caption with <b>, & and < > (a BPE model can write them)
    is escaped wherever it goes into HTML (Home, the explorer's caption, the decoding lab) and into
    plotly's text (which reads <b> as bold), and shown literally in markdown."""
    at = ok(app.run())
    words = ["<b>bold</b>", "&", "x<y>", "*not*"]
    escaped = ["&lt;b&gt;bold&lt;/b&gt;", "&amp;", "x&lt;y&gt;"]

    def plant(exp):
        exp.tokens[: len(words)] = words

    plant(current_explanation(at))
    ok(at.run())
    home = caption_of(at)
    assert all(e in home for e in escaped) and "<b>" not in home and "x<y>" not in home, home
    at = ok(at.switch_page("app_pages/explorer.py").run())
    ok(at.select_slider(key="ex_tok").set_value(0).run())
    shown = caption_of(at)
    assert escaped[0] in shown and "<b>" not in shown
    assert "&lt;b&gt;bold&lt;/b&gt;" in figure(at, "Where the model looked")["layout"]["title"]["text"]
    assert "\\<b\\>" in at.metric[0].label  # markdown: shown literally
    header = [m.value for m in at.markdown if "vz-greedy-caption" in m.value][0]
    assert "x&lt;y&gt;" in header and "x<y>" not in header
    at = ok(at.switch_page("app_pages/decoding_lab.py").run())
    for key, exp in at.session_state["vz_explanations"].items():
        if key[0] == at.session_state["vz_image"]["id"] and len(exp) >= len(words):
            plant(exp)
    ok(at.run())
    runs = [m.value for m in at.markdown if "vz-run-caption" in m.value]
    assert len(runs) == 5 and all("&lt;b&gt;" in r and "<b>" not in r for r in runs if "bold" in r), runs
    assert any("bold" in r for r in runs)


# -- Decoding lab --------------------------------------------------------------------------------------


def decoding_lab(app) -> AppTest:
    at = ok(app.run())
    return ok(at.switch_page("app_pages/decoding_lab.py").run())


def test_decoding_lab_default_flow(app):
    at = decoding_lab(app)
    captions = [m.value for m in at.markdown if "vz-run-caption" in m.value]
    assert len(captions) == 5
    assert len(at.get("plotly_chart")) == 3  # tree, per-step bars, live distribution


def test_decoding_lab_widgets(app, calls):
    """Each knob reaches the run it names (its heading and its stored parameters); the tree follows
    the chosen run; the live plot redraws stored logits with the live knobs, never the model."""
    at = decoding_lab(app)
    ok(at.number_input(key="dl_beams").set_value(3).run())
    ok(at.number_input(key="dl_lp").set_value(0.5).run())
    ok(at.number_input(key="dl_topk").set_value(5).run())
    ok(at.number_input(key="dl_topp").set_value(0.5).run())
    ok(at.number_input(key="dl_temp").set_value(0.7).run())
    ok(at.button(key="dl_reseed").click().run())
    assert at.number_input(key="dl_seed").value == 1
    expected = {"beam search (3 beams)": DecodingParams(strategy="beam", beams=3, length_penalty=0.5),
                "top-k sampling (k = 5)": DecodingParams(strategy="sample", top_k=5, seed=1),
                "top-p sampling (p = 0.5)": DecodingParams(strategy="sample", top_p=0.5, seed=1),
                "temperature sampling (T = 0.7)": DecodingParams(strategy="sample", temperature=0.7, seed=1)}
    shown = [m.value for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]
    for name, params in expected.items():
        assert f"**{name}**" in shown, shown
        assert current_explanation(at, params).params == params
    for run in at.selectbox(key="dl_tree_run").options:
        ok(at.selectbox(key="dl_tree_run").set_value(run).run())
        exp = current_explanation(at, expected.get(run, DecodingParams()))
        nodes = next(t for t in figure(at, "How the search grew")["data"] if t.get("name", "").startswith("live hypothesis"))
        assert len(nodes["x"]) == 1 + sum(len(step["tokens"]) for step in exp.beam_tree), run
    before = dict(calls)  # the live plot redraws stored logits: no model call
    ok(at.select_slider(key="dl_live_step").set_value(2).run())
    ok(at.slider(key="dl_live_temp").set_value(0.3).run())
    ok(at.slider(key="dl_live_topk").set_value(3).run())
    ok(at.slider(key="dl_live_topp").set_value(0.5).run())
    ok(at.toggle(key="dl_live_log").set_value(False).run())
    assert calls == before
    live = figure(at, "The next word after")
    greedy = current_explanation(at)
    heading = live["layout"]["title"]["text"].replace("<br>", "")  # wrapped at spaces: the sentence without breaks
    assert "temperature 0.3, top-k 3, top-p 0.5" in heading
    assert heading.startswith("The next word after “&lt;start&gt; " + " ".join(greedy.tokens[:2]))
    after = array(live["data"][1]["y"])
    assert 1 <= (after > 0).sum() <= 3 and after.sum() == pytest.approx(1.0, abs=1e-6)  # top-k 3 of the shown words
    assert live["layout"]["yaxis"].get("type") in (None, "linear")


# -- How it works ------------------------------------------------------------------------------------


def how_it_works_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def test_how_it_works_states_training_from_the_checkpoints_files(app, app_checkpoint, tmp_path, monkeypatch):
    """How many pictures the encoder saw comes from the checkpoint's metrics.json (samples_seen, or
    steps × batch size), never from the page's own words; a checkpoint that does not say, says nothing."""
    at = ok(ok(app.run()).switch_page("app_pages/how_it_works.py").run())
    text = how_it_works_text(at)
    assert "saw 40 pictures: 10 steps × 4 per batch" in text and "few thousand" not in text, text
    other = tmp_path / "other"
    other.mkdir()
    for f in app_checkpoint.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "metrics.json").write_text(json.dumps({"args": {"steps": 7, "batch_size": 3, "aux_weight": 0.5}}))
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(other))
    at = ok(ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run()).switch_page("app_pages/how_it_works.py").run())
    text = how_it_works_text(at)
    assert "saw 21 pictures: 7 steps × 3 per batch" in text and "with weight 0.5" in text, text
    (other / "metrics.json").unlink()
    at = ok(ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run()).switch_page("app_pages/how_it_works.py").run())
    text = how_it_works_text(at)
    assert "pictures" not in text and "with weight" not in text


def test_how_it_works(app):
    at = ok(ok(app.run()).switch_page("app_pages/how_it_works.py").run())
    assert at.title[0].value == "How it works"
    table = at.dataframe[0].value
    P = 2  # make_random_captioner's n_prefix
    assert list(table["label"][:P]) == [-100] * P
    assert table["reads"].iloc[P] == "<bos>"
    assert len(at.get("plotly_chart")) >= 2  # architecture, aux head
    assert any("auxiliary" in m.value for m in at.markdown)


# -- Training & trust ----------------------------------------------------------------------------------


def test_training_and_trust_measures_on_demand(app):
    at = ok(ok(app.run()).switch_page("app_pages/training_and_trust.py").run())
    assert len(at.get("plotly_chart")) == 1  # the loss curve
    assert at.dataframe and any("Press" in i.value for i in at.info)
    at.slider(key="tt_n").set_value(4)
    ok(at.button(key="tt_measure").click().run())
    assert any("Captions." in m.value for m in at.markdown)
    ok(at.run())  # the result stays on the page
    assert any("Captions." in m.value for m in at.markdown)


def test_training_and_trust_reads_trust_json(trusted_checkpoint, monkeypatch):
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(trusted_checkpoint))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at = ok(at.switch_page("app_pages/training_and_trust.py").run())
    text = " ".join(m.value for m in at.markdown)
    assert "Pointing." in text and "**Sanity check**" in text and "Passed: *cross attention*" in text and "trusted to" not in text
    assert len(at.get("plotly_chart")) == 5  # loss, pointing, mass, sanity, curves
    captions = " ".join(c.value for c in at.caption)
    # each set of figures says how many scenes and which command made it; the metrics.json table too
    assert "`vizcap eval --n 8 --independent --hard`" in captions and "8 held-out ShapeScenes" in captions
    assert any(sub.value.startswith("Evaluation at the end of training (8 held-out scenes)") for sub in at.subheader)
    assert all(f"**{name}**" in text for name in figures.MEASURES)  # every measure explained in a line
    assert array(figure(at, "Pointing game")["data"][0]["y"])[0] == pytest.approx(0.9)
    assert "**Top-k deletion: not measured.**" in text and "`vizcap eval --rank-n N`" in text
    ok(at.segmented_control(key="tt_set").set_value("independent").run())
    assert array(figure(at, "Pointing game")["data"][0]["y"])[0] == pytest.approx(0.55)
    text = " ".join(m.value for m in at.markdown)  # the top-k test's figure and its verdict, method by method
    assert "not measured" not in text and "**Top-4 deletion**" in text and "*rollout*" in text
    assert "**cannot beat random**" in text and "**stays below the box**" in text
    assert len(at.get("plotly_chart")) == 6
    assert array(figure(at, "Top-k deletion")["data"][0]["y"]) == pytest.approx([0.2, 0.2, 0.4, 0.4])
    ok(at.segmented_control(key="tt_rank_words").set_value("colour").run())
    assert "colour words of 3 named objects" in figure(at, "Top-k deletion")["layout"]["meta"]["description"]
    assert "6 scenes drawn by an independent renderer" in " ".join(c.value for c in at.caption)
    ok(at.selectbox(key="tt_curve_method").set_value("rollout").run())
    curves = figure(at, "Deletion and insertion (rollout)")
    assert array(curves["data"][0]["y"]) == pytest.approx(trust_result()["curves"]["rollout"]["deletion_map"])
    # hard scenes: pointing and mass only (no curves were measured), said in a line
    ok(at.segmented_control(key="tt_set").set_value("hard").run())
    assert array(figure(at, "Pointing game")["data"][0]["y"])[0] == pytest.approx(0.45)
    assert len(at.get("plotly_chart")) == 3  # loss, pointing, mass
    assert "not measured on these scenes" in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("mode", ["cross", "prefix"])
def test_other_model_modes_and_no_logs(mode, tmp_path, monkeypatch):
    make_random_captioner(mode).save_pretrained(tmp_path)
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(tmp_path))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    for page in PAGES:  # a model without prefix tokens / without cross-attention, on every page
        ok(at.switch_page(page).run())
        assert not at.error, page
    at = ok(at.switch_page("app_pages/explorer.py").run())
    methods = {"cross": ["cross attention", "rollout", "relevancy", "decoder relevancy", "occlusion"],
               "prefix": ["prefix", "rollout", "relevancy", "decoder relevancy", "occlusion"]}
    assert at.selectbox(key="ex_method").options == methods[mode]
    for method in ("rollout", "relevancy"):
        ok(at.selectbox(key="ex_method").set_value(method).run())
    at = ok(at.switch_page("app_pages/training_and_trust.py").run())
    assert sum("missing" in i.value or "No metrics" in i.value for i in at.info) == 2


def test_a_prepared_link_opens_the_explorer_on_that_view(app):
    """/explorer?image=scene:42&word=3&method=rollout&normalize=max: example 42, its third word, rollout,
    max-normalised; the address then keeps following the view, and a bad value is one warning."""
    at = ok(app.run())
    at.query_params.update({"image": "scene:42", "word": "3", "method": "rollout", "normalize": "max",
                            "strategy": "beam", "beams": "4", "layer": "bogus"})
    at = ok(at.switch_page("app_pages/explorer.py").run())
    assert at.session_state["vz_image"]["id"] == "scene:42"
    assert at.selectbox(key="ex_method").value == "rollout" and at.selectbox(key="ex_norm").value == "max"
    assert at.selectbox(key="ex_strategy").value == "beam" and at.number_input(key="ex_beams").value == 4
    assert at.session_state["ex_tok"] == 2  # the third word
    exp = list(at.session_state["vz_explanations"].values())[-1]
    assert exp.params.strategy == "beam" and exp.params.beams == 4
    assert [w.value for w in at.warning if "link: layer=bogus" in w.value]
    # the address follows the view: moving to the next word rewrites it, and it opens the same view again
    at.button(key="ex_next").click()
    at = ok(at.run())
    q = at.query_params
    assert q["word"] == "4" and q["method"] == "rollout" and q["image"] == "scene:42" and q["beams"] == "4"
    at.session_state["ex_view"] = "Link to this view"
    at = ok(at.run())
    assert at.code[0].value.startswith("/explorer?image=scene%3A42&word=4&method=rollout")


def test_a_link_to_a_word_layer_or_head_the_view_lacks_says_so(app):
    """Issue 26, item 6: word 30 of a short caption, layer 7 and head 9 of a small model are each named
    in a warning (they used to become the last word, all layers and all heads without a word)."""
    at = ok(app.run())
    at.query_params.update({"image": "scene:42", "word": "30", "layer": "7", "head": "9"})
    at = ok(at.switch_page("app_pages/explorer.py").run())
    said = " ".join(w.value for w in at.warning)
    assert "link: word=30 ignored (this caption has" in said
    assert "link: layer=7 ignored" in said and "link: head=9 ignored" in said
    assert at.selectbox(key="ex_layer").value == "all" and at.selectbox(key="ex_head").value == "all"


def test_composed_scenes_are_shared_by_their_description(app):
    at = ok(app.run())
    at.query_params.update({"image": "compose:white/red-star-25-50-30/blue-circle-75-50-30", "word": "2"})
    at = ok(at.switch_page("app_pages/explorer.py").run())
    img = at.session_state["vz_image"]
    assert img["id"] == "compose:white/red-star-25-50-30/blue-circle-75-50-30"
    assert img["truth"] == "a red star left of a blue circle" and at.session_state["ex_tok"] == 1


def test_the_lesson_steps_through_its_six_views(app, monkeypatch):
    """Back/Next through the six steps, each one sentence and one view; Reveal draws the map; the
    address names the step and ?step=4 opens the fourth; a step written for the twin whose attention
    was left free says it uses that model. (It is written for the shipped models.)"""
    from vizcap.captioner import DEFAULT_CHECKPOINT
    from vizcap.lesson import STEPS

    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(DEFAULT_CHECKPOINT))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at = ok(at.switch_page("app_pages/lesson.py").run())
    for k, step in enumerate(STEPS):
        said = [m.value for m in at.markdown if "vz-lesson-say" in m.value]
        assert said and step.say.split(":")[0][:40] in said[0].replace("&#x27;", "'"), k
        assert at.query_params["step"] == str(k + 1)
        if step.view in ("predict", "failure", "heads", "evidence"):  # where a map is read: is it evidence? (issue 25)
            assert any(c.value.startswith("This cross-attention map: ") for c in at.caption), k
        if step.model == "shapes-free":
            assert any("attention left free" in c.value and "uses the shipped model" in c.value for c in at.caption), k
        if step.view == "evidence":
            assert any("nothing trained it to point" in c.value for c in at.caption), k  # the three maps, and what greying the attention's pick and the object did
            assert len(at.get("plotly_chart")) == 1
            said = " ".join(m.value for m in at.markdown)
            assert "Grey the cell its attention likes best" in said and "Relevancy's hottest cell: on the object" in said
        if step.view == "predict":
            assert not at.get("plotly_chart")  # predict first: no map yet
            at.toggle(key="ls_reveal").set_value(True)
            at = ok(at.run())
            assert len(at.get("plotly_chart")) == 1
        if step.view == "decoding":
            beam_line = [m.value for m in at.markdown if "Beam search (5 beams)" in m.value]
            greedy_line = [m.value for m in at.markdown if "Greedy caption" in m.value]
            caption = lambda line: line.split("vz-lesson-caption'>", 1)[1].split("</span>")[0]  # noqa: E731
            agree = caption(beam_line[0]) == caption(greedy_line[0])
            said = [c.value for c in at.caption if c.value.startswith("Here they")]
            assert said and said[0].startswith("Here they agree" if agree else "Here they disagree"), said
        if k < len(STEPS) - 1:
            at.button(key="ls_next").click()
            at = ok(at.run())
    assert at.button(key="ls_next").disabled
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    fresh.query_params["step"] = "4"
    fresh = ok(fresh.run())
    fresh = ok(fresh.switch_page("app_pages/lesson.py").run())
    assert any("Greedy or beam" in h.value for h in fresh.subheader)
    beyond = AppTest.from_file(APP, default_timeout=TIMEOUT)  # ?step=9 of 6: said, and step 1 shown
    beyond.query_params["step"] = "9"
    beyond = ok(ok(beyond.run()).switch_page("app_pages/lesson.py").run())
    assert any("link: step=9 ignored" in w.value for w in beyond.warning)
    assert beyond.query_params["step"] == "1"


def test_an_uploaded_picture_keeps_its_notice_on_every_page(app):
    """While an upload is current and the model is a ShapeScenes one, every page says what the model
    knows, that probability is confidence not correctness, and shows on request what it saw."""
    at = ok(app.run())
    notice = "has only ever seen ShapeScenes"
    assert not [m for m in at.markdown if notice in m.value]  # an example scene: no notice
    ok(at.segmented_control(key="vz_source").set_value("Upload").run())
    ok(at.file_uploader[0].set_value(("red.png", png_bytes(), "image/png")).run())
    for page in [None, *PAGES]:
        if page is not None:
            at = ok(at.switch_page(page).run())
        shown = [m.value for m in at.markdown if notice in m.value]
        assert shown and "how *sure* the model is, not whether" in shown[0] and "64×64" in shown[0], page
    n_images = len(at.image)
    at.toggle(key="vz_show_input").set_value(True)
    at = ok(at.run())
    assert len(at.image) == n_images + 1  # the squashed input, shown on request
    at = ok(at.switch_page("app_pages/lesson.py").run())
    assert not [m for m in at.markdown if notice in m.value]  # the lesson shows its own pictures


# -- Compare ---------------------------------------------------------------------------------------


def test_compare_sets_one_word_of_two_models_side_by_side_and_keeps_it_in_the_address(app):
    """Issue 25, item 6: the shipped model beside the sidebar's, the same picture, method and word (by
    its text), each map labelled with whether a loss trained it; a link with an unknown model says so."""
    at = ok(app.run())
    at = ok(at.switch_page("app_pages/compare.py").run())
    at.selectbox(key="cp_right").set_value("sidebar")
    at = ok(at.run())
    assert at.selectbox(key="cp_left").value == "shapes"
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    said = " ".join(c.value for c in at.caption)
    assert "trained to point: its training target, not evidence" in said  # the shipped model's cross-attention
    assert "whether a loss trained it is not recorded" in said or "nothing trained it" in said
    assert "left" not in at.query_params  # the sidebar's model cannot travel in a link: no left/right
    at.selectbox(key="cp_method").set_value("rollout")
    at = ok(at.run())
    assert at.query_params["method"] == "rollout" and at.query_params["word"] == str(at.selectbox(key="cp_word").value + 1)
    linked = AppTest.from_file(APP, default_timeout=TIMEOUT)
    linked.query_params.update({"image": "scene:42", "left": "shapes", "right": "nope", "word": "2"})
    linked = ok(ok(linked.run()).switch_page("app_pages/compare.py").run())
    assert any("link: right=nope ignored" in w.value for w in linked.warning)
    assert linked.session_state["vz_image"]["id"] == "scene:42" and linked.selectbox(key="cp_word").value == 1
