"""Fresh processes: the environment a child runs in, and the start every memory child shares
(its peak resident set so far, VmHWM, after the heavy imports)."""

from __future__ import annotations

import os

from benchmarks.models import ROOT


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env


# the start of every memory child: the peak resident set so far (VmHWM), and the imports' share of it
CHILD_PRELUDE = r"""
import json, sys
sys.path.insert(0, {root!r})
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
import torch, timm, transformers, numpy
"""
