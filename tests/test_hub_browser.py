"""The app in a real browser with a Hugging Face captioner: `streamlit run streamlit_app.py`, Debian's
chromium driven by Playwright, the sidebar's "A Hugging Face captioner" given a tiny BLIP or GIT folder
(built offline). The model's caption must show on Home and on the explorer, with no exception box
and no error; relevancy shows the decoder's at once and the full one on request. Skipped locally
without chromium/playwright (fails when CI=true), like test_browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hub_fixtures
from test_browser import CHROMIUM, CHROMIUM_ARGS, _requirements, _settle, streamlit_server

ROOT = Path(__file__).resolve().parents[1]


FAMILIES = {"blip": (hub_fixtures.blip, "Hugging Face BLIP captioner"),
            "git": (hub_fixtures.git, "Hugging Face GIT captioner")}  # GIT: issue 28, "the app opened with a GIT folder"


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def hf_folder(request, tmp_path_factory):
    build, label = FAMILIES[request.param]
    return build(tmp_path_factory.mktemp(f"{request.param}_browser")), label


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _requirements()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("VIZCAP_CHECKPOINT", None)
    yield from streamlit_server(env, tmp_path_factory.mktemp("hub_streamlit_log") / "server.log")


def _no_trouble(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, f"{where}: an exception box is shown"
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, f"{where}: error shown: {errors.first.inner_text()}"


def test_browser_opens_a_hugging_face_folder(server, hf_folder):
    from playwright.sync_api import sync_playwright

    import vizcap
    from app_pages.common.state import DEFAULT_SCENE
    from vizcap.scenes import render_scene

    folder, label = hf_folder
    # Home and the explorer both write the model's own caption ("Max words" starts at its generation
    # config's limit: a random model never ends, and the tiny GIT's config stops at 15 new tokens)
    expected = vizcap.load(folder).caption(render_scene(DEFAULT_SCENE).image)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(300_000)
        try:
            page.goto(server)
            page.locator("#vz-caption").first.wait_for(state="visible")
            _settle(page)
            page.get_by_text("A Hugging Face captioner").first.click()
            _settle(page)
            box = page.get_by_role("textbox", name="Hub id or folder")
            box.fill(str(folder))
            box.press("Enter")
            _settle(page)
            page.get_by_text(label).first.wait_for(state="visible")
            _no_trouble(page, "Home")
            assert page.locator("#vz-caption").first.inner_text().strip() == (expected or "(empty caption)")
            page.locator("[data-testid='stSidebarNav']").get_by_text("Caption & attention explorer").click()
            page.get_by_text("Where the model looked").first.wait_for(state="visible")
            _settle(page)
            _no_trouble(page, "explorer")
            assert expected in page.locator("[data-testid='stMain']").inner_text()
            # relevancy: the decoder's at once, the full one when asked for (issue 28)
            page.locator("[data-testid='stExpander'] summary", has_text="Map settings").first.click()
            _settle(page)
            page.get_by_role("combobox", name="Map method").first.click()
            page.get_by_role("option", name="relevancy", exact=True).click()
            _settle(page)
            _no_trouble(page, "explorer, relevancy")
            main = page.locator("[data-testid='stMain']")
            assert "Map: decoder relevancy ·" in main.inner_text()
            page.get_by_role("button", name="Compute full relevancy").click()
            _settle(page)
            _no_trouble(page, "explorer, full relevancy")
            assert "Map: relevancy ·" in main.inner_text() and "Showing decoder relevancy" not in main.inner_text()
        finally:
            browser.close()
