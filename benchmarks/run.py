"""vizcap benchmarks (issue 8): `python benchmarks/run.py [--quick] [--only SECTIONS]`.

Every figure is measured in this one run, side by side: each compared pair is run alternately within
every repeat (the order flips from one repeat to the next, to cancel drift and order effects), after
warm-up, and the figure is the median over the repeats. It prints a table and writes
benchmarks/results.md (the table and the machine) and benchmarks/results.json (every sample).

Sections (--only takes a comma-separated subset; the default is all of them):

  explain   explain ÷ caption on the shipped model, same images, same tokens; relevancy per token
  peer      vizcap explain vs Hugging Face VisionEncoderDecoderModel.generate(output_attentions=True)
            at the default model's size and at ViT-B/16 + GPT-2 small size (random weights, T tokens)
  app       the explorer page: a display-only widget change (AppTest) vs the explain time; model calls
  train     samples/s of `python -m train shapes`, and of the photo preset with/without feature cache
  memory    peak RSS of loading a model and explaining one image (in a fresh process)
  scaling   explain time against caption length and against the encoder's patch grid
  hub       a Hugging Face ViT-B/16 + GPT-2 VisionEncoderDecoderModel (random weights, saved and opened
            with vizcap.load like any hub folder): vizcap explain (every map captured, cross-attention
            and rollout maps built) ÷ HF generate without attentions, and ÷ generate(output_attentions);
            peak RSS of opening it and explaining one image (a fresh process)
  gpu       there is none here, or the explain/peer figures on CUDA

Each section is one module of this package (benchmarks/explain.py … benchmarks/gpu.py); they share
benchmarks/timing.py (the one timing helper), benchmarks/models.py (what they run on) and
benchmarks/children.py (fresh processes); benchmarks/report.py writes the results.

Timing never goes into unit tests: this package is the only place where vizcap is timed.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python benchmarks/run.py): import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from benchmarks.app import bench_app  # noqa: E402
from benchmarks.explain import bench_explain  # noqa: E402
from benchmarks.gpu import bench_gpu  # noqa: E402
from benchmarks.hub import bench_hub  # noqa: E402
from benchmarks.memory import bench_memory  # noqa: E402
from benchmarks.models import BASE, SMALL  # noqa: E402
from benchmarks.peer import bench_peer, encoder_costs  # noqa: E402
from benchmarks.report import machine, table, write_results  # noqa: E402
from benchmarks.scaling import bench_scaling  # noqa: E402
from benchmarks.timing import load  # noqa: E402
from benchmarks.training import bench_train  # noqa: E402

SECTIONS = ("explain", "peer", "app", "train", "memory", "scaling", "hub", "gpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter training runs (< ~5 min)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--out", default=str(Path(__file__).parent), help="where results.md and results.json go")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    args.repeats = 5 if args.quick else 25
    args.n_images = 4 if args.quick else 8
    args.app_repeats = 6 if args.quick else 12
    torch.manual_seed(0)
    started = time.perf_counter()
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": args.quick,
           "machine": machine(), "load_start": load()}

    def section(name, fn):
        if name not in only:
            return
        t0 = time.perf_counter()
        print(f"[{name}] …", file=sys.stderr, flush=True)
        before = load()
        res[name] = fn()
        res.setdefault("section_load", {})[name] = {"start": before, "end": load()}
        print(f"[{name}] {time.perf_counter() - t0:.0f} s, load {load()}", file=sys.stderr, flush=True)

    section("explain", lambda: bench_explain(args))
    if "peer" in only:
        t0 = time.perf_counter()
        res["encoder_costs"] = encoder_costs(args.repeats)
        res["peer"] = [bench_peer(SMALL, args.repeats), bench_peer(BASE, 3 if args.quick else 7)]
        print(f"[peer] {time.perf_counter() - t0:.0f} s, load {load()}", file=sys.stderr, flush=True)
    if "app" in only:
        try:
            section("app", lambda: bench_app(args))
        except Exception as e:  # the app is someone else's moving target: say why, keep the rest
            res["app"] = {"error": f"{type(e).__name__}: {e}"}
            print(f"[app] failed: {res['app']['error']}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="vizcap-bench-") as tmp:
        section("train", lambda: bench_train(args, Path(tmp)))
    with tempfile.TemporaryDirectory(prefix="vizcap-bench-hub-") as tmp:
        section("hub", lambda: bench_hub(args, Path(tmp)))
    section("memory", bench_memory)
    section("scaling", lambda: bench_scaling(args))
    section("gpu", lambda: bench_gpu(args))
    res["load_end"] = load()
    res["seconds"] = time.perf_counter() - started
    rows = table(res)
    width = max(len(r[0]) for r in rows) if rows else 10
    print()
    for a, b, c, d in rows:
        print(f"{a:<{width}}  {b}  [{c}: {d}]")
    out = write_results(Path(args.out), res, rows)
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
