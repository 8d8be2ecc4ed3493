"""Fast mode's speed and cost (issue #28 item 2), measured in one run; writes vizcap/fast_cost.json,
which the fast-mode notice (vizcap/notices.py), the app and README quote.

    python -m benchmarks.fast_mode [--threads 1] [--tokens 12] [--repeats 5] [--pictures 100] [--full-size-pictures 3]

speed      ViT-B/16 + GPT-2 small at nlpconnect/vit-gpt2-image-captioning's shapes (random weights: the
           hub cannot be reached here), opened with vizcap.load as float32 and with fast=True (int8), and
           the candidate that was not chosen, bfloat16 linear layers (BFloat16Linear below), in the same
           process. One call = explain one picture (greedy, --tokens words) and build its cross-attention
           and rollout maps; the variants alternate within every repeat (benchmarks/timing.py), and the
           ratio is the median of the per-repeat ratios. Peak memory (VmHWM) of loading each and explaining
           one picture, in fresh processes.
agreement  trained: the shipped ShapeScenes model, float32 against the same model with its linear layers
           in int8 (vizcap.fast.to_int8, the conversion fast mode applies), on --pictures held-out scenes:
           the only trained captioner on this offline machine, so the only meaningful figure. Its maps
           are small (8×8 grid) and its vocabulary 33 words, so a photo model's figures may differ.
           full_size_random: the ViT-B/16 + GPT-2 model above on --full-size-pictures scenes: random
           weights write a meaningless caption (one token repeated), so only its maps' agreement says
           something (about the int8 arithmetic at that size), and only for cross-attention and rollout
           (relevancy costs tens of seconds a picture there).
           Per word: the fast model reads the float32 model's own caption (explain(forced=...)), so the
           maps compare word for word even where the captions differ. top_cell: the share of words whose
           hottest cell is the float32 map's; mae: mean |map − float32 map|, maps scaled to their peak
           (normalize="max").
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.children import CHILD_PRELUDE, child_env
from benchmarks.hub import save_hf_vit_gpt2
from benchmarks.models import HELDOUT, ROOT
from benchmarks.report import machine
from benchmarks.timing import interleaved, med, paired_ratio

MODEL = "ViT-B/16 + GPT-2"

MEMORY_CHILD = CHILD_PRELUDE + r"""
torch.set_num_threads({threads})
import numpy as np
from PIL import Image
import vizcap
cap = vizcap.load({folder!r}, fast={fast})
img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
e = cap.explain(img, max_tokens={tokens}); e.maps("cross_attention"); e.maps("rollout")
print(json.dumps({{"peak_mb": hwm()}}))
"""


class BFloat16Linear(torch.nn.Module):
    """The candidate not chosen: a linear layer with bfloat16 weights (input cast to bfloat16, output back)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        weight = module.weight if isinstance(module, torch.nn.Linear) else module.weight.t()
        self.weight = torch.nn.Parameter(weight.detach().to(torch.bfloat16).contiguous(), requires_grad=False)
        self.bias = None if module.bias is None else torch.nn.Parameter(module.bias.detach().float(), requires_grad=False)
        self.out_features = self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return y if self.bias is None else y + self.bias


def bfloat16_copy(captioner):
    """The captioner around a copy of its model whose linear layers are BFloat16Linear."""
    from transformers.pytorch_utils import Conv1D

    model = copy.deepcopy(captioner.model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (torch.nn.Linear, Conv1D)):
                setattr(parent, name, BFloat16Linear(child))
    return captioner.with_model(model, f"{captioner.name} (bfloat16)")


def int8_copy(captioner):
    """The captioner around a copy of its model converted as fast mode converts (vizcap.fast.to_int8)."""
    from vizcap.fast import to_int8

    model = copy.deepcopy(captioner.model)
    to_int8(model)
    return captioner.with_model(model, f"{captioner.name} (int8)")


def scenes(n: int) -> list:
    from vizcap.scenes import render_scene

    return [render_scene(HELDOUT + i).image for i in range(n)]


def agreement(full, quick, pictures: list, methods: tuple[str, ...], max_tokens: int | None = None) -> dict:
    """Caption agreement, and per map method the per-word top-cell agreement and mean absolute error
    (module docstring)."""
    from vizcap.explain import explain

    same, words = 0, 0
    top = {m: [] for m in methods}
    err = {m: [] for m in methods}
    for img in pictures:
        ref = full.explain(img, max_tokens=max_tokens)
        same += quick.explain(img, max_tokens=max_tokens).token_ids == ref.token_ids
        if not ref.token_ids:
            continue
        read = explain(quick, img, forced=ref.token_ids)  # the same words, so the maps compare one to one
        words += len(ref.token_ids)
        for m in methods:
            a, b = ref.maps(m, normalize="max"), read.maps(m, normalize="max")
            a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
            top[m] += (a.argmax(1) == b.argmax(1)).tolist()
            err[m] += np.abs(a - b).mean(1).tolist()
    return {"n_pictures": len(pictures), "captions_agree": same / len(pictures), "words": words,
            "methods": {m: {"top_cell": float(np.mean(top[m])) if top[m] else None,
                            "mae": float(np.mean(err[m])) if err[m] else None} for m in methods}}


def peak_memory(folder: Path, fast: bool, threads: int, tokens: int) -> float:
    child = MEMORY_CHILD.format(root=str(ROOT), folder=str(folder), fast=fast, threads=threads, tokens=tokens)
    r = subprocess.run([sys.executable, "-c", child], env=child_env(), capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"memory child failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--tokens", type=int, default=12, help="words per explained caption in the timing (default 12)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each variant (default 5)")
    ap.add_argument("--pictures", type=int, default=100, help="held-out scenes for the trained model's agreement")
    ap.add_argument("--full-size-pictures", type=int, default=3, help="scenes for the full-size model's agreement")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    import vizcap
    from vizcap.fast import COST_COMMAND, COST_FILE, FAST_PRECISION
    from vizcap.files import write_json
    from vizcap.maps import available

    transformers.logging.set_verbosity_error()
    given = " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": f"{COST_COMMAND} {given}".strip(), "date": datetime.date.today().isoformat(),
           "machine": machine(), "load_average_start": list(os.getloadavg()), "precision": FAST_PRECISION}

    shipped = vizcap.load()
    print(f"agreement on {args.pictures} held-out scenes, the shipped model", flush=True)
    trained = agreement(shipped, int8_copy(shipped), scenes(args.pictures), available(shipped.mode))
    out["agreement"] = {"trained": {"model": f"vizcap's shipped ShapeScenes model ({Path(shipped.name).name})",
                                    "pictures": "held-out ShapeScenes scenes", **trained}}
    print(json.dumps(out["agreement"]["trained"]), flush=True)

    with tempfile.TemporaryDirectory(prefix="vizcap-fast-") as tmp:
        folder = save_hf_vit_gpt2(Path(tmp) / "vit-gpt2")
        full, quick = vizcap.load(folder), vizcap.load(folder, fast=True)
        half = bfloat16_copy(full)
        img = scenes(1)[0]

        def explain_all(cap):
            e = cap.explain(img, max_tokens=args.tokens)
            e.maps("cross_attention")
            e.maps("rollout")
            assert len(e.tokens) == args.tokens  # random weights never end early: every call writes as many words
            return e

        print(f"speed: {MODEL}, {args.repeats} repeats, {args.threads} thread(s)", flush=True)
        s = interleaved({"float32": lambda: explain_all(full), FAST_PRECISION: lambda: explain_all(quick),
                         "bfloat16": lambda: explain_all(half)}, args.repeats, warmup=1)
        out["speed"] = {"model": MODEL, "weights": "random (nlpconnect/vit-gpt2-image-captioning's shapes)",
                        "tokens": args.tokens, "repeats": args.repeats, "threads": args.threads,
                        "float32_s": med(s["float32"]), "fast_s": med(s[FAST_PRECISION]),
                        "explain_ratio": paired_ratio(s[FAST_PRECISION], s["float32"]),
                        "not_chosen": {"bfloat16": {"s": med(s["bfloat16"]),
                                                    "explain_ratio": paired_ratio(s["bfloat16"], s["float32"])}},
                        "samples": s}
        print(json.dumps({k: v for k, v in out["speed"].items() if k != "samples"}), flush=True)
        del half

        print(f"agreement on {args.full_size_pictures} scenes, {MODEL} (random weights)", flush=True)
        random_size = agreement(full, quick, scenes(args.full_size_pictures), ("cross_attention", "rollout"),
                                max_tokens=args.tokens)
        out["agreement"]["full_size_random"] = {
            "model": f"{MODEL}, random weights", "pictures": "held-out ShapeScenes scenes", **random_size,
            "note": "random weights write one token over and over: caption agreement says nothing here"}
        del full, quick
        out["speed"]["peak_mb"] = {p: peak_memory(folder, p != "float32", args.threads, args.tokens)
                                   for p in ("float32", FAST_PRECISION)}
    out["load_average_end"] = list(os.getloadavg())  # other work on the machine slows every figure
    write_json(COST_FILE, out)
    print(json.dumps({k: v for k, v in out["speed"].items() if k != "samples"}))
    print(f"wrote {COST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
