"""One self-contained interactive page per explanation (vizcap/html_page.py, issue 27 part A): its size,
that it asks nothing of the network, that the numbers it holds are `Explanation.maps` within the storage
error it states (decoded here the way vizcap/html/view.js decodes them), the CLI's --html and the notebook
view. The page's script itself runs in Chromium (and Firefox where installed) in
tests/test_html_browser.py."""

from __future__ import annotations

import base64
import dataclasses
import html as html_lib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vizcap
from conftest import run_module
from vizcap import html_page
from vizcap.decoding import DecodingParams
from vizcap.explain import Explanation, explain
from vizcap.maps import NORMALIZATIONS, lookup

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "scene.png"
TWENTY_WORDS = ("a red circle left of a blue square and two green stars above a yellow cross and an "
                "orange triangle")
MB = 1_000_000


@pytest.fixture(scope="module")
def shipped():
    return vizcap.load("shapes")


@pytest.fixture(scope="module")
def greedy(shipped):
    return shipped.explain(str(SCENE))


@pytest.fixture(scope="module")
def greedy_page(greedy):
    return greedy.to_html()


def page_data(text: str) -> dict:
    """The JSON the page's script reads (one view per page here)."""
    found = re.findall(r'<script type="application/json" class="vz-data">(.*?)</script>', text, re.S)
    assert len(found) == 1
    return json.loads(found[0])


def decoded(entry: dict, choice: int, T: int, N: int) -> np.ndarray:
    """[T, N] as view.js's rawMaps decodes them: lo + q·(hi − lo)/65535, q little-endian uint16."""
    q = np.frombuffer(base64.b64decode(entry["q"]), dtype="<u2").astype(np.float64).reshape(-1, T, N)[choice]
    lo = np.asarray(entry["lo"]).reshape(-1, T)[choice][:, None]
    hi = np.asarray(entry["hi"]).reshape(-1, T)[choice][:, None]
    return lo + q * (hi - lo) / 65535


def js_normalize(maps: np.ndarray, how: str) -> np.ndarray:
    """view.js's normalize, written again in Python."""
    size = np.abs(maps)
    if how == "none":
        return maps
    if how == "global":
        return maps / max(size.max(), 1e-12)
    d = size.max(1, keepdims=True) if how == "max" else size.sum(1, keepdims=True)
    return maps / np.maximum(d, 1e-12)


def test_the_numbers_are_the_explanations_maps(greedy, greedy_page):
    """Every method, every layer/head choice, both sink settings: the stored maps decode to exp.maps(...)
    within the storage error the page states, and the page's normalisations to exp.maps(..., normalize)."""
    data = page_data(greedy_page)
    T, N = len(greedy), greedy.grid[0] * greedy.grid[1]
    L, H = data["layers"], data["heads"]
    assert data["order"] == ["cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion"]
    stated = data["storage"]["max_error"]
    assert 0 < stated < 1e-5  # 16 bits over maps whose ranges are at most about 1
    assert f"at most {stated:.2g}" in greedy_page  # said in words, in the page
    checked = 0
    for name in data["order"]:
        choices = html_page.layer_head_choices(L, H) if lookup(name).per_layer_head else [(None, None)]
        for key, sinks in (("raw", False), ("sinks", True)):
            entry = data["methods"][name]["maps"][key]
            for c, (layer, head) in enumerate(choices):
                assert c == ((-1 if layer is None else layer) + 1) * (H + 1) + (-1 if head is None else head) + 1
                got = decoded(entry, c, T, N)
                exact = greedy.maps(name, layer, head, "none", sinks).reshape(T, N)
                span = np.ptp(exact, axis=1, keepdims=True)
                assert np.all(np.abs(got - exact) <= span / 131070 + 1e-12), (name, layer, head, sinks)
                assert np.abs(got - exact).max() <= stated + 1e-12
                for how in NORMALIZATIONS[1:]:
                    want = greedy.maps(name, layer, head, how, sinks).reshape(T, N)
                    shown = js_normalize(got, how)
                    scale = np.abs(exact).max() if how == "global" else np.abs(exact).max(1, keepdims=True)
                    tol = (N + 2) * span / 131070 / np.maximum(scale, 1e-12) + 1e-9  # the normaliser moves too
                    assert np.all(np.abs(shown - want) <= tol), (name, layer, head, sinks, how)
                checked += 1
    assert checked == 2 * (2 * (L + 1) * (H + 1) + 4)


def test_words_probabilities_alternatives_and_notices(greedy, greedy_page):
    data = page_data(greedy_page)
    assert data["tokens"] == greedy.tokens
    assert data["probs"] == [float(p) for p in greedy.probs]
    for j, alts in enumerate(data["alts"]):
        assert [a[0] for a in alts] == greedy.top_tokens[j]
        assert [a[1] for a in alts] == [float(p) for p in greedy.top_probs[j]]
        assert [a[2] for a in alts] == [int(i) == greedy.token_ids[j] for i in greedy.top_ids[j]]
    for word in greedy.tokens:
        assert f">{word}</button>" in greedy_page  # each word is a button
    # the app's notice: the shipped model's cross-attention and prefix maps were trained to point
    assert "trained to look at the objects it names" in greedy_page
    assert data["methods"]["cross_attention"]["status"].startswith("Trained to point.")
    assert data["methods"]["rollout"]["status"].startswith("Rollout: nothing trained this map to point")
    assert "the shipped model “ShapeScenes — attention trained to point”" in greedy_page and "greedy" in greedy_page
    assert data["image"].startswith("data:image/png;base64,")
    assert "How beam search found" not in greedy_page  # greedy: no search tree


def test_beam_search_shows_its_tree(shipped):
    exp = shipped.explain(str(SCENE), strategy="beam", beams=3)
    text = exp.to_html(method="rollout", word=2, normalize="sum")
    assert "How beam search found this caption" in text and "<svg" in text and "beam search (beams 3" in text
    for candidate in exp.candidates:
        assert f"<td>{candidate['caption']}</td>" in text
    assert page_data(text)["view"] == {"method": "rollout", "layer": -1, "head": -1, "normalize": "sum",
                                       "sinks": False, "word": 2, "cmap": "viridis", "opacity": 0.55}
    with pytest.raises(ValueError, match="not in this page"):
        exp.to_html(methods=("rollout",), method="prefix")


def test_no_network_request_of_any_kind(greedy_page):
    """Nothing in the page points outside it: no URL, no src/href but data: URIs, no script API that
    fetches, and a Content-Security-Policy that forbids any request anyway."""
    text = greedy_page
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for attr in re.findall(r"""\b(?:src|href|action|srcset)\s*=\s*["']?([^"'\s>]*)""", text):
        assert attr.startswith("data:") or attr == "D.image;", attr  # the script's one src: the picture's data URI
    assert page_data(text)["image"].startswith("data:image/")
    for api in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "EventSource", "sendBeacon", "Worker(", "@import",
                "url(", "<link", "<iframe"):
        assert api not in text, api
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    js = (ROOT / "vizcap" / "html" / "view.js").read_text()
    assert "__VZ_ID__" in js and "__VZ_ID__" not in text  # the script is scoped to its own view


def test_size_of_the_shipped_models_twenty_word_page(shipped, tmp_path):
    """A 20-word caption of the shipped model with every method: at most 2 MB (measured 0.32 MB)."""
    ids = shipped.tokenizer.encode(TWENTY_WORDS)
    assert len(ids) == 20
    exp = explain(shipped, str(SCENE), forced=ids)
    assert len(exp) == 20
    out = tmp_path / "twenty.html"
    text = exp.to_html(out)
    size = out.stat().st_size
    print(f"shipped model, 20 words, every method: {size / MB:.3f} MB")
    assert size == len(text.encode()) and size <= 2 * MB
    assert page_data(text)["order"] == ["cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy",
                                        "occlusion"]


def vit_b16_size_explanation(T: int = 20) -> Explanation:
    """An explanation shaped as a ViT-B/16 + GPT-2 captioner's (nlpconnect/vit-gpt2-image-captioning): 14×14
    patches and a class token, 12 ViT blocks × 12 heads, 12 decoder layers × 12 heads with cross-attention,
    random attention rows, random relevancy/occlusion maps in place of the model's, a 640×480 noise picture
    (a photograph as hard to compress as any)."""
    rng = np.random.default_rng(0)
    L = H = 12
    X, N = 1, 196

    def rows(shape):
        a = rng.random(shape).astype(np.float32)
        return a / a.sum(-1, keepdims=True)

    self_full = rng.random((L, H, T, T)).astype(np.float32) * np.tril(np.ones((T, T), np.float32))
    self_full /= self_full.sum(-1, keepdims=True)
    cross_full = rows((L, H, T, X + N))
    top_ids = np.stack([rng.permutation(50257)[:10] for _ in range(T)])
    top_probs = np.sort(rng.dirichlet(np.ones(12), T)[:, :10], axis=1)[:, ::-1]
    exp = Explanation(
        image=Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)), tokens=[f" w{i}" for i in range(T)],
        token_ids=top_ids[:, 0].tolist(), probs=top_probs[:, 0], top_ids=top_ids, top_probs=top_probs,
        top_tokens=[[f" t{i}" for i in ids] for ids in top_ids], grid=(14, 14), n_prefix=0, mode="cross",
        cross=cross_full[:, :, :, X:].transpose(2, 0, 1, 3), self_prefix=None, self_full=self_full,
        cross_full=cross_full, mapper=None, mapper_blocks=None, encoder=rows((12, 12, X + N, X + N)),
        params=DecodingParams(strategy="beam", beams=4, max_tokens=T), seed=None, score=-3.0, logprob=-9.0,
        ended=True, n_extra=X, cross_extra=cross_full[:, :, :, :X].transpose(2, 0, 1, 3))
    exp._relevancy = {"relevancy": rng.random((T, N)), "decoder_relevancy": rng.random((T, N)),
                      "occlusion": rng.uniform(-0.2, 1.0, (T, N))}
    return exp


def test_size_of_a_vit_b16_size_page():
    """14×14 grid, 12 layers × 12 heads, 20 words, every method of a cross-attention model: at most 15 MB
    (measured 4.1 MB)."""
    exp = vit_b16_size_explanation()
    text = exp.to_html(model="a ViT-B/16 + GPT-2 sized stand-in")
    size = len(text.encode())
    print(f"ViT-B/16 size, 20 words, every method: {size / MB:.2f} MB")
    assert size <= 15 * MB
    data = page_data(text)
    assert data["order"] == ["cross_attention", "rollout", "relevancy", "decoder_relevancy", "occlusion"]
    assert (data["layers"], data["heads"], data["grid"]) == (12, 12, [14, 14])
    assert len(data["share"]) == 13 * 13 and len(data["share"][0]) == 20  # the class token's share, per choice
    assert data["image"].startswith("data:image/jpeg;base64,")  # a photograph goes as JPEG
    got = decoded(data["methods"]["cross_attention"]["maps"]["raw"], 5 * 13 + 8, 20, 196)  # layer 4, head 7
    assert np.abs(got - exp.maps("cross_attention", 4, 7).reshape(20, 196)).max() <= data["storage"]["max_error"]


def test_without_the_model_the_on_demand_methods_are_left_out_and_said(greedy):
    bare = dataclasses.replace(greedy, _captioner=None, _relevancy=None)
    text = bare.to_html()
    data = page_data(text)
    assert data["order"] == ["cross_attention", "prefix", "rollout"]
    assert [m for m, _ in data["left_out"]] == ["relevancy", "decoder_relevancy", "occlusion"]
    assert "Not in this page: relevancy: relevancy needs the model" in text


def test_repr_html_is_the_same_page_in_a_frame_of_its_own(greedy):
    """A notebook output: the page itself in an <iframe srcdoc> (its own ids, styles, script and policy),
    and outside the frame nothing that could clash with the notebook or another view: no id, no script,
    no style sheet. The sentence under the frame shows where a notebook strips it. Both views work in one
    document in Chromium: tests/test_html_browser.py."""
    first, second = greedy._repr_html_(), greedy._repr_html_()
    for view in (first, second):
        outside, = re.findall(r'^(.*)<iframe srcdoc="[^"]*"', view, re.S)
        assert "id=" not in outside and "<script" not in outside and "<style" not in outside
        assert "did not load here" in outside and view.endswith("</iframe></div>")
        document = html_lib.unescape(re.search(r'<iframe srcdoc="([^"]*)"', view).group(1))
        assert document.startswith("<!DOCTYPE html>") and "default-src 'none'" in document
        data = page_data(document)
        assert data["page"] is True and data["embedded"] is True and data["tokens"] == greedy.tokens
    assert first.count("<iframe") == 1 and '<body style="margin:0">' in html_lib.unescape(first)


def test_colour_scales_are_the_apps():
    from vizcap.figures import COLORSCALES

    assert html_page.COLOUR_SCALES == COLORSCALES


def test_cli_html_writes_one_page_per_image(tmp_path):
    """--html OUT.html with two images: OUT-NAME.html for each (the shipped model, as a user runs it)."""
    scene42 = ROOT / "examples" / "scene42.png"
    proc = run_module("-m", "vizcap", "caption", str(SCENE), str(scene42), "--maps", "cross_attention,rollout",
                      "--max-tokens", "6", "--normalize", "sum", "--layer", "1", "--html",
                      str(tmp_path / "pages" / "view.html"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("scene", "scene42"):
        page = tmp_path / "pages" / f"view-{name}.html"
        assert f"vizcap: wrote {page}" in proc.stderr
        data = page_data(page.read_text(encoding="utf-8"))
        assert data["order"] == ["cross_attention", "rollout"]
        assert (data["view"]["normalize"], data["view"]["layer"], data["view"]["head"]) == ("sum", 1, -1)
        assert 1 <= len(data["tokens"]) <= 6
    assert len(list((tmp_path / "pages").iterdir())) == 2


def test_cli_html_targets(tmp_path):
    from vizcap.cli import _HtmlTargets

    one = _HtmlTargets(str(tmp_path / "a.html"), 1)
    assert one.target("x/scene.png") == tmp_path / "a.html"
    many = _HtmlTargets(str(tmp_path / "a.html"), 3)
    assert [many.target(p) for p in ("x/scene.png", "y/scene.png", "x/scene.png")] == \
        [tmp_path / "a-scene.html", tmp_path / "a-scene-2.html", tmp_path / "a-scene.html"]
    folder = _HtmlTargets(str(tmp_path / "out"), 2)  # a name not ending in .html: a folder
    assert [folder.target(p) for p in ("photo one.jpg", "b/photo one.png")] == \
        [tmp_path / "out" / "photo_one.html", tmp_path / "out" / "photo_one-2.html"]


def test_a_registered_method_and_strategy_reach_the_page(throwaway, greedy):
    """The page reads the registries (issue 23): a method registered at run time is in it, with its help."""
    sampled = dataclasses.replace(greedy, params=DecodingParams(strategy="my_sample", seed=3), seed=3)
    text = sampled.to_html(methods=("rollout", "my_rollout"), method="my_rollout")
    data = page_data(text)
    assert data["order"] == ["rollout", "my_rollout"] and data["methods"]["my_rollout"]["help"] == "a copy of rollout"
    assert data["methods"]["my_rollout"]["maps"] == data["methods"]["rollout"]["maps"]
    assert "my sampling" in text and "seed 3" in text


def test_an_empty_caption_still_makes_a_page(greedy):
    """The model ended at once: the page shows the picture and says so (the app's notice)."""
    empty = dataclasses.replace(greedy, tokens=[], token_ids=[], probs=np.zeros(0), top_ids=np.zeros((0, 10), int),
                                top_probs=np.zeros((0, 10)), top_tokens=[], cross=greedy.cross[:0],
                                cross_extra=None, self_prefix=greedy.self_prefix[:0], ended=True, _relevancy=None)
    text = empty.to_html()
    data = page_data(text)
    assert data["tokens"] == [] and data["order"][:3] == ["cross_attention", "prefix", "rollout"]
    assert "ended the caption at once" in text and "(empty: no word to explain)" in text
