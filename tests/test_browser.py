"""The app in a real browser: `streamlit run streamlit_app.py` on 127.0.0.1 and Debian's chromium
driven by Playwright. Every page is visited through the sidebar navigation; on each, the model's
caption must be visible and no exception box shown. Screenshots go to docs/screenshots/ (or
$VIZCAP_SCREENSHOTS).

Needs /usr/bin/chromium (`apt-get install chromium`) and the `playwright` package
(requirements-dev.txt; never `playwright install`: the system chromium is used). Without them the
test is skipped locally, and fails when CI=true.

The app opens the shipped model when it is present, otherwise a small random checkpoint (or
VIZCAP_CHECKPOINT when set)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vizcap.lesson import STEPS

from conftest import make_random_captioner

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("VIZCAP_SCREENSHOTS", ROOT / "docs" / "screenshots"))
START_TIMEOUT_S = 300  # the first run imports torch and loads the model
PAGE_TIMEOUT_MS = 300_000
VIEWPORT = {"width": 1400, "height": 950}
PAGES = [  # (title in the sidebar, screenshot name, what the page must show)
    ("Caption & attention explorer", "explorer", "Where the model looked"),
    ("Decoding lab", "decoding_lab", "Search tree"),
    ("How it works", "how_it_works", "Training vs writing a caption"),
    ("Training & trust", "training_and_trust", "Can the heatmaps be trusted?"),
]


def _requirements() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is missing (pip install -r requirements-dev.txt)")
    if missing:
        reason = "browser test needs: " + "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(tmp_path_factory) -> str | None:
    """None: the app's own default (the shipped model)."""
    if os.environ.get("VIZCAP_CHECKPOINT"):
        return os.environ["VIZCAP_CHECKPOINT"]
    from vizcap.captioner import DEFAULT_CHECKPOINT

    if all((DEFAULT_CHECKPOINT / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")):
        return None
    out = tmp_path_factory.mktemp("browser_checkpoint")
    make_random_captioner("both").save_pretrained(out)
    return str(out)


def streamlit_server(env: dict, log: Path):
    """Start `streamlit run streamlit_app.py` on a free port with `env`; yield its URL once it answers
    its health check; stop it afterwards. Shared by the browser tests."""
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--global.developmentMode", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"streamlit did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SERVER_LOG: dict[str, Path] = {}  # "path": the module server's log (what Streamlit prints while the tests run)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _requirements()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    checkpoint = _checkpoint(tmp_path_factory)
    env.pop("VIZCAP_CHECKPOINT", None)
    if checkpoint:
        env["VIZCAP_CHECKPOINT"] = checkpoint
    SERVER_LOG["path"] = tmp_path_factory.mktemp("streamlit_log") / "server.log"
    yield from streamlit_server(env, SERVER_LOG["path"])


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def _settle(page) -> None:
    """Wait until the script run is over (the "running" indicator gone) and the page has drawn."""
    page.wait_for_timeout(800)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && !document.querySelector('[data-testid=\"stSpinner\"]')",
        timeout=PAGE_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # plotly draws after the run ends


def _check(page, name: str, must_show: str, caption: str) -> None:
    page.get_by_text(must_show).first.wait_for(state="visible")
    _settle(page)
    assert page.locator("[data-testid='stException']").count() == 0, f"{name}: an exception box is shown"
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, f"{name}: error shown: {errors.first.inner_text()}"
    assert page.get_by_text(caption, exact=False).first.is_visible(), f"{name}: caption {caption!r} not visible"
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # Streamlit scrolls inside its main container, not the document: grow the window to the content
    height = page.evaluate("""() => Math.max(...['stMain', 'stAppViewContainer', 'stMainBlockContainer']
        .map(id => document.querySelector(`[data-testid="${id}"]`)).filter(Boolean).map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(height + 40, VIEWPORT["height"]), 7000))})
    page.wait_for_timeout(2500)  # plotly redraws at the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    _shrink(path)


def _shrink(path: Path) -> None:
    """Screenshots go into the repository: a 256-colour palette (median cut, dithered so that heatmap
    gradients stay smooth) keeps each one near 100 KB."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.FLOYDSTEINBERG)
    small.save(path, optimize=True)


def test_a_page_address_opened_first_shows_the_apps_own_navigation(server, browser_page):
    """The first visit of a fresh server goes straight to /explorer (a bookmark, a shared link): the
    app's own page list and titles, not Streamlit's automatic one ("streamlit app", "explorer" …)."""
    page = browser_page
    page.goto(server + "/explorer")
    page.get_by_text("Where the model looked").first.wait_for(state="visible")
    _settle(page)
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Caption & attention explorer" in nav and "Home" in nav and "Training & trust" in nav, nav
    assert "streamlit app" not in nav.lower() and "decoding_lab" not in nav
    assert page.locator("h1").first.inner_text().strip() == "Caption & attention explorer"
    assert page.locator("[data-testid='stException']").count() == 0


# Text cut short (an ellipsis) or a word broken over two lines, in the main area's labels, buttons and
# drop-downs: returns one line per problem.
BROKEN_TEXT_JS = r"""() => {
  const bad = [];
  const main = document.querySelector('[data-testid="stMain"]');
  const nav = document.querySelector('[data-testid="stSidebarNav"]');
  const shown = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  for (const el of [...main.querySelectorAll('*'), ...(nav ? nav.querySelectorAll('*') : [])]) {
    if (!shown(el)) continue;
    const style = getComputedStyle(el);
    if (style.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1 && el.innerText.trim())
      bad.push('cut: ' + el.innerText.trim());
  }
  // labels, buttons, drop-downs, and the text of cards side by side (columns: "sampli ng" in a squeezed one)
  const roots = main.querySelectorAll('[data-testid="stWidgetLabel"], button, [data-baseweb="select"], '
                                      + '[data-testid="stColumn"] [data-testid="stMarkdownContainer"]');
  for (const el of roots) {
    if (!shown(el)) continue;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const re = /[^\s\-\u2010-\u2014]+/g; let m;  // a word; a hyphen is a line break's proper place
      while ((m = re.exec(node.textContent))) {
        const r = document.createRange();
        r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
        if (lines.size > 1) bad.push('broken: ' + m[0]);
      }
    }
  }
  return bad;
}"""


def _open(page, url: str, must_show: str) -> None:
    page.goto(url)
    page.get_by_text(must_show).first.wait_for(state="visible")
    _settle(page)


@pytest.mark.parametrize("size", [(1280, 800), (800, 900)])
def test_explorer_fits_a_projector_and_no_text_is_cut(server, browser_page, size):
    """At 1280×800 the explorer's caption, its Back/Next/Play buttons and the map fit on one screen;
    at both sizes, on every page, no label, button or drop-down is cut short or broken mid-word."""
    page = browser_page
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    try:
        _open(page, server + "/explorer", "Where the model looked")
        boxes = {"caption": page.locator("#vz-caption").first.bounding_box(),
                 "map": page.locator("[data-testid='stPlotlyChart']").first.bounding_box(),
                 **{name: page.get_by_role("button", name=name).first.bounding_box() for name in ("Back", "Next", "Play")}}
        if (width, height) == (1280, 800):
            for name, box in boxes.items():
                assert box and box["y"] >= 0 and box["y"] + box["height"] <= height + 1, (name, box)
        for name in ("Back", "Next", "Play"):
            assert page.get_by_role("button", name=name).first.inner_text().split()[-1] == name  # after its icon
        page.locator("[data-testid='stExpander'] summary", has_text="Map settings").first.click()  # the folded settings, opened
        _settle(page)
        settings = page.locator("[data-testid='stExpander']", has_text="Map settings")
        shown = {name: settings.get_by_role("combobox", name=name).first.input_value()
                 for name in ("Layer", "Head", "Normalisation")}
        assert shown == {"Layer": "all (mean)", "Head": "all (mean)", "Normalisation": "max"}, shown  # not "Choose an option"
        assert page.evaluate(BROKEN_TEXT_JS) == [], "explorer"
        for path, must_show in (("/decoding_lab", "Search tree"), ("/how_it_works", "Training vs writing a caption"),
                                ("/training_and_trust", "Can the heatmaps be trusted?")):
            _open(page, server + path, must_show)
            assert page.evaluate(BROKEN_TEXT_JS) == [], path
        _open(page, server, "Choose another image")
        page.get_by_text("Compose", exact=True).first.click()
        _settle(page)
        assert page.evaluate(BROKEN_TEXT_JS) == [], "home (compose)"
    finally:
        page.set_viewport_size(VIEWPORT)


def test_home_shows_the_caption_above_the_fold(server, browser_page):
    """At 1440×900 a newcomer sees the caption without scrolling, and no filesystem path."""
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 900})
    try:
        _open(page, server, "Choose another image")
        box = page.locator("#vz-caption").first.bounding_box()
        assert box and box["y"] + box["height"] <= 900, box
        assert str(ROOT) not in page.locator("[data-testid='stMain']").inner_text()
    finally:
        page.set_viewport_size(VIEWPORT)


def test_every_page_in_a_browser(server, browser_page):
    page = browser_page
    page.goto(server)
    caption_el = page.locator("#vz-caption")
    caption_el.wait_for(state="visible")
    _settle(page)
    caption = caption_el.inner_text().strip()
    assert caption and caption != "(empty caption)", "the home page shows the model's caption"
    _check(page, "home", "where does the captioner look?", caption)
    for title, name, must_show in PAGES:
        page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
        _check(page, name, must_show, caption)


# which word of the explorer's caption is highlighted (its span has a coloured background)
HIGHLIGHTED_JS = r"""() => [...document.querySelectorAll('#vz-caption span')]
  .findIndex(s => getComputedStyle(s).backgroundColor === 'rgb(0, 114, 178)')"""


@pytest.mark.parametrize("size", [(1280, 800), (800, 900)])
def test_a_prepared_link_round_trips_and_the_lesson_steps_through(server, browser_page, size):
    """A teacher's link opens the explorer on that view; Next rewrites the address, and the new address
    opens the same view again. The Lesson page steps through all its steps with nothing cut or broken;
    its screenshots (1280×800) go to docs/screenshots/lesson-N.png."""
    page = browser_page
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    try:
        _open(page, server + "/explorer?image=scene:42&word=3&method=rollout&normalize=max", "Where the model looked")
        assert "rollout" in page.get_by_text("Map: ", exact=False).first.inner_text()
        assert "ShapeScenes example 42" in page.locator("[data-testid='stMain']").inner_text()
        words = page.locator("#vz-caption").first.inner_text().split()
        assert page.evaluate(HIGHLIGHTED_JS) == 2  # the third word is the highlighted one
        page.get_by_role("button", name="Next").first.click()
        page.wait_for_function("() => location.search.includes('word=4')")
        url = page.url
        assert "image=scene%3A42" in url and "method=rollout" in url
        _open(page, url, "Where the model looked")  # the address opens the same view again
        assert page.evaluate(HIGHLIGHTED_JS) == 3 and page.locator("#vz-caption").first.inner_text().split() == words
        _open(page, server + "/lesson", "Step")
        for k in range(1, len(STEPS) + 1):
            page.get_by_text(f"Step {k} of {len(STEPS)}", exact=False).first.wait_for(state="visible")
            _settle(page)
            assert page.evaluate(BROKEN_TEXT_JS) == [], f"lesson step {k}"
            assert page.locator("[data-testid='stException']").count() == 0
            assert f"step={k}" in page.url
            if (width, height) == (1280, 800):
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / f"lesson-{k}.png"))
                _shrink(SHOTS / f"lesson-{k}.png")
            if k < len(STEPS):
                page.get_by_role("button", name="Next").first.click()
    finally:
        page.set_viewport_size(VIEWPORT)


def test_inside_the_vit_a_click_on_a_patch_shows_where_it_looks(server, browser_page):
    """Explorer, "Inside the ViT": clicking a patch of the picker chooses that patch (the Patch box
    follows) and redraws its layer-by-layer maps, outlined at the clicked cell."""
    page = browser_page
    _open(page, server + "/explorer", "Where the model looked")
    page.get_by_role("tab", name="Inside the ViT").click()
    _settle(page)
    picker = page.locator("[data-testid='stPlotlyChart']", has_text="Choose a patch").first
    picker.wait_for(state="visible")
    def chosen() -> str:
        return page.get_by_role("combobox", name="Patch (or click one below)").first.input_value()

    before = chosen()
    points = picker.locator(".scatterlayer path.point")
    n = points.count()
    assert n >= 16, n
    target = 0 if "row 1, column 1" not in before else n - 1  # a patch other than the chosen one
    points.nth(target).scroll_into_view_if_needed()
    box = points.nth(target).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    _settle(page)
    after = chosen()
    side = int(round(n ** 0.5))
    want = "row 1, column 1" if target == 0 else f"row {side}, column {side}"
    assert want in after and after != before, (before, after)
    assert page.get_by_text("Inside the ViT: where the patch at " + want, exact=False).first.is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "inside-vit.png"), full_page=True)
    _shrink(SHOTS / "inside-vit.png")



# -- layout and readability at a student's, a projector's and a narrow window's size (issue 26, 12-15) --

# every visible text of the plotly charts with its font size (px)
CHART_TEXT_JS = r"""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] svg text')]
  .filter(t => t.textContent.trim() && t.getClientRects().length && getComputedStyle(t).display !== 'none'
          && getComputedStyle(t).visibility !== 'hidden' && getComputedStyle(t).opacity !== '0')
  .map(t => [t.textContent.trim().slice(0, 40), parseFloat(getComputedStyle(t).fontSize)])"""

# how far the page reaches past the window sideways (px): the document and Streamlit's scrolling main area
OVERFLOW_JS = r"""() => { const main = document.querySelector('[data-testid="stMain"]');
  return Math.max(document.documentElement.scrollWidth - innerWidth, main ? main.scrollWidth - main.clientWidth : 0) }"""

# the colour a text is seen in on the white page: its colour, faded by its own and its ancestors' opacity
SEEN_COLOUR_JS = r"""el => { let alpha = 1;
  for (let e = el; e; e = e.parentElement) alpha *= parseFloat(getComputedStyle(e).opacity);
  const m = getComputedStyle(el).color.match(/[\d.]+/g).map(Number);
  alpha *= m.length > 3 ? m[3] : 1;
  return m.slice(0, 3).map(c => c * alpha + 255 * (1 - alpha)) }"""

# the bounding boxes of one chart's point labels (scatter text), in page pixels
LABEL_BOXES_JS = r"""chart => [...chart.querySelectorAll('.scatterlayer .textpoint text')]
  .filter(t => t.textContent.trim()).map(t => { const r = t.getBoundingClientRect();
    return [t.textContent, r.left, r.top, r.right, r.bottom] })"""


def _contrast(rgb) -> float:
    """WCAG contrast ratio of a colour against white."""
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    lum = 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
    return 1.05 / (lum + 0.05)


def _overlapping(boxes, slack: float = 1.0) -> list:
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[1] < b[3] - slack and b[1] < a[3] - slack and a[2] < b[4] - slack and b[2] < a[4] - slack]


def _readable_page(page, where: str) -> None:
    """No sideways scrolling, no word broken or cut, chart text at 14 px or more, explanations dark enough."""
    assert page.evaluate(OVERFLOW_JS) <= 1, f"{where}: the page is wider than the window"
    assert page.evaluate(BROKEN_TEXT_JS) == [], where
    small = [t for t in page.evaluate(CHART_TEXT_JS) if t[1] < 14]
    assert not small, f"{where}: chart text under 14 px: {small[:8]}"
    captions = page.locator("[data-testid='stCaptionContainer']")
    if captions.count():
        seen = captions.first.evaluate(SEEN_COLOUR_JS)
        assert _contrast(seen) >= 4.5, f"{where}: explanations in {seen} on white ({_contrast(seen):.1f}:1)"


@pytest.mark.parametrize("size", [(800, 900), (1280, 800), (1440, 900)])
def test_layout_is_readable_at_a_students_a_projectors_and_a_narrow_windows_size(server, browser_page, size):
    """Issue 26, items 12–15, at the sizes they were found at: nothing wider than the window, no word
    broken or cut, chart text at least 14 px, the caption's upcoming words and the explanations at WCAG AA
    contrast; at 800 px a narrower sidebar and a map of a useful width; at 1280×800 (a projector) the
    lesson's head maps at least 160 px and its beam tree's words apart and on screen; at 1440×900 the map
    beside its open settings; and "New seed" leaves no duplicate-value warning in the server's log."""
    page = browser_page
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    try:
        _open(page, server + "/explorer", "Where the model looked")
        page.locator("[data-testid='stExpander'] summary", has_text="Map settings").first.click()
        _settle(page)
        _readable_page(page, f"explorer {size}")
        spans = page.locator("#vz-caption span")
        upcoming = spans.nth(spans.count() - 1).evaluate(SEEN_COLOUR_JS)  # the last word: still to come
        assert page.evaluate(HIGHLIGHTED_JS) < spans.count() - 1
        assert _contrast(upcoming) >= 4.5, f"upcoming words in {upcoming}: {_contrast(upcoming):.1f}:1 on white"
        chart = page.locator("[data-testid='stPlotlyChart']").first
        picture = chart.locator(".imagelayer image").first.bounding_box()
        if width == 800:
            sidebar = page.locator("[data-testid='stSidebar']").bounding_box()
            assert sidebar["width"] <= 240, sidebar
            assert picture["width"] >= 250, f"the map is {picture['width']:.0f} px wide at 800 px"
        if (width, height) == (1440, 900):  # the map in view beside its open settings
            chart_box = chart.bounding_box()
            method = page.get_by_role("combobox", name="Map method").first.bounding_box()
            assert chart_box["y"] >= 0 and picture["y"] + picture["height"] <= height, (chart_box, picture)
            assert 0 <= method["y"] and method["y"] + method["height"] <= height, method
        heads = page.locator("[data-testid='stPlotlyChart']", has_text="All heads of layer").first
        heads.scroll_into_view_if_needed()
        panels = [b for b in heads.locator(".nsewdrag").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")]
        if (width, height) == (1280, 800):
            assert min(panels) >= 160, f"explorer's head maps {panels} px wide"

        _open(page, server + "/lesson?step=2", "Step 2 of 6")
        _readable_page(page, f"lesson step 2 {size}")
        if (width, height) == (1280, 800):
            grid = page.locator("[data-testid='stPlotlyChart']").first
            panels = grid.locator(".nsewdrag").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
            assert len(panels) >= 2 and min(panels) >= 160, f"lesson's head maps {panels} px wide"
            box = grid.bounding_box()
            assert box["y"] + box["height"] <= height + 1, f"the head maps run off the screen: {box}"
        _open(page, server + "/lesson?step=4", "Step 4 of 6")
        _readable_page(page, f"lesson step 4 {size}")
        tree = page.locator("[data-testid='stPlotlyChart']").first
        assert _overlapping(tree.evaluate(LABEL_BOXES_JS)) == [], f"lesson's beam tree {size}: words over each other"
        if (width, height) == (1280, 800):
            axis, box = tree.locator(".xtitle").first.bounding_box(), tree.bounding_box()
            assert axis and axis["y"] + axis["height"] <= height, f"the tree's axis is cut by the screen: {axis}"
            assert box["y"] + box["height"] <= height + 1, f"the tree (its legend) runs off the screen: {box}"

        _open(page, server + "/decoding_lab", "Search tree")
        _readable_page(page, f"decoding lab {size}")
        tree = page.locator("[data-testid='stPlotlyChart']", has_text="How the search grew").first
        assert _overlapping(tree.evaluate(LABEL_BOXES_JS)) == [], f"decoding lab's beam tree {size}"
        if width == 800:  # once: "New seed" sets the seed widget through session state, without a warning
            seed = page.get_by_role("spinbutton", name="Seed").first
            before = int(seed.input_value())
            page.get_by_role("button", name="New seed").first.click()
            _settle(page)
            assert int(seed.input_value()) == before + 1
            assert "had its value set via the Session State API" not in SERVER_LOG["path"].read_text()

        _open(page, server + "/training_and_trust", "Can the heatmaps be trusted?")
        _readable_page(page, f"training and trust {size}")
        _open(page, server, "Choose another image")
        _readable_page(page, f"home {size}")
    finally:
        page.set_viewport_size(VIEWPORT)
