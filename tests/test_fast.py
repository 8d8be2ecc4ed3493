"""Fast mode (vizcap/fast.py, issue #28 item 2): a Hugging Face captioner's linear layers in int8.

Tiny random ViT+GPT-2 and BLIP folders (tests/hub_fixtures.py). Speed is never measured here
(benchmarks/fast_mode.py does that); these tests check that a fast model is what it says, that every
map method still works on it with the float32 model's shapes and close to its values, and that it is
marked wherever its maps are read: the backend, the Explanation, the CLI's JSON, exports and the app."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import hub_fixtures
from conftest import ROOT, run_module
from vizcap import fast, notices
from vizcap.maps import available

APP = str(ROOT / "streamlit_app.py")


@pytest.fixture(scope="module")
def vit_gpt2_dir(tmp_path_factory):
    return hub_fixtures.vit_gpt2(tmp_path_factory.mktemp("fast_vit_gpt2"))


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return hub_fixtures.blip(tmp_path_factory.mktemp("fast_blip"))


@pytest.fixture(scope="module", params=["vit_gpt2", "blip"])
def hf_dir(request, vit_gpt2_dir, blip_dir):
    return {"vit_gpt2": vit_gpt2_dir, "blip": blip_dir}[request.param]


@pytest.fixture(scope="module")
def picture():
    return Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 80, 3), dtype=np.uint8))


@pytest.fixture
def cost_file(tmp_path, monkeypatch):
    """A cost file of known figures in place of vizcap/fast_cost.json."""
    path = tmp_path / "fast_cost.json"
    path.write_text(json.dumps({
        "command": "python -m benchmarks.fast_mode --pictures 7",
        "speed": {"model": "ViT-B/16 + GPT-2", "explain_ratio": 0.42},
        "agreement": {"trained": {"model": "a trained model", "pictures": "held-out scenes", "n_pictures": 7,
                                  "captions_agree": 6 / 7,
                                  "methods": {"cross_attention": {"top_cell": 0.9, "mae": 0.012},
                                              "rollout": {"top_cell": 1.0, "mae": 0.004}}}},
    }))
    monkeypatch.setattr(fast, "COST_FILE", path)
    return path


def linear_layers(model) -> list[torch.nn.Module]:
    from transformers.pytorch_utils import Conv1D

    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D))]


def test_every_linear_layer_is_int8_and_the_model_says_so(hf_dir):
    import vizcap

    full, quick = vizcap.load(hf_dir), vizcap.load(hf_dir, fast=True)
    n_linear = len(linear_layers(full.model))
    converted = [m for m in quick.model.modules() if isinstance(m, fast.Int8Linear)]
    assert n_linear > 0 and len(converted) == n_linear and not linear_layers(quick.model)
    assert (full.precision, full.fast) == ("float32", False)
    assert (quick.precision, quick.fast) == ("int8", True)
    assert quick.vocab_size == full.vocab_size
    # a copy of the model (the randomisation check's) keeps saying what it is
    assert quick.with_model(quick.model, "copy").precision == "int8"


def test_the_int8_layer_computes_the_linear_product_and_its_gradient():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    linear, conv = torch.nn.Linear(16, 8), Conv1D(8, 16)
    for layer, weight in ((linear, linear.weight), (conv, conv.weight.t())):
        quick = fast.Int8Linear.from_module(layer)
        w = quick.dequantized_weight()
        assert w.shape == (8, 16) and torch.allclose(w, weight, atol=weight.abs().max().item() / 127)
        assert len(torch.unique(w[0] / w[0].abs().max())) <= 255  # one row: at most 255 int8 levels
        x = torch.randn(2, 3, 16, requires_grad=True)
        exact, got = layer(x), quick(x)
        assert got.dtype == torch.float32 and got.shape == exact.shape
        assert torch.allclose(got, exact, atol=0.1) and not torch.equal(got, exact)  # close, and really int8
        (g,) = torch.autograd.grad(got.sum(), x)  # the int8 kernel has no gradient of its own: Int8Linear's
        assert torch.allclose(g, torch.ones(2, 3, 8) @ w)


def test_the_randomisation_check_re_initialises_the_int8_decoder_only(vit_gpt2_dir):
    import vizcap
    from vizcap.photo_trust import randomized

    quick = vizcap.load(vit_gpt2_dir, fast=True)
    shaken = randomized(quick)
    assert shaken.precision == "int8"
    before = {n: m.dequantized_weight() for n, m in quick.model.named_modules() if isinstance(m, fast.Int8Linear)}
    after = {n: m.dequantized_weight() for n, m in shaken.model.named_modules() if isinstance(m, fast.Int8Linear)}
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {n for n in before if n.startswith("decoder.")} and changed


def test_the_gpt2_decoder_keeps_its_fast_cached_steps(vit_gpt2_dir):
    import vizcap
    from vizcap.decoding import CachedSteps

    assert CachedSteps.supports(vizcap.load(vit_gpt2_dir, fast=True).decoder)


def test_every_map_method_works_with_the_float32_shapes_and_close_values(hf_dir, picture):
    import vizcap
    from vizcap.explain import explain

    full, quick = vizcap.load(hf_dir), vizcap.load(hf_dir, fast=True)
    exp32 = full.explain(picture, max_tokens=6)
    own = quick.explain(picture, max_tokens=6)  # its own caption: explains without error
    assert own.fast and own.precision == "int8" and len(own.tokens) >= 1
    exp16 = explain(quick, picture, forced=exp32.token_ids)  # the float32 caption, read by the fast model
    assert exp16.token_ids == exp32.token_ids
    for method in available(full.mode):
        a, b = exp32.maps(method, normalize="max"), exp16.maps(method, normalize="max")
        assert b.shape == a.shape == (len(exp32.tokens), *full.grid), method
        assert np.isfinite(b).all(), method
        # the same picture as float32's (relevancy is a gradient: were the int8 layers opaque to autograd,
        # as torch.ao's are, it would not be); occlusion, a difference of probabilities, moves most
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert r > 0.85 and np.abs(a - b).mean() < (0.3 if method == "occlusion" else 0.05), (method, r)
    assert not np.array_equal(exp32.maps("cross_attention"), exp16.maps("cross_attention"))


def test_vizcap_checkpoints_refuse_fast_mode_in_one_line(tmp_path):
    import vizcap

    with pytest.raises(vizcap.CheckpointError, match="config.json"):  # a bad folder still says what is wrong
        vizcap.load(tmp_path, fast=True)
    for source in (None, "shapes"):
        with pytest.raises(vizcap.CheckpointError) as caught:
            vizcap.load(source, fast=True)
        message = str(caught.value)
        assert "\n" not in message and "fast mode is for big Hugging Face captioners" in message


def test_notice_says_fast_mode_and_the_measured_cost(vit_gpt2_dir, cost_file):
    import vizcap

    assert notices.fast_notice(vizcap.load(vit_gpt2_dir)) is None
    said = notices.fast_notice(vizcap.load(vit_gpt2_dir, fast=True))
    assert said.startswith("This map comes from the fast (int8) mode")
    for figure in ("86%", "90% (cross attention) to 100% (rollout)", "0.004–0.012", "0.42×", "7 held-out scenes",
                   "python -m benchmarks.fast_mode --pictures 7"):
        assert figure in said, figure


def test_notice_without_measured_cost_says_so(vit_gpt2_dir, tmp_path, monkeypatch):
    import vizcap

    monkeypatch.setattr(fast, "COST_FILE", tmp_path / "missing.json")
    said = notices.fast_notice(vizcap.load(vit_gpt2_dir, fast=True))
    assert "has not been measured here (python -m benchmarks.fast_mode measures it)" in said


def test_exports_carry_the_fast_mode(vit_gpt2_dir, picture, cost_file):
    import vizcap

    exp = vizcap.load(vit_gpt2_dir, fast=True).explain(picture, max_tokens=4)
    record = exp.to_dict(("cross_attention",))
    assert record["precision"] == "int8"
    assert any(n.startswith("This map comes from the fast (int8) mode") for n in record["notices"])
    page = exp.to_html(methods=("cross_attention",))
    assert "This map comes from the fast (int8) mode" in page and "0.42×" in page
    plain = vizcap.load(vit_gpt2_dir).explain(picture, max_tokens=4)
    assert plain.to_dict()["precision"] == "float32" and "fast (int8)" not in plain.to_html(methods=("cross_attention",))


def test_cli_fast_marks_every_record(vit_gpt2_dir, picture, tmp_path):
    path = tmp_path / "photo.png"
    picture.save(path)
    proc = run_module("-m", "vizcap", "caption", str(path), "--checkpoint", str(vit_gpt2_dir), "--fast", "--json",
                      "--maps", "cross_attention")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    record = json.loads(proc.stdout.strip())
    assert record["fast"] is True and record["precision"] == "int8"
    assert "fast (int8) mode" in record["notice"]
    assert np.array(record["maps"]["cross_attention"]).shape[1:] == (4, 4)
    plain = run_module("-m", "vizcap", "caption", str(path), "--checkpoint", str(vit_gpt2_dir), "--json")
    assert "fast" not in json.loads(plain.stdout.strip())


def test_cli_fast_on_the_shipped_model_is_one_line(tmp_path, picture):
    path = tmp_path / "photo.png"
    picture.save(path)
    proc = run_module("-m", "vizcap", "caption", str(path), "--fast")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "fast mode is for big Hugging Face captioners" in lines[0]


def test_app_switch_loads_the_fast_model_and_every_map_page_says_so(vit_gpt2_dir, monkeypatch):
    monkeypatch.delenv("VIZCAP_CHECKPOINT", raising=False)
    monkeypatch.setenv("VIZCAP_PLAY_SECONDS", "0")
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.radio(key="vz_ckpt_choice").set_value("hub").run()
    at.text_input(key="vz_hf_source").set_value(str(vit_gpt2_dir)).run()
    assert not at.exception and not any("fast (int8) mode" in i.value for i in at.info)
    at.toggle(key="vz_fast").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("fast (int8) mode" in i.value for i in at.info)
    keys = list(at.session_state["vz_explanations"])  # (image, checkpoint, decoding, precision)
    assert (keys[-1][1], keys[-1][3]) == (str(vit_gpt2_dir), "int8")
    assert (str(vit_gpt2_dir), "float32") in [(k[1], k[3]) for k in keys]
    assert at.session_state["vz_explanations"][keys[-1]].precision == "int8"
    for page in ("app_pages/explorer.py", "app_pages/decoding_lab.py", "app_pages/compare.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any("fast (int8) mode" in i.value for i in at.info) == (page != "app_pages/compare.py"), page
        assert at.toggle(key="vz_fast").value is True, page  # the switch keeps its value across pages
        if page == "app_pages/explorer.py":  # and beside the map itself
            assert any("This map comes from the fast (int8) mode" in c.value for c in at.caption)
    at.selectbox(key="cp_left").set_value("sidebar").run()  # compare shows the shipped twins until asked
    assert any("fast (int8) mode" in i.value for i in at.info)
    at.switch_page("app_pages/training_and_trust.py").run()
    at.button(key="tt_photo_measure").click().run()  # the randomisation check re-initialises int8 layers too
    assert not at.exception, [e.value for e in at.exception]
    assert any("fast (int8) mode" in i.value for i in at.info) and list(at.dataframe[0].value["method"])
    assert all(k[2] == "int8" for k in at.session_state["vz_photo_trust"])
    at.toggle(key="vz_fast").set_value(False).run()
    assert not any("fast (int8) mode" in i.value for i in at.info)
    latest = list(at.session_state["vz_explanations"].values())[-1]
    assert latest.precision == "float32"
