"""4. Training throughput: `python -m train shapes` and the photo preset (with and without the
feature cache) in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.children import child_env
from benchmarks.models import ROOT
from benchmarks.timing import med


def _train(argv: list[str], out: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "train", *argv], cwd=str(ROOT), env=child_env(), capture_output=True,
                       text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"python -m train {' '.join(argv)} failed: {(r.stderr or r.stdout).strip()[-800:]}")
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines() if x.strip()]
    rates = [x for x in records if "samples_per_s" in x]
    return {"rates": [(x["step"], x["samples_per_s"]) for x in rates], "wall_s": wall}


def bench_train(args, tmp: Path) -> dict:
    res = {}
    # ShapeScenes: log every 25 steps (train/loop.py); the first window (compile-free warm-up, first
    # batches) is dropped, the figure is the median of the later windows.
    steps = 75 if args.quick else 150
    out = tmp / "shapes"
    r = _train(["shapes", "--out", str(out), "--steps", str(steps), "--eval-n", "1", "--save-every", "100000"],
               out, timeout=900)
    later = [v for s, v in r["rates"] if s > 25]
    ran = json.loads((out / "metrics.json").read_text())["args"]  # what the run used, not what we assume
    res["shapes"] = {"samples_per_s": med(later), "windows": r["rates"], "steps": steps, "batch": ran["batch_size"],
                     "threads": ran["threads"], "workers": ran["workers"], "wall_s": r["wall_s"]}

    # The photo preset on fabricated images (train/fabricate.py): a frozen random ViT-S/16 at 224 px
    # and the tiny random GPT-2, with and without the feature cache. Alternated run by run.
    from train.fabricate import fabricate

    world = fabricate(tmp / "photos")
    steps = 30 if args.quick else 60
    common = ["coco", "--karpathy-json", str(world.karpathy_json), "--image-root", str(world.image_root),
              "--encoder", "vit_small_patch16_224", "--encoder-weights", "none", "--image-size", "224",
              "--decoder", str(world.decoder), "--prefix-tokens", "4", "--freeze-encoder", "--steps", str(steps),
              "--batch-size", "8", "--lr", "1e-3", "--warmup", "2", "--workers", "1", "--threads", "2",
              "--log-every", "10", "--eval-every", "0", "--eval-n", "1", "--test-n", "-1", "--save-every", "100000"]
    runs = {"no cache": [], "feature cache": []}
    for rep in range(1 if args.quick else 2):
        order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for name in order:
            out = tmp / f"photos-{name.replace(' ', '-')}-{rep}"
            extra = ["--cache-features", str(tmp / f"cache-{rep}")] if name == "feature cache" else []
            r = _train(common + ["--out", str(out)] + extra, out, timeout=900)
            runs[name].append({"samples_per_s": med([v for s, v in r["rates"] if s > 10]), "windows": r["rates"],
                               "wall_s": r["wall_s"]})
    res["photos"] = {name: {"samples_per_s": med([x["samples_per_s"] for x in v]), "wall_s": med([x["wall_s"] for x in v]),
                            "runs": v} for name, v in runs.items()}
    res["photos"]["setup"] = (f"fabricated Karpathy set ({len(world.images)} ShapeScenes JPEGs), vit_small_patch16_224 "
                              f"random weights frozen, 224 px, tiny GPT-2 (32 wide, 2 layers), batch 8, {steps} steps, "
                              "1 loader worker, 2 threads; the cache is built before step 1 (in wall time, "
                              "not in samples/s)")
    return res
