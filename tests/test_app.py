"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest (no browser): the default flow
and each widget path of every page, friendly errors for bad inputs, and the proof that display-only
widgets never run the model.

The app is pointed at a small random checkpoint through VIZCAP_CHECKPOINT, so these tests are fast
and do not need the shipped model."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import make_random_captioner
from vizcap.captioner import Captioner
from transformers import GPT2Model
from vizcap.model import CaptionModel

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = ["pages/explorer.py", "pages/decoding_lab.py", "pages/how_it_works.py", "pages/training_and_trust.py"]
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
    from test_figures import trust_result

    (out / "trust.json").write_text(json.dumps(trust_result()))
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


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def caption_of(at: AppTest) -> str:
    shown = [m.value for m in at.markdown if "vz-caption" in m.value]
    assert shown, "the caption is on the page"
    return shown[0]


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
    assert at.session_state["vz_image"]["id"] == "scene:7"
    assert at.radio(key="vz_ckpt_choice").value == "directory"
    assert at.text_input(key="vz_ckpt_dir").value == str(app_checkpoint)
    assert any("True caption" in w.value for w in [*at.warning, *at.success])
    assert not at.error


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
    ok(at.slider(key="vz_x0").set_value(0.9).run())
    assert at.session_state["vz_image"]["truth"] == "a blue circle left of a green triangle"
    ok(at.number_input(key="vz_n_objects").set_value(3).run())
    assert at.session_state["vz_image"]["truth"].count(" and ") == 2
    ok(at.selectbox(key="vz_background").set_value("dark grey").run())
    ok(at.slider(key="vz_z1").set_value(0.6).run())
    ok(at.slider(key="vz_a2").set_value(45).run())
    assert caption_of(at)


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
    return ok(at.switch_page("pages/explorer.py").run())


def test_explorer_default_flow(app):
    at = explorer(app)
    assert at.title[0].value == "Caption & attention explorer"
    assert "background:#0072B2" in caption_of(at)  # the chosen word is highlighted
    assert at.metric[0].label.startswith("Probability of")
    # only the open tab is drawn: overlay, alternatives and the heads grid
    assert [t.label for t in at.tabs] == ["All heads of a layer", "Prefix tokens", "Export"]
    assert len(at.get("plotly_chart")) == 3 and not at.get("download_button")
    at.session_state["ex_view"] = "Prefix tokens"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 4  # overlay, alternatives, prefix maps, word→prefix
    at.session_state["ex_view"] = "Export"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 2 and len(at.get("download_button")) == 3
    at.session_state["ex_view"] = "All heads of a layer"
    ok(at.run())
    assert len(at.get("plotly_chart")) == 3


def test_explorer_every_display_widget(app):
    at = explorer(app)
    ok(at.select_slider(key="ex_tok").set_value(0).run())
    ok(at.button(key="ex_next").click().run())
    assert at.select_slider(key="ex_tok").value == 1
    ok(at.button(key="ex_prev").click().run())
    assert at.select_slider(key="ex_tok").value == 0
    ok(at.select_slider(key="ex_tok").set_value(3).run())
    ok(at.button(key="ex_play_btn").click().run())
    n = len(at.session_state["vz_explanations"][next(iter(at.session_state["vz_explanations"]))])
    assert at.select_slider(key="ex_tok").value == n - 1  # play ends on the last word
    assert at.selectbox(key="ex_method").options == ["cross attention", "prefix", "rollout", "relevancy"]
    for method in ("prefix", "rollout", "relevancy", "cross_attention"):
        ok(at.selectbox(key="ex_method").set_value(method).run())
        assert at.selectbox(key="ex_layer").disabled == (method in ("rollout", "relevancy"))
    ok(at.selectbox(key="ex_method").set_value("cross_attention").run())
    ok(at.selectbox(key="ex_layer").set_value(0).run())
    ok(at.selectbox(key="ex_head").set_value(2).run())
    for norm in ("max", "sum", "global", "none"):
        ok(at.selectbox(key="ex_norm").set_value(norm).run())
    ok(at.selectbox(key="ex_cmap").set_value("cividis").run())
    ok(at.slider(key="ex_opacity").set_value(0.2).run())
    ok(at.toggle(key="ex_sinks").set_value(True).run())
    ok(at.selectbox(key="ex_grid_layer").set_value(0).run())
    ok(at.selectbox(key="ex_method").set_value("prefix").run())


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
    ok(at.switch_page("pages/decoding_lab.py").run())
    at = ok(at.switch_page("pages/explorer.py").run())
    assert (at.selectbox(key="ex_method").value, at.selectbox(key="ex_layer").value, at.selectbox(key="ex_head").value,
            at.selectbox(key="ex_norm").value, at.selectbox(key="ex_cmap").value, at.slider(key="ex_opacity").value,
            at.toggle(key="ex_sinks").value) == ("prefix", 0, 1, "sum", "cividis", 0.2, True)
    assert not at.warning, [w.value for w in at.warning]


def test_explorer_decoding_controls(app):
    at = explorer(app)
    ok(at.selectbox(key="ex_strategy").set_value("beam").run())
    ok(at.number_input(key="ex_beams").set_value(2).run())
    ok(at.selectbox(key="ex_strategy").set_value("sample").run())
    ok(at.number_input(key="ex_temp").set_value(0.5).run())
    ok(at.number_input(key="ex_topk").set_value(3).run())
    ok(at.number_input(key="ex_topp").set_value(0.5).run())
    ok(at.number_input(key="ex_seed").set_value(9).run())
    ok(at.number_input(key="ex_max").set_value(3).run())
    assert len(at.select_slider(key="ex_tok").options) <= 3


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


# -- Decoding lab --------------------------------------------------------------------------------------


def decoding_lab(app) -> AppTest:
    at = ok(app.run())
    return ok(at.switch_page("pages/decoding_lab.py").run())


def test_decoding_lab_default_flow(app):
    at = decoding_lab(app)
    captions = [m.value for m in at.markdown if "vz-run-caption" in m.value]
    assert len(captions) == 5
    assert len(at.get("plotly_chart")) == 3  # tree, per-step bars, live distribution


def test_decoding_lab_widgets(app, calls):
    at = decoding_lab(app)
    ok(at.number_input(key="dl_beams").set_value(3).run())
    ok(at.number_input(key="dl_lp").set_value(0.5).run())
    ok(at.number_input(key="dl_topk").set_value(5).run())
    ok(at.number_input(key="dl_topp").set_value(0.5).run())
    ok(at.number_input(key="dl_temp").set_value(0.7).run())
    ok(at.button(key="dl_reseed").click().run())
    assert at.number_input(key="dl_seed").value == 1
    for run in at.selectbox(key="dl_tree_run").options:
        ok(at.selectbox(key="dl_tree_run").set_value(run).run())
    before = dict(calls)  # the live plot redraws stored logits: no model call
    ok(at.select_slider(key="dl_live_step").set_value(2).run())
    ok(at.slider(key="dl_live_temp").set_value(0.3).run())
    ok(at.slider(key="dl_live_topk").set_value(3).run())
    ok(at.slider(key="dl_live_topp").set_value(0.5).run())
    ok(at.toggle(key="dl_live_log").set_value(False).run())
    assert calls == before


# -- How it works ------------------------------------------------------------------------------------


def test_how_it_works(app):
    at = ok(ok(app.run()).switch_page("pages/how_it_works.py").run())
    assert at.title[0].value == "How it works"
    table = at.dataframe[0].value
    P = 2  # make_random_captioner's n_prefix
    assert list(table["label"][:P]) == [-100] * P
    assert table["reads"].iloc[P] == "<bos>"
    assert len(at.get("plotly_chart")) >= 2  # architecture, aux head
    assert any("auxiliary" in m.value for m in at.markdown)


# -- Training & trust ----------------------------------------------------------------------------------


def test_training_and_trust_measures_on_demand(app):
    at = ok(ok(app.run()).switch_page("pages/training_and_trust.py").run())
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
    at = ok(at.switch_page("pages/training_and_trust.py").run())
    text = " ".join(m.value for m in at.markdown)
    assert "Pointing." in text and "Sanity check passed" in text
    assert len(at.get("plotly_chart")) == 5  # loss, pointing, mass, sanity, curves
    ok(at.selectbox(key="tt_curve_method").set_value("rollout").run())


@pytest.mark.parametrize("mode", ["cross", "prefix"])
def test_other_model_modes_and_no_logs(mode, tmp_path, monkeypatch):
    make_random_captioner(mode).save_pretrained(tmp_path)
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(tmp_path))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    for page in PAGES:  # a model without prefix tokens / without cross-attention, on every page
        ok(at.switch_page(page).run())
        assert not at.error, page
    at = ok(at.switch_page("pages/explorer.py").run())
    methods = {"cross": ["cross attention", "rollout", "relevancy"], "prefix": ["prefix", "rollout", "relevancy"]}
    assert at.selectbox(key="ex_method").options == methods[mode]
    for method in ("rollout", "relevancy"):
        ok(at.selectbox(key="ex_method").set_value(method).run())
    at = ok(at.switch_page("pages/training_and_trust.py").run())
    assert sum("missing" in i.value or "No metrics" in i.value for i in at.info) == 2
