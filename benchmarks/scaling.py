"""7. Scaling: explain time against caption length and against the encoder's patch grid."""

from __future__ import annotations


import torch

from benchmarks.models import PEER_TOKENS, SMALL, forced_ids, scene_images, shipped_or_random, vizcap_vit
from benchmarks.timing import interleaved, med


def bench_scaling(args) -> dict:
    from vizcap.explain import explain

    cap, what = shipped_or_random()
    img = scene_images(1)[0]
    lengths = (10, 20, 40)
    forced = {T: forced_ids(cap, T, seed=T) for T in lengths}
    repeats = 3 * args.repeats  # short calls: more samples, so that a burst of other work moves no median
    s = interleaved({T: (lambda T=T: explain(cap, img, forced=forced[T])) for T in lengths}, repeats, warmup=2)
    tok = {T: med(s[T]) for T in lengths}
    res = {"model": what, "tokens": {str(T): {"s": tok[T], "ms_per_token": tok[T] / T * 1e3} for T in lengths}}
    res["per_token_ratio_40_vs_10"] = (tok[40] / 40) / (tok[10] / 10)
    res["marginal_ms_per_token"] = {"10-20": (tok[20] - tok[10]) / 10 * 1e3, "20-40": (tok[40] - tok[20]) / 20 * 1e3}

    grids = {7: 112, 14: 224, 24: 384}
    caps = {g: vizcap_vit(SMALL, image=px) for g, px in grids.items()}
    for g, c in caps.items():
        assert c.grid == (g, g), (g, c.grid)
    ids = forced_ids(caps[7], PEER_TOKENS)

    def encode_only(c):
        def f():
            with torch.inference_mode():
                c.model.encode(c.pixels([img]))
        return f

    variants = {}
    for g, c in caps.items():
        variants[f"explain {g}"] = lambda c=c: explain(c, img, forced=ids)
        variants[f"encode {g}"] = encode_only(c)
    s2 = interleaved(variants, repeats, warmup=2)
    res["grid"] = {str(g): {"px": grids[g], "cells": g * g, "explain_s": med(s2[f"explain {g}"]),
                            "encode_s": med(s2[f"encode {g}"])} for g in grids}
    res["grid_ratio_24_vs_7"] = med(s2["explain 24"]) / med(s2["explain 7"])
    res["grid_encoder"] = "timm ViT, width 96, depth 2, 4 heads, patch 16 at 112/224/384 px; decoder as the default model"
    res["samples"] = {"tokens": {str(k): v for k, v in s.items()}, "grid": s2}
    return res
