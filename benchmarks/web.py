"""The browser site's speed (`vizcap web`): how long after opening the page the first caption is on screen,
and how long one explanation takes (window.vizcap.explainInput on a model input, window.vizcap.explain on
a picture), in Debian's chromium driven by Playwright, the site served by a local http.server thread.

    python benchmarks/web.py [--site DIR] [--n 20] [--opens 3] [--levels all,basic]

Without --site it builds one (`vizcap web`, the shipped `shapes` model) into a temporary folder first.
Prints one JSON object (and writes it to benchmarks/web.json): medians and worst cases in milliseconds,
where a first visit's time went (performance marks), and the machine's load average."""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
HELDOUT_FIRST_SEED = 2_000_000_000


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def measure(site: Path, n: int, opens: int, levels: tuple[str, ...] = ("",)) -> dict:
    """Time `opens` fresh visits and `n` explanations for each graph optimisation level in `levels`
    ("" = the site's own choice), the levels interleaved so that the machine's load falls on all alike."""
    from playwright.sync_api import sync_playwright

    from vizcap.scenes import render_scene

    held = site / "bench"
    held.mkdir(exist_ok=True)
    for i in range(n):
        render_scene(HELDOUT_FIRST_SEED + i).image.save(held / f"{i}.png")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    url = {level: base + (f"?graph_optimization={level}" if level else "") for level in levels}
    first = {level: [] for level in levels}
    steps = {level: [] for level in levels}
    times = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            for _ in range(opens):  # a fresh page (and cache) each time: what a student's first visit costs
                for level in levels:
                    context = browser.new_context()
                    page = context.new_page()
                    start = time.perf_counter()
                    page.goto(url[level])
                    page.wait_for_selector("#caption", timeout=60_000)
                    first[level].append(1000 * (time.perf_counter() - start))
                    steps[level].append(page.evaluate("window.vizcap.timings()"))
                    context.close()
            for level in levels:
                page = browser.new_page()
                page.goto(url[level])
                page.wait_for_selector("#caption", timeout=60_000)
                times[level] = page.evaluate("""async (n) => {
                  const input = [], picture = [];
                  for (let i = 0; i < n; i++) {
                    const pixels = new Float32Array(await window.vizcap.preprocess(`bench/${i}.png`));
                    let t = performance.now();
                    await window.vizcap.explainInput(pixels);
                    input.push(performance.now() - t);
                    t = performance.now();
                    await window.vizcap.explain(`bench/${i}.png`);
                    picture.push(performance.now() - t);
                  }
                  return {input, picture};
                }""", n)
                page.close()
            browser.close()
    finally:
        server.shutdown()

    def summary(level: str) -> dict:
        t, f, st = times[level], first[level], steps[level]
        return {
            "first_caption_ms": {"median": round(statistics.median(f)), "worst": round(max(f)), "opens": opens},
            # where a first visit's time went: ms after navigation at which each step ended (median over the opens)
            "first_visit_steps_ms": {k: round(statistics.median(s[k] for s in st if k in s)) for k in st[0]},
            "explain_input_ms": {"median": round(statistics.median(t["input"]), 1), "worst": round(max(t["input"]), 1), "n": n},
            "explain_picture_ms": {"median": round(statistics.median(t["picture"]), 1), "worst": round(max(t["picture"]), 1),
                                   "n": n},
        }

    out = summary(levels[0]) if levels == ("",) else {"graph_optimization": {level: summary(level) for level in levels}}
    return {**out, "load_average": [round(x, 2) for x in os.getloadavg()],
            "site_mb": round(sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and "bench" not in f.parts) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=None, help="a site built by `vizcap web` (default: build one)")
    parser.add_argument("--n", type=int, default=20, help="held-out scenes to explain (default 20)")
    parser.add_argument("--opens", type=int, default=3, help="fresh page openings timed (default 3)")
    parser.add_argument("--levels", default="", help="compare ONNX Runtime graph optimisation levels side by side, "
                        "e.g. all,basic (default: the site's own)")
    args = parser.parse_args()
    if args.site is None:
        from vizcap.web import build

        args.site = Path(tempfile.mkdtemp(prefix="vizcap-site-"))
        build(args.site, ["shapes"], gallery=tuple(range(24)))
    result = measure(args.site, args.n, args.opens, tuple(args.levels.split(",")) if args.levels else ("",))
    result["command"] = "python benchmarks/web.py" + "".join(f" {a}" for a in sys.argv[1:])
    (Path(__file__).with_name("web.json")).write_text(json.dumps(result, indent=1) + "\n")  # README quotes it
    print(json.dumps(result))


if __name__ == "__main__":
    main()
