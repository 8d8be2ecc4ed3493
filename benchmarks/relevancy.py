"""Full relevancy's cost against the model's own forward and backward passes, on the example Hugging Face
captioners' sizes, on this machine's CPU.

    python benchmarks/relevancy.py [--threads 2] [--repeats 3] [--tokens 12] [--only vit-gpt2,blip-base]
                                   [--tiny] [--no-memory] [--out PATH]

The models are rebuilt with random weights of the real shapes by benchmarks/real_captioners.py's builders:
nlpconnect/vit-gpt2-image-captioning (ViT-B/16 at 224, 197 encoder tokens, GPT-2 small) and
Salesforce/blip-image-captioning-base (BLIP ViT-B/16 at 384, 577 encoder tokens, its text decoder). Both are
loaded in this one process, and each repeat times, on each model, interleaved (benchmarks/timing.py: the
order reverses every other repeat):

    explain            cap.explain of one 640×480 picture, greedy, at most --tokens words (random weights
                       almost never end a caption early, so it is that long)
    relevancy          exp.maps("relevancy") of every word of that caption, computed afresh each time
    decoder_relevancy  exp.maps("decoder_relevancy"), likewise
    yardstick          for each word, one forward pass of the transformers model itself (eager attention,
                       loaded apart from vizcap's), teacher-forced on the same tokens, and one backward pass
                       of that word's logit (.backward(): what one step of training pays)
    encoder_floor      what no exact per-word rule can avoid: vizcap's encoder forward pass once (maps in
                       the graph), then for each word one backward pass from the encoder's output to every
                       encoder attention map, with a random vector (the decoder is skipped altogether).
                       Chefer's rule clamps each word's gradient ⊙ map at 0, so each word needs its own
                       gradient of every map: one such pass a word, whatever is shared or batched

and reports their medians and three ratios, each the median over repeats of the pair measured in the same
repeat: relevancy ÷ yardstick (bar ≤ 0.37), decoder_relevancy ÷ explain (bar ≤ 3) and encoder_floor ÷
yardstick (the least relevancy ÷ yardstick an exact method can reach with torch's kernels on this machine). Peak memory
(VmHWM) is measured apart, each stage once in a fresh process (after loading, after explaining, after
the stage; --no-memory skips it). One JSON object is printed and written to benchmarks/relevancy.json
(--out). Relevancy and the yardstick both run with denormals flushed to zero in every torch thread
(vizcap.explain.in_flushed_thread): the gradient of one logit of a random-weight model reaches them in a
deep encoder, and unflushed, one backward pass of BLIP-base's shapes took 22.6 s instead of 2.0–2.6 s
(2026-12-03), which is why a BLIP run once did not finish within 18 minutes. A run with
--only keeps the other models' entries of the JSON it writes to, each naming the command that measured it.

--tiny runs the same code on 2-layer, 32-wide models of the same families and vocabularies, to check it
(under a minute of CPU with --no-memory; each of the eight memory processes adds ~7 s of importing torch).
Its figures mean nothing and go nowhere unless --out says where.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "relevancy.json"
BARS = {"relevancy_over_yardstick": 0.37, "decoder_relevancy_over_explain": 3.0}

sys.path.insert(0, str(ROOT))
from benchmarks.children import CHILD_PRELUDE, child_env  # noqa: E402
from benchmarks.real_captioners import BUILDERS  # noqa: E402
from benchmarks.timing import interleaved, med, paired_ratio  # noqa: E402

MODELS = ("vit-gpt2", "blip-base")
STAGES = ("explain", "relevancy", "decoder_relevancy", "yardstick", "encoder_floor")
MEMORY_STAGES = STAGES[:4]  # the floor is a measurement of time only


def picture():
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))


def own_model(folder: Path):
    """The transformers model itself, eager attention, as its class loads it (not through vizcap), and the
    input its own image processor makes of the picture."""
    import transformers

    kind = transformers.AutoConfig.from_pretrained(folder).model_type
    cls = transformers.BlipForConditionalGeneration if kind == "blip" else transformers.VisionEncoderDecoderModel
    pixels = transformers.AutoImageProcessor.from_pretrained(folder)(images=picture(), return_tensors="pt").pixel_values
    return cls.from_pretrained(folder, attn_implementation="eager").eval(), pixels


def yardstick(model, pixels, bos: int, tokens: list[int]) -> None:
    """Word by word: one forward pass teacher-forced on [bos; tokens[:-1]], one backward pass of that word's
    logit. Run as vizcap's relevancy runs (vizcap.explain.in_flushed_thread: denormals flushed in every torch
    thread), so the two compare the same arithmetic: unflushed, a random BLIP's backward pass is ~10× slower."""
    import torch

    from vizcap.explain import in_flushed_thread

    ids = torch.tensor([[bos, *tokens[:-1]]])
    text = {"input_ids": ids} if type(model).__name__.startswith("Blip") else {"decoder_input_ids": ids}

    def passes(report):
        for j, token in enumerate(tokens):
            model(pixel_values=pixels, **text).logits[0, j, token].backward()
            model.zero_grad(set_to_none=True)

    in_flushed_thread(passes)


def encoder_floor(cap, pixels, words: int) -> None:
    """vizcap's encoder forward once with its attention maps in the graph, then `words` backward passes from
    its output to all of them (each with its own random vector), in a flushed thread as relevancy runs."""
    import torch

    from vizcap.explain import in_flushed_thread
    from vizcap.hooks import capture

    def passes(report):
        with torch.enable_grad(), capture(keep_grad=True) as cache:
            memory = cap._encode(pixels)
        maps = [cache[n][0] for n in cache.names() if n.startswith("encoder.blocks.")]
        vectors = torch.randn(words, *memory.shape, generator=torch.Generator().manual_seed(0))
        for v in vectors:
            torch.autograd.grad(memory, maps, v, retain_graph=True, materialize_grads=True)

    in_flushed_thread(passes)


def stages(folder: Path, tokens: int) -> tuple[dict, dict]:
    """The four stages on one model folder, as callables, and what they ran on (the caption's words)."""
    import vizcap

    cap, img = vizcap.load(folder), picture()
    (model, pixels), exp = own_model(folder), cap.explain(img, max_tokens=tokens)

    def fresh(method):
        exp._relevancy = None  # nothing kept from the last call
        return exp.maps(method)

    run = {"explain": lambda: cap.explain(img, max_tokens=tokens), "relevancy": lambda: fresh("relevancy"),
           "decoder_relevancy": lambda: fresh("decoder_relevancy"),
           "yardstick": lambda: yardstick(model, pixels, cap.bos_id, exp.token_ids),
           "encoder_floor": lambda: encoder_floor(cap, cap.pixels(img), len(exp.tokens))}
    return run, {"words": len(exp.tokens), "token_ids": exp.token_ids, "bos": cap.bos_id,
                 "relevancy_batch": cap.relevancy_batch()}


# one stage in a fresh process: its peak resident memory (VmHWM) after loading, explaining and the stage
MEMORY_CHILD = CHILD_PRELUDE + r"""
import torch
torch.set_num_threads({threads})
transformers.logging.set_verbosity_error()
from benchmarks.relevancy import own_model, picture, yardstick
out = {{"imports_mb": hwm()}}
if {stage!r} == "yardstick":  # the transformers model alone, on the caption vizcap wrote
    model, pixels = own_model({folder!r}); out["after_load_mb"] = hwm()
    yardstick(model, pixels, {bos}, {token_ids})
else:
    import vizcap
    cap = vizcap.load({folder!r}); out["after_load_mb"] = hwm()
    exp = cap.explain(picture(), max_tokens={tokens}); out["after_explain_mb"] = hwm()
    if {stage!r} != "explain":
        exp.maps({stage!r})
out["peak_mb"] = hwm()
print(json.dumps(out))
"""


def peak_memory(folder: Path, stage: str, threads: int, tokens: int, info: dict) -> dict:
    child = MEMORY_CHILD.format(root=str(ROOT), folder=str(folder), stage=stage, threads=threads, tokens=tokens,
                                bos=info["bos"], token_ids=info["token_ids"])
    env = {**child_env(), "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{folder.name} {stage} memory child failed: {r.stderr.strip()[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--only", default=",".join(MODELS), metavar="NAMES", help=f"some of {', '.join(MODELS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny models of the same families: checks this script")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-stage peak memory processes")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where the JSON goes (default: {OUT.relative_to(ROOT)}; with --tiny, nowhere)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if not names or set(names) - set(MODELS):
        parser.error(f"--only takes some of {', '.join(MODELS)}")
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    command = "python benchmarks/relevancy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": command, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "threads": args.threads, "tiny": args.tiny, "bars": BARS, "load_average_start": list(os.getloadavg()),
               "models": {}}
    with tempfile.TemporaryDirectory(prefix="vizcap-relevancy-") as tmp:
        folders = {n: BUILDERS[n](Path(tmp) / n, tiny=args.tiny) for n in names}
        runs = {n: stages(folders[n], args.tokens) for n in names}
        samples = interleaved({f"{n}/{s}": runs[n][0][s] for n in names for s in STAGES}, args.repeats, warmup=1)
        for n in names:
            s, info = {stage: samples[f"{n}/{stage}"] for stage in STAGES}, runs[n][1]
            ratios = {"relevancy_over_yardstick": paired_ratio(s["relevancy"], s["yardstick"]),
                      "decoder_relevancy_over_explain": paired_ratio(s["decoder_relevancy"], s["explain"])}
            floor = paired_ratio(s["encoder_floor"], s["yardstick"])
            results["models"][n] = {
                "words": info["words"], "relevancy_batch": info["relevancy_batch"],
                **{f"{stage}_s": med(s[stage]) for stage in STAGES}, **ratios,
                "within_bars": {k: v <= BARS[k] for k, v in ratios.items()},
                "encoder_floor_over_yardstick": floor,
                "peak_mb": None if args.no_memory else
                {stage: peak_memory(folders[n], stage, args.threads, args.tokens, info) for stage in MEMORY_STAGES},
                "samples": s,
            }
    results["load_average_end"] = list(os.getloadavg())  # other work on the machine slows every figure
    for n in names:  # each model's entry says which run measured it, once runs are merged below
        results["models"][n].update(command=command, load_average=[results["load_average_start"],
                                                                    results["load_average_end"]])
    out = args.out if args.out is not None else (None if args.tiny else OUT)
    if out is not None and out.exists():
        results = merged(results, json.loads(out.read_text()))
    text = json.dumps(results, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")
    return 0


def merged(new: dict, old: dict) -> dict:
    """`new` with the models of `old` it did not measure kept (each entry naming the command and load of
    the run that measured it), so that `--only blip-base` adds BLIP's row without dropping ViT+GPT-2's."""
    models = dict(new["models"])
    for name, entry in old.get("models", {}).items():
        if name not in models:
            models[name] = {"command": old.get("command"),
                            "load_average": [old.get("load_average_start"), old.get("load_average_end")], **entry}
    return {**new, "models": models}


if __name__ == "__main__":
    sys.exit(main())
