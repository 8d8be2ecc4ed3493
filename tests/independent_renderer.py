"""The independent renderer lives in the library (vizcap/independent_renderer.py, which imports
nothing from vizcap) so that `vizcap eval --independent` can use it. Tests import it from here, and

    python tests/independent_renderer.py OUTDIR --n 20 --seed 0

writes OUTDIR/indep_00000.png ... and OUTDIR/truth.jsonl."""

from __future__ import annotations

import argparse
import json
import os

from vizcap.independent_renderer import caption_objects, render_independent  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write scenes of the independent renderer as PNGs and truth.jsonl.")
    ap.add_argument("outdir")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "truth.jsonl"), "w") as f:
        for i in range(args.n):
            seed = args.seed + i
            img, objs = render_independent(seed)
            name = f"indep_{i:05d}.png"
            img.save(os.path.join(args.outdir, name), format="PNG")
            f.write(json.dumps({
                "file": name, "seed": seed,
                "width": img.width, "height": img.height,
                "objects": [{**o, "box": list(o["box"])} for o in objs],
                "pairs": [list(p) for p in caption_objects(objs)],
            }) + "\n")


if __name__ == "__main__":
    main()
