"""5. Memory: peak RSS of loading a model and explaining one image, each in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.children import CHILD_PRELUDE, child_env
from benchmarks.models import ROOT


MEMORY_CHILD = CHILD_PRELUDE + r"""
from benchmarks import models as bench
base = hwm()
which = {which!r}
if which == "default":
    cap, what = bench.shipped_or_random()
    img = bench.scene_images(1)[0]
    cap.explain(img)
else:
    cap = bench.vizcap_vit(bench.BASE)
    what = "random weights"
    img = bench.scene_images(1)[0]
    from vizcap.explain import explain
    explain(cap, img, forced=bench.forced_ids(cap, bench.PEER_TOKENS))
print(json.dumps({{"imports_mb": base, "peak_mb": hwm(), "what": what,
                  "params": sum(p.numel() for p in cap.model.parameters())}}))
"""


def bench_memory() -> dict:
    out = {}
    for which in ("default", "base"):
        code = MEMORY_CHILD.format(root=str(ROOT), which=which)
        r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"memory child {which} failed: {r.stderr.strip()[-800:]}")
        out[which] = json.loads(r.stdout.strip().splitlines()[-1])
    return out
