"""The app with a Hugging Face captioner (tiny random ViT+GPT-2, BLIP and GIT folders, built offline):
the model picker's third choice, every page without an exception, the ShapeScenes-only parts left
out, and a hub id that is not cached as a friendly st.error."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import hub_fixtures

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = ["app_pages/explorer.py", "app_pages/decoding_lab.py", "app_pages/how_it_works.py", "app_pages/training_and_trust.py"]


@pytest.fixture(scope="module", params=["vit_gpt2", "blip", "git"])
def hf_folder(request, tmp_path_factory):
    build = {"vit_gpt2": hub_fixtures.vit_gpt2, "blip": hub_fixtures.blip, "git": hub_fixtures.git}[request.param]
    return build(tmp_path_factory.mktemp(request.param))


@pytest.fixture
def app(monkeypatch):
    monkeypatch.delenv("VIZCAP_CHECKPOINT", raising=False)
    monkeypatch.setenv("VIZCAP_PLAY_SECONDS", "0")
    return AppTest.from_file(APP, default_timeout=180)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def choose_hf(at: AppTest, source: str) -> AppTest:
    ok(at.radio(key="vz_ckpt_choice").set_value("hub").run())
    # issue 26, item 8: nothing typed yet, so nothing is loaded and no error is shown, only what to do
    assert not at.text_input(key="vz_hf_source").value and not at.error
    assert any("Type a Hugging Face hub id" in i.value for i in at.info)
    return ok(at.text_input(key="vz_hf_source").set_value(source).run())


def test_picker_opens_a_hugging_face_folder_and_every_page_works(app, hf_folder):
    import vizcap

    at = ok(app.run())
    at = choose_hf(at, str(hf_folder))
    assert not at.error
    shown = [m.value for m in at.markdown if "vz-caption" in m.value]
    image = at.session_state["vz_image"]["image"]
    expected = vizcap.load(hf_folder).explain(image).caption
    assert shown and (expected or "(empty caption)") in shown[0]
    assert not any("True caption" in s.value for s in [*at.success, *at.warning])  # no ShapeScenes verdict
    for page in PAGES:
        ok(at.switch_page(page).run())
        assert not at.error, page
        assert at.text_input(key="vz_hf_source").value == str(hf_folder), page
    ok(at.switch_page("app_pages/training_and_trust.py").run())
    assert any("photo captioner" in i.value for i in at.info)
    assert not any("pointing" in (m.value or "").lower() for m in at.subheader)
    ok(at.button(key="tt_photo_measure").click().run())  # sanity check and deletion/insertion, no truth needed
    table = at.dataframe[0].value
    own = "cross_attention" if vizcap.load(hf_folder).has_cross else "prefix"  # GIT reads the image as its prefix
    assert list(table["method"]) == [own, "rollout"]
    said = " ".join(m.value for m in at.markdown)  # issue 26, item 9: the verdict in words, as for ShapeScenes
    assert f"**{own.replace('_', ' ').capitalize()}:**" in said and "**Rollout:**" in said
    assert "a hint about these maps" in said


def test_compose_is_left_out_for_a_photo_model(app, hf_folder):
    at = choose_hf(ok(app.run()), str(hf_folder))
    ok(at.segmented_control(key="vz_source").set_value("Compose").run())
    assert any("needs ShapeScenes" in i.value for i in at.info)


def test_hub_id_not_cached_is_an_st_error(app, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    at = choose_hf(ok(app.run()), "someone/not-a-cached-captioner")
    errors = [e.value for e in at.error]
    assert errors and "huggingface-cli download someone/not-a-cached-captioner" in errors[0]
    assert "\n" not in errors[0].split(". Type another")[0]
    assert errors[0].endswith("Type another hub id or folder in the sidebar, or choose the shipped model.")


def test_a_suggested_id_fills_the_field(app, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    at = ok(app.run())
    ok(at.radio(key="vz_ckpt_choice").set_value("hub").run())
    at = ok(at.button(key="vz_hf_suggested_1").click().run())
    assert at.text_input(key="vz_hf_source").value == "Salesforce/blip-image-captioning-base"
    assert at.error and "huggingface-cli download Salesforce/blip-image-captioning-base" in at.error[0].value


def test_explorer_reports_the_class_tokens_share(app, hf_folder):
    import numpy as np

    import vizcap

    at = choose_hf(ok(app.run()), str(hf_folder))
    at = ok(at.switch_page("app_pages/explorer.py").run())
    exp = vizcap.load(hf_folder).explain(at.session_state["vz_image"]["image"])
    if not len(exp.tokens):
        pytest.skip("empty caption")
    shown = [c.value for c in at.caption if c.value.startswith("Class token:")]
    assert shown and any(f"Class token: {float(x):.0%} " in shown[0] for x in exp.extra_share())
    assert np.isfinite(exp.extra_share()).all()


def test_a_folder_given_as_the_checkpoint_directory_also_works(app, hf_folder, monkeypatch):
    """VIZCAP_CHECKPOINT / "A checkpoint directory" given a Hugging Face folder: vizcap.load tells the kinds apart."""
    monkeypatch.setenv("VIZCAP_CHECKPOINT", str(hf_folder))
    at = ok(AppTest.from_file(APP, default_timeout=180).run())
    assert not at.error and any("vz-caption" in m.value for m in at.markdown)
    for page in PAGES:
        ok(at.switch_page(page).run())
        assert not at.error, page


def test_a_photo_model_on_a_drawn_scene_says_so(app, hf_folder):
    """The notice for pictures far from a model's training data, worded for a photo captioner: an example
    scene (drawn shapes) gets it, with the processor's own input size; an upload does not."""
    at = choose_hf(ok(app.run()), str(hf_folder))
    shown = [m.value for m in at.markdown if "learned from photos" in m.value]
    # the processor's square input: 32 px for the tiny ViT, 48 for BLIP
    assert shown and "not whether" in shown[0] and ("32×32" in shown[0] or "48×48" in shown[0])
    ok(at.switch_page("app_pages/explorer.py").run())
    assert [m.value for m in at.markdown if "learned from photos" in m.value]


def test_explorer_methods_and_views_of_a_hugging_face_model(app, hf_folder):
    """Every map method the model has, then the Prefix tokens, Inside the ViT and Export tabs: drawn
    without an exception; the Prefix tokens tab says what the model's prefix is (GIT: the image's own
    tokens; the cross-attention families: none); Inside the ViT draws the picker and the layers."""
    import vizcap
    from vizcap.maps import available

    cap = vizcap.load(hf_folder)
    at = choose_hf(ok(app.run()), str(hf_folder))
    at = ok(at.switch_page("app_pages/explorer.py").run())
    if not cap.explain(at.session_state["vz_image"]["image"]).tokens:
        pytest.skip("empty caption")
    for method in available(cap.mode):
        ok(at.selectbox(key="ex_method").set_value(method).run())
    at.session_state["ex_view"] = "Prefix tokens"
    said = " ".join(i.value for i in ok(at.run()).info)
    assert ("the image's own tokens" if cap.prefix_is_image else "no prefix tokens") in said
    at.session_state["ex_view"] = "Inside the ViT"
    ok(at.run())
    assert at.selectbox(key="ex_vit_cell").value is not None and len(at.get("plotly_chart")) == 4
    ok(at.radio(key="ex_vit_query").set_value("the class token").run())
    at.session_state["ex_view"] = "Export"
    assert len(ok(at.run()).get("download_button")) == 4


def test_explorer_draws_decoder_relevancy_at_once_and_full_relevancy_on_request(app, hf_folder):
    """Issue 28: choosing relevancy on a Hugging Face captioner draws its decoder relevancy at once, says so
    and offers the full one; the button computes it (under a progress bar) and the map becomes it. Moving
    to another word afterwards does not compute it again."""
    from vizcap.maps import METHODS

    at = choose_hf(ok(app.run()), str(hf_folder))
    at = ok(at.switch_page("app_pages/explorer.py").run())
    shown = lambda: next(reversed(at.session_state["vz_explanations"].values()))  # noqa: E731
    exp = shown()
    if len(exp.tokens) < 2:
        pytest.skip("a caption of fewer than two words")
    at = ok(at.selectbox(key="ex_method").set_value("relevancy").run())
    map_line = lambda: next(c.value for c in at.caption if c.value.startswith("Map: "))  # noqa: E731
    assert map_line().startswith(f"Map: {METHODS['decoder_relevancy'].label} ·")
    assert any("Showing **decoder relevancy**" in i.value and "first time on this model" in i.value for i in at.info)
    exp = shown()
    assert exp.is_kept("decoder_relevancy") and not exp.is_kept("relevancy")
    at = ok(at.button(key="ex_full_relevancy").click().run())
    exp = shown()
    assert exp.is_kept("relevancy")
    assert map_line().startswith(f"Map: {METHODS['relevancy'].label} ·")
    assert not any("Showing **decoder relevancy**" in i.value for i in at.info)
    kept = exp._relevancy["relevancy"]
    at = ok(at.button(key="ex_next").click().run())
    assert shown()._relevancy["relevancy"] is kept and map_line().startswith(f"Map: {METHODS['relevancy'].label} ·")


def test_explorer_and_decoding_lab_caption_as_home_does(app, hf_folder):
    """"Max words" starts at the model's own limit (its generation config's: the tiny GIT stops at 15 new
    tokens), so the explorer's and the decoding lab's greedy caption is Home's; choosing the shipped model
    then starts it at that model's limit."""
    import vizcap

    cap = vizcap.load(hf_folder)
    at = choose_hf(ok(app.run()), str(hf_folder))
    home = cap.caption(at.session_state["vz_image"]["image"])
    latest = lambda: next(reversed(at.session_state["vz_explanations"].values()))  # noqa: E731
    at = ok(at.switch_page("app_pages/explorer.py").run())
    assert at.number_input(key="ex_max").value == cap.max_tokens
    assert latest().caption == home
    at = ok(at.switch_page("app_pages/decoding_lab.py").run())
    greedy = [e for (_, ckpt, _, _), e in at.session_state["vz_explanations"].items()
              if ckpt == str(hf_folder) and e.params.strategy == "greedy"]
    assert greedy and all(e.params.max_tokens == cap.max_tokens and e.caption == home for e in greedy)
    ok(at.radio(key="vz_ckpt_choice").set_value("shipped").run())
    at = ok(at.switch_page("app_pages/explorer.py").run())
    assert at.number_input(key="ex_max").value == vizcap.load().max_tokens
