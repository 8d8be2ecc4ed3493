"""The one-file interactive page (vizcap/html_page.py, issue 27 part A) in a real browser: pages written
by `python -m vizcap caption IMG --html OUT` (greedy, and beam search) opened from file:// in Debian's
chromium (Playwright, as tests/test_browser.py drives it) with every request but the page itself refused.
Words are clicked and stepped with the arrow keys, every setting is changed, and what the page draws is
read back and compared with `exp.maps(...)` within the storage error the page states: the numbers behind
the picture (the view's read-only hook, `element.vizcapView`), the value under the pointer and the
canvas's own pixels. Probabilities, alternatives, the beam tree and the notices are compared with the
explanation's; any console message, script error or blocked request fails. Screenshots at 1440×900,
1280×800 and 800 px wide go to $VIZCAP_SCREENSHOTS (default: a temporary folder; the paths are printed).
Two notebook outputs (`_repr_html_`) in one document must both work, apart.

Without /usr/bin/chromium or playwright the tests are skipped locally and fail when CI=true."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vizcap
from conftest import run_module
from test_browser import CHROMIUM, CHROMIUM_ARGS, _requirements
from vizcap import notices
from vizcap.maps import NORMALIZATIONS, lookup
from vizcap.render import colorize, upsample

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "scene.png"
SCENE42 = ROOT / "examples" / "scene42.png"
PHOTO = ROOT / "examples" / "photo.jpg"
STEP = 131070  # the page's storage: a value within (max − min)/131070 of exp.maps'
HOOK = "document.querySelector('.vzc').vizcapView"
LAST_SENTENCE = "The maps show where the model looked while it wrote each word, not proof of why it wrote it."


@pytest.fixture(scope="module")
def shipped():
    return vizcap.load("shapes")


@pytest.fixture(scope="module")
def cli_pages(tmp_path_factory):
    """The two pages a teacher would make: greedy on one scene, beam search (3 beams) on another."""
    _requirements()
    out = tmp_path_factory.mktemp("html_pages")
    pages = {"greedy": (SCENE, []), "beam": (SCENE42, ["--strategy", "beam", "--beams", "3"])}
    for name, (image, flags) in pages.items():
        proc = run_module("-m", "vizcap", "caption", str(image), *flags, "--html", str(out / f"{name}.html"),
                          timeout=900)
        assert proc.returncode == 0, proc.stderr
    return {name: out / f"{name}.html" for name in pages}


@pytest.fixture(scope="module")
def greedy_exp(shipped):
    return shipped.explain(str(SCENE))


@pytest.fixture(scope="module")
def beam_exp(shipped):
    return shipped.explain(str(SCENE42), strategy="beam", beams=3)


@pytest.fixture(scope="module")
def browser():
    _requirements()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Offline:
    """A browser tab that refuses every request but the page's own and records what the page tried:
    requests, console messages, uncaught errors and Content-Security-Policy violations."""

    def __init__(self, browser, url: str, viewport=(1440, 900)):
        self.url = url
        self.tab = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.tab.set_default_timeout(60_000)
        self.requested, self.refused, self.console, self.errors = [], [], [], []
        self.tab.on("request", lambda r: self.requested.append(r.url))
        self.tab.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.route("**/*", self._answer)
        self.tab.add_init_script("window.__blocked = []; document.addEventListener('securitypolicyviolation',"
                                 " (e) => window.__blocked.push(e.blockedURI + ' ' + e.violatedDirective));")
        self.tab.goto(url)
        self.tab.wait_for_function("() => [...document.querySelectorAll('.vzc')].every((v) => v.vizcapView"
                                   " && v.vizcapView.ready())")

    def _answer(self, route):
        if route.request.url == self.url:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def assert_clean(self):
        """Nothing but the page was requested, nothing blocked, nothing on the console."""
        blocked = self.tab.evaluate("window.__blocked")
        assert self.refused == [] and blocked == [], (self.refused, blocked)
        assert [u for u in self.requested if not u.startswith("data:")] == [self.url]
        assert self.errors == [] and self.console == [], (self.errors, self.console)

    def view(self, expression: str, frame=None):
        return (frame or self.tab).evaluate(f"() => {HOOK}.{expression}")


def expected(exp, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """exp.maps(...) for the view's word and settings, and how far the page may be from it: the storage
    error of the stored maps, carried through the normalisation (the divisor is stored too)."""
    method = state["method"]
    layer, head = (None if state["layer"] < 0 else state["layer"]), (None if state["head"] < 0 else state["head"])
    if not lookup(method).per_layer_head:
        layer = head = None
    T, word, how = len(exp), state["word"], state["normalize"]
    raw = exp.maps(method, layer, head, "none", state["sinks"]).reshape(T, -1)
    want = exp.maps(method, layer, head, how, state["sinks"]).reshape(T, -1)[word]
    error = np.ptp(raw, axis=1) / STEP  # per word: half a 16-bit step of its range
    if how == "none":
        tol = error[word]
    else:
        divisor = {"max": np.abs(raw[word]).max(), "sum": np.abs(raw[word]).sum(), "global": np.abs(raw).max()}[how]
        moves = {"max": error[word], "sum": raw.shape[1] * error[word], "global": error.max()}[how]
        tol = (error[word] + moves) / max(divisor, 1e-12)  # |x / d| ≤ 1 for these three
    return want, tol + 1e-12


def check_map(tab: Offline, exp, frame=None) -> dict:
    state = tab.view("state()", frame)
    got = np.asarray(tab.view("currentMap()", frame))
    want, tol = expected(exp, state)
    assert got.shape == want.shape, state
    assert np.all(np.abs(got - want) <= tol), (state, np.abs(got - want).max(), tol)
    return state


def word_buttons(tab: Offline, frame=None):
    return (frame or tab.tab).locator(".vz-words button")


def test_greedy_page_offline_words_settings_and_maps(browser, cli_pages, greedy_exp, shipped):
    exp = greedy_exp
    tab = Offline(browser, cli_pages["greedy"].as_uri())
    page = tab.tab
    T = len(exp)
    assert word_buttons(tab).all_inner_texts() == [t.strip() for t in exp.tokens]
    assert page.locator(".vz-caption").inner_text() == exp.caption
    state = check_map(tab, exp)
    assert (state["word"], state["method"], state["normalize"]) == (0, "cross_attention", "max")

    # words: a click, the arrow keys (not past either end), Back and Next
    word_buttons(tab).nth(2).click()
    assert check_map(tab, exp)["word"] == 2
    page.keyboard.press("ArrowRight")
    assert check_map(tab, exp)["word"] == 3
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert check_map(tab, exp)["word"] == 1
    for _ in range(T + 2):
        page.keyboard.press("ArrowRight")
    assert check_map(tab, exp)["word"] == T - 1
    page.locator(".vz-prev").click()
    assert tab.view("state()")["word"] == T - 2
    assert page.locator(".vz-words button.vz-on").inner_text() == exp.tokens[T - 2].strip()

    # every method; per layer/head ones at a single layer and head too; every normalisation; sinks
    methods = page.locator(".vz-method option").evaluate_all("(os) => os.map((o) => o.value)")
    assert methods == ["cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion"]
    checked = 0
    for method in methods:
        page.select_option(".vz-method", method)
        per_head = lookup(method).per_layer_head
        assert page.locator(".vz-layer").is_disabled() is not per_head
        for layer, head in ((-1, -1), (1, 2), (0, -1)) if per_head else ((-1, -1),):
            if per_head:
                page.select_option(".vz-layer", str(layer))
                page.select_option(".vz-head", str(head))
            for how in NORMALIZATIONS:
                page.select_option(".vz-norm", how)
                for sinks in (False, True):
                    page.locator(".vz-sinks").set_checked(sinks)
                    word_buttons(tab).nth(checked % T).click()
                    state = check_map(tab, exp)
                    assert (state["method"], state["normalize"], state["sinks"]) == (method, how, sinks)
                    if per_head:
                        assert (state["layer"], state["head"]) == (layer, head)
                    checked += 1
        # the small map of every method is the selected one when clicked
    page.locator(".vz-thumbs figure").nth(2).click()
    assert tab.view("state()")["method"] == "rollout" and page.locator(".vz-method").input_value() == "rollout"
    assert checked == 2 * 4 * (3 * 2 + 4)

    # the word's probability and its ten alternatives, as the explanation has them
    for j in (0, T - 1):
        word_buttons(tab).nth(j).click()
        assert page.locator(".vz-prob").inner_text() == f"Probability of “{exp.tokens[j]}”: {exp.probs[j]:.2f}"
        rows = page.locator(".vz-alt").evaluate_all("(rs) => rs.map((r) => [r.children[0].textContent, "
                                                     "r.children[2].textContent, r.classList.contains('vz-chosen')])")
        assert rows == [[tok, f"{p:.3f}", int(i) == exp.token_ids[j]]
                        for tok, p, i in zip(exp.top_tokens[j], exp.top_probs[j], exp.top_ids[j])]
    # the notices are the app's for this model and picture
    said = page.locator(".vz-notices li").all_inner_texts()
    assert said == [*notices.caption_notices(shipped, exp), notices.attention_notice(shipped), LAST_SENTENCE]
    page.select_option(".vz-method", "cross_attention")
    assert page.locator(".vz-status").inner_text() == "Trained to point. " + notices.attention_notice(shipped)
    page.select_option(".vz-method", "rollout")
    assert "nothing trained this map to point" in page.locator(".vz-status").inner_text()

    # Play writes the caption word by word and stops on the last word
    page.locator(".vz-play").click()
    assert tab.view("state()")["playing"]
    page.wait_for_function(f"() => !{HOOK}.state().playing", timeout=T * 700 + 10_000)
    assert check_map(tab, exp)["word"] == T - 1
    tab.assert_clean()
    page.close()


def test_what_is_drawn_is_the_map(browser, cli_pages, greedy_exp):
    """The canvas's pixels (opacity 1: the colour scale alone) are vizcap.render's colours of exp.maps,
    nearest and bilinear; the value under the pointer is the cell's."""
    exp = greedy_exp
    tab = Offline(browser, cli_pages["greedy"].as_uri())
    page = tab.tab
    gh, gw = exp.grid
    page.locator(".vz-opacity").fill("1")
    page.select_option(".vz-method", "rollout")
    page.select_option(".vz-norm", "none")
    word_buttons(tab).nth(1).click()
    for smooth in (False, True):
        page.locator(".vz-smooth").set_checked(smooth)
        state = check_map(tab, exp)
        want = exp.maps("rollout", normalize="none")[state["word"]].astype(np.float64)
        top = tab.view("colourTop()")
        assert top == pytest.approx(max(1.0, want.max()), rel=1e-4)  # an attention share: the scale stays 0..1
        png = page.evaluate("() => document.querySelector('.vz-canvas').toDataURL('image/png')")  # lossless
        drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGB"), np.int16)
        H, W = drawn.shape[:2]
        colours = colorize(upsample(want.reshape(gh, gw), (W, H), smooth) / top).astype(np.int16)
        diff = np.abs(drawn - colours).max(-1)
        # the page's colour table has 1024 steps (vizcap.render's 4096) and rounds its own way: a few units
        assert np.percentile(diff, 99.9) <= 3 and diff.max() <= 6, (smooth, diff.max())

    box = page.locator(".vz-canvas").bounding_box()
    shown = np.asarray(tab.view("currentMap()"))
    for row, col in ((0, 0), (gh // 2, gw - 1), (gh - 1, 1)):
        page.mouse.move(box["x"] + (col + 0.5) * box["width"] / gw, box["y"] + (row + 0.5) * box["height"] / gh)
        text = page.locator(".vz-hover").inner_text()
        said = re.fullmatch(rf"Row {row + 1}, column {col + 1}: (-?[0-9.]+)", text)
        assert said, text
        digits = len(said.group(1).split(".")[1]) if "." in said.group(1) else 0
        assert abs(float(said.group(1)) - shown[row * gw + col]) <= 0.5 * 10 ** -digits + 1e-12
    tab.assert_clean()
    page.close()


def test_beam_page_shows_its_tree_and_maps(browser, cli_pages, beam_exp):
    exp = beam_exp
    tab = Offline(browser, cli_pages["beam"].as_uri())
    page = tab.tab
    assert word_buttons(tab).all_inner_texts() == [t.strip() for t in exp.tokens]
    tree = page.locator("svg[aria-label='the beam search tree']")
    assert tree.is_visible()
    assert tree.locator("circle").count() == 1 + sum(len(step["tokens"]) for step in exp.beam_tree)
    assert tree.locator("polyline[stroke='#E69F00']").count() == 1  # the chosen caption's path
    rows = page.locator("details table tr").all_inner_texts()[1:]
    assert [r.split("\t")[0] for r in rows] == [c["caption"] for c in exp.candidates]
    assert "beam search (beams 3" in page.locator("header").inner_text()
    page.select_option(".vz-method", "decoder_relevancy")
    page.select_option(".vz-norm", "global")
    for j in range(len(exp)):
        word_buttons(tab).nth(j).click()
        check_map(tab, exp)
    tab.assert_clean()
    page.close()


SIZES = [(1440, 900), (1280, 800), (800, 900)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_layout_and_screenshots(browser, cli_pages, size, tmp_path_factory):
    """A teacher's projector (1280×800), a laptop (1440×900), a narrow window (800): the words, the
    picture with its colour scale and the settings are on the first screen; nothing overlaps; nothing
    but the beam tree (in its own scroller) is wider than the window."""
    shots = Path(os.environ.get("VIZCAP_SCREENSHOTS") or tmp_path_factory.mktemp("html_page_shots"))
    shots.mkdir(parents=True, exist_ok=True)
    width, height = size
    for name, path in cli_pages.items():
        tab = Offline(browser, path.as_uri(), size)
        page = tab.tab
        page.screenshot(path=shots / f"html-page-{name}-{width}x{height}.png")
        page.screenshot(path=shots / f"html-page-{name}-{width}-full.png", full_page=True)
        print(f"screenshots: {shots}/html-page-{name}-{width}x{height}.png (and -{width}-full.png)")

        def box(selector):
            return page.locator(selector).first.bounding_box()

        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        if width >= 1280:  # a projector: the first screen holds the words, the map and its colour scale
            for selector in (".vz-words", ".vz-canvas", ".vz-colourbar", ".vz-method", ".vz-norm"):
                b = box(selector)
                assert b["y"] >= 0 and b["y"] + b["height"] <= height and b["x"] + b["width"] <= width, (selector, b)
        picture = box(".vz-canvas")
        assert picture["height"] >= 300 and picture["width"] >= 300  # big enough to read the map
        words = [page.locator(".vz-words button").nth(i).bounding_box()
                 for i in range(page.locator(".vz-words button").count())]
        for a, b in zip(words, words[1:]):
            same_line = abs(a["y"] - b["y"]) < 1
            assert not same_line or a["x"] + a["width"] <= b["x"] + 0.5, (a, b)
        left, right = box(".vz-left"), box(".vz-right")
        side_by_side = right["x"] >= left["x"] + left["width"]
        assert side_by_side or right["y"] >= left["y"] + left["height"]  # columns never overlap
        tab.assert_clean()
        page.close()


def test_two_notebook_outputs_in_one_document(browser, greedy_exp, shipped, tmp_path):
    """Two `_repr_html_` outputs on one page, as a notebook shows them: each works alone (its own
    document: ids, styles, script, keys), each is as tall as its view, and a picture unlike the
    model's world is said in its own view only."""
    photo = shipped.explain(str(PHOTO), max_tokens=4)  # short: the page computes every method
    doc = tmp_path / "notebook.html"
    doc.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><style>button { font-size: 30px; }"
                   " .vzc { display: none; }</style></head><body><p>In [1]:</p>" + greedy_exp._repr_html_()
                   + "<p>In [2]:</p>" + photo._repr_html_() + "</body></html>", encoding="utf-8")
    tab = Offline(browser, doc.as_uri())
    page = tab.tab
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 2
    for frame in frames:
        frame.wait_for_function(f"() => {HOOK} && {HOOK}.ready()")
    first, second = frames
    check_map(tab, greedy_exp, first)
    check_map(tab, photo, second)
    assert notices.picture_notice(shipped, photo.image) in second.locator(".vz-notices").inner_text()
    assert notices.picture_notice(shipped, greedy_exp.image) is None

    assert len(photo) >= 2
    word_buttons(tab, second).nth(0).click()
    page.keyboard.press("ArrowRight")  # the keys go to the view that has the focus
    assert tab.view("state()", second)["word"] == 1 and tab.view("state()", first)["word"] == 0
    first.select_option(".vz-method", "occlusion")
    word_buttons(tab, first).nth(1).click()
    check_map(tab, greedy_exp, first)
    check_map(tab, photo, second)
    assert tab.view("state()", second)["method"] == "cross_attention"
    # the notebook's own styles stay outside the views
    assert first.locator(".vz-words button").first.evaluate("(b) => getComputedStyle(b).fontSize") != "30px"
    for frame in frames:  # as tall as the view: nothing hidden below, no scroll bar inside the output
        inner = frame.evaluate("() => [document.documentElement.scrollHeight, window.innerHeight]")
        assert abs(inner[0] - inner[1]) <= 2, inner
    tab.assert_clean()
    page.close()



def test_the_page_in_firefox(cli_pages, greedy_exp, tmp_path_factory):
    """The same page in Debian's Firefox (firefox-esr, driven over WebDriver BiDi: tests/firefox_bidi.py):
    offline, no console message, words by click and arrow keys, settings, maps equal to exp.maps, Play.
    Skipped where Firefox is not installed (CI installs only chromium)."""
    import firefox_bidi

    if firefox_bidi.FIREFOX is None:
        pytest.skip("Firefox is not installed (apt-get install firefox-esr)")
    exp, T = greedy_exp, len(greedy_exp)
    shots = Path(os.environ.get("VIZCAP_SCREENSHOTS") or tmp_path_factory.mktemp("html_page_shots"))
    shots.mkdir(parents=True, exist_ok=True)
    firefox = firefox_bidi.Firefox(size=(1280, 800))
    try:
        url = cli_pages["greedy"].as_uri()
        firefox.goto(url)
        firefox.wait_for(f"{HOOK} && {HOOK}.ready()")

        def check(word, method, how):
            state = firefox.js(f"{HOOK}.state()")
            assert (state["word"], state["method"], state["normalize"]) == (word, method, how)
            want, tol = expected(exp, state)
            got = np.asarray(firefox.js(f"{HOOK}.currentMap()"))
            assert np.all(np.abs(got - want) <= tol), (state, np.abs(got - want).max(), tol)

        assert firefox.js("[...document.querySelectorAll('.vz-words button')].map((b) => b.textContent)") == \
            [t.strip() for t in exp.tokens]
        check(0, "cross_attention", "max")
        firefox.click(".vz-words button", 2)
        check(2, "cross_attention", "max")
        firefox.press("ArrowRight")
        check(3, "cross_attention", "max")
        firefox.press("ArrowLeft")
        firefox.press("ArrowLeft")
        check(1, "cross_attention", "max")
        for method, how in (("rollout", "none"), ("occlusion", "sum"), ("prefix", "global")):
            firefox.js(f"(() => {{ for (const [cls, v] of [['vz-method', '{method}'], ['vz-norm', '{how}']]) {{"
                       " const s = document.querySelector('.' + cls); s.value = v;"
                       " s.dispatchEvent(new Event('change')); } })()")
            firefox.click(".vz-words button", T - 1)
            check(T - 1, method, how)
        firefox.screenshot(shots / "html-page-greedy-firefox-1280x800.png")
        print(f"screenshot: {shots}/html-page-greedy-firefox-1280x800.png")
        firefox.click(".vz-play")
        firefox.wait_for(f"!{HOOK}.state().playing && {HOOK}.state().word === {T - 1}", timeout_s=T * 0.7 + 30)
        assert firefox.js("window.__blocked") == []
        assert [u for u in firefox.requests() if not u.startswith("data:")] in ([], [url])
        assert firefox.console() == []
    finally:
        firefox.close()
