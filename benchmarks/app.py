"""3. The app: the explorer page under Streamlit's AppTest, a display-only widget change against the
explain time, and the model calls it makes."""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks.models import BASE, ROOT, shipped_or_random, vizcap_vit
from benchmarks.timing import Instrument, med, paired_ratio


def bench_app(args) -> dict:
    """The explorer page under AppTest, on the default model and on a ViT-B/16 + GPT-2 small sized
    checkpoint (random weights, saved to a temporary directory): the re-render cost hardly depends
    on the model, the explain time does."""
    from vizcap.captioner import DEFAULT_CHECKPOINT

    out = {}
    saved_env = os.environ.get("VIZCAP_CHECKPOINT")
    try:
        with tempfile.TemporaryDirectory(prefix="vizcap-bench-ckpt-") as tmp:
            if saved_env:
                label = f"VIZCAP_CHECKPOINT={saved_env}"
            elif (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
                label = "shipped"
            else:  # no shipped model yet: a random one
                shipped_or_random()[0].save_pretrained(tmp)
                os.environ["VIZCAP_CHECKPOINT"], label = tmp, "random default-config checkpoint"
            out["default"] = app_rerender(args, label)
        with tempfile.TemporaryDirectory(prefix="vizcap-bench-base-") as tmp:
            vizcap_vit(BASE).save_pretrained(tmp)
            os.environ["VIZCAP_CHECKPOINT"] = tmp
            out["base"] = app_rerender(args, f"{BASE['name']} size, random weights", repeats=max(4, args.app_repeats // 2))
    finally:
        if saved_env is None:
            os.environ.pop("VIZCAP_CHECKPOINT", None)
        else:
            os.environ["VIZCAP_CHECKPOINT"] = saved_env
    return out


def app_rerender(args, checkpoint: str, repeats: int | None = None) -> dict:
    """Open the explorer page on the checkpoint the app opens (VIZCAP_CHECKPOINT or the shipped one),
    then time at.run() after display-only widget changes, beside a fresh explain of the same image."""
    from streamlit.testing.v1 import AppTest

    import vizcap
    import vizcap.figures as figures_module
    from vizcap.explain import Explanation
    from vizcap.model import CaptionModel

    repeats = repeats or args.app_repeats
    app, page = ROOT / "streamlit_app.py", ROOT / "app_pages" / "explorer.py"
    if not page.is_file():
        raise RuntimeError(f"{page.relative_to(ROOT)} does not exist (the explorer page is needed)")
    calls = {"explain": 0, "explain_s": [], "encode": 0, "captioner": None, "image": None}
    original_explain, original_encode = vizcap.Captioner.explain, CaptionModel.encode

    def counted_explain(self, image, *a, **k):
        calls["explain"] += 1
        calls["captioner"], calls["image"] = self, image
        t0 = time.perf_counter()
        try:
            return original_explain(self, image, *a, **k)
        finally:
            calls["explain_s"].append(time.perf_counter() - t0)

    def counted_encode(self, *a, **k):  # every model call (caption, explain, relevancy) starts here
        calls["encode"] += 1
        return original_encode(self, *a, **k)

    vizcap.Captioner.explain, CaptionModel.encode = counted_explain, counted_encode
    # where a re-render's time goes: vizcap.figures builders, Explanation.maps, widgets.show (st.plotly_chart)
    timer = Instrument(outermost=True)  # nothing counted twice
    timer.active = False
    for name in dir(figures_module):
        fn = getattr(figures_module, name)
        if not name.startswith("_") and callable(fn) and getattr(fn, "__module__", "").startswith("vizcap.figures."):
            timer.patch(figures_module, name, "vizcap.figures")
    timer.patch(Explanation, "maps", "Explanation.maps")
    cwd = os.getcwd()
    os.chdir(ROOT)  # pages import `app_pages.common`; .streamlit/config.toml is read from here
    try:
        at = AppTest.from_file(str(app), default_timeout=600)  # the entry point, as a visit to /explorer runs it
        at.switch_page(str(page.relative_to(ROOT)))  # the explorer is the first page this session opens
        at.run()
        if at.exception:
            raise RuntimeError(f"the explorer page failed: {at.exception[0].message}")
        from app_pages.common import widgets  # imported by the first run

        timer.patch(widgets, "show", "st.plotly_chart (widgets.show)")
        if calls["explain"] < 1:
            raise RuntimeError("the explorer page ran without calling Captioner.explain")
        page_explain = calls["explain_s"][0]
        cap, image = calls["captioner"], calls["image"]

        def widget(kind: str, key: str, label_words: tuple[str, ...]):
            found = getattr(at, kind)
            for w in found:
                if getattr(w, "key", None) == key:
                    return w
            for w in found:
                if any(word in (w.label or "").lower() for word in label_words):
                    return w
            raise RuntimeError(f"no {kind} with key {key!r} or a label containing {label_words} on the explorer page")

        n_words = len(widget("select_slider", "ex_tok", ("word",)).options)
        # the floor: AppTest re-running a page that holds nothing but one slider
        floor_at = AppTest.from_string("import streamlit as st\nst.write(st.slider('x', 0, 10, 5, key='x'))")
        floor_at.run()
        changes, fresh, floor = [], [], []
        opacities = [0.3, 0.8]
        for r in range(repeats + 1):  # the first change is the warm-up
            before = (calls["explain"], calls["encode"])
            if r % 2 == 0:
                widget("slider", "ex_opacity", ("opacity",)).set_value(opacities[(r // 2) % 2])
                what = "opacity"
            else:
                widget("select_slider", "ex_tok", ("word",)).set_value(((r // 2) + 1) % max(n_words, 1))
                what = "word"
            timer.active = r > 0  # the first change is the warm-up
            t0 = time.perf_counter()
            at.run()
            dt = time.perf_counter() - t0
            timer.active = False
            if at.exception:
                raise RuntimeError(f"the explorer page failed after changing {what}: {at.exception[0].message}")
            sent = sum(len(getattr(c.proto, "spec", "")) for c in at.get("plotly_chart"))
            changes.append({"widget": what, "s": dt, "explain_calls": calls["explain"] - before[0],
                            "model_calls": calls["encode"] - before[1], "figure_json_bytes": sent})
            t0 = time.perf_counter()  # the explain the page would need, measured beside the re-render
            original_explain(cap, image)
            fresh.append(time.perf_counter() - t0)
            floor_at.slider[0].set_value(r % 10)
            t0 = time.perf_counter()
            floor_at.run()
            floor.append(time.perf_counter() - t0)
        timed, fresh, floor = changes[1:], fresh[1:], floor[1:]
        spent = {label: timer.total(label) for label in timer.calls}
        return {
            "page": "app_pages/explorer.py",
            "checkpoint": checkpoint,
            "widgets": "'Heatmap opacity' slider (key ex_opacity) and 'Word' select_slider (key ex_tok), alternately",
            "rerun_s": med([c["s"] for c in timed]),
            "rerun_by_widget": {w: med([c["s"] for c in timed if c["widget"] == w] or [float("nan")])
                                for w in ("opacity", "word")},
            "explain_s_in_app": page_explain,
            "explain_s_reference": med(fresh),
            "one_slider_page_rerun_s": med(floor),
            "ratio": paired_ratio([c["s"] for c in timed], fresh),
            "words": n_words,
            "figure_json_bytes": med([c["figure_json_bytes"] for c in timed]),
            "rerun_breakdown_s": {k: v / len(timed) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
            "model_calls_during_changes": sum(c["model_calls"] for c in changes),
            "explain_calls_during_changes": sum(c["explain_calls"] for c in changes),
            "changes": changes,
            "explain_samples": fresh,
        }
    finally:
        vizcap.Captioner.explain, CaptionModel.encode = original_explain, original_encode
        timer.undo()
        os.chdir(cwd)
