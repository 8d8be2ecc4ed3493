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

Timing never goes into unit tests: this script is the only place where vizcap is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # fabricate.py, for the photo preset's tiny dataset
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SECTIONS = ("explain", "peer", "app", "train", "memory", "scaling", "hub", "gpu")
HELDOUT = 2_000_000_000  # train/shapes.py HELDOUT_FIRST_SEED: scenes the shipped model never saw
PEER_TOKENS = 20


# ------------------------------------------------------------------------------------------------
# timing


def interleaved(variants: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant, `repeats` samples each. Within a repeat every variant runs
    once, in an order that is reversed on every other repeat."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    samples = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            variants[n]()
            samples[n].append(time.perf_counter() - t0)
    return samples


def med(xs) -> float:
    return float(statistics.median(xs))


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repeats of a[i] / b[i] (the pair was measured in the same repeat)."""
    return med([x / y for x, y in zip(a, b)])


def ms(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 10 else f"{x:.1f} s"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------------------
# models


def shipped_or_random():
    """The shipped checkpoint, or (while it is not trained yet) the default config, random weights."""
    import vizcap
    from vizcap.captioner import DEFAULT_CHECKPOINT

    if (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        return vizcap.load(), "shipped checkpoint"
    from train.shapes import default_config
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    torch.manual_seed(0)
    return Captioner(CaptionModel(default_config(tok)).eval(), tok), "default config, RANDOM weights (no shipped model)"


def vit_kwargs(img: int, width: int, depth: int, heads: int, patch: int = 16) -> dict:
    return dict(img_size=img, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads)


# The default model's encoder is MobileNetV3-small (timm mobilenetv3_small_100, feature stage 3) at
# 128 px: an 8×8 grid of 48 channels, 36.5 MFLOPs per image (torch.utils.flop_counter). The ViT that
# stands in for it on both sides of the peer comparison has the same 8×8 grid (128 px, patch 16) and
# about the same FLOPs: width 96, depth 2, 4 heads, MLP 384 -> 38.2 MFLOPs.
SMALL = dict(name="default size", image=128, vit=dict(width=96, depth=2, heads=4), d=128, layers=2, heads=4,
             vocab=None, positions=64, n_prefix=6, mapper_layers=0)
# ViT-B/16 at 224 px (14×14 grid, 768 wide, 12 layers, 12 heads) + GPT-2 small (768 wide, 12 layers, 12 heads,
# 50257 tokens, 1024 positions); vizcap's mapper as the photo presets make it (10 prefix tokens, 2 layers).
BASE = dict(name="ViT-B/16 + GPT-2 small", image=224, vit=dict(width=768, depth=12, heads=12), d=768, layers=12,
            heads=12, vocab=50257, positions=1024, n_prefix=10, mapper_layers=2)


def word_tokenizer(vocab: int | None):
    """The ShapeScenes word tokenizer (vocab None), or a stand-in word-level tokenizer of `vocab` ids
    whose last id is GPT-2's <|endoftext|> (bos = eos = pad), for a GPT-2-sized vocabulary."""
    from tokenizers import Tokenizer, models

    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    if vocab is None:
        return CaptionTokenizer.word_level(VOCABULARY)
    eot = "<|endoftext|>"
    words = {f"w{i}": i for i in range(vocab - 1)}
    words[eot] = vocab - 1
    return CaptionTokenizer(Tokenizer(models.WordLevel(vocab=words, unk_token=eot)), pad=eot, bos=eot, eos=eot)


def vizcap_vit(size: dict, image: int | None = None, seed: int = 0):
    """A vizcap Captioner with a timm ViT encoder of `size` (random weights)."""
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel

    tok = word_tokenizer(size["vocab"])
    image = image or size["image"]
    v = size["vit"]
    cfg = CaptionerConfig(
        encoder="vit_base_patch16_224", encoder_kwargs=vit_kwargs(image, v["width"], v["depth"], v["heads"]),
        feature_index=None, image_size=image, d_model=size["d"], n_prefix=size["n_prefix"],
        mapper_heads=size["heads"], mapper_layers=size["mapper_layers"], decoder_layers=size["layers"],
        decoder_heads=size["heads"], max_positions=size["positions"], vocab_size=tok.vocab_size,
        bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, mode="both")
    torch.manual_seed(seed)
    return Captioner(CaptionModel(cfg).eval(), tok)


def hf_peer(size: dict, vocab: int, ids: dict):
    """transformers VisionEncoderDecoderModel (ViTModel + GPT2LMHeadModel with cross-attention) of
    `size`, random weights, eager attention everywhere (so that attention weights exist)."""
    import transformers
    from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    v = size["vit"]
    enc = ViTConfig(image_size=size["image"], patch_size=16, hidden_size=v["width"], num_hidden_layers=v["depth"],
                    num_attention_heads=v["heads"], intermediate_size=4 * v["width"], layer_norm_eps=1e-6)
    dec = GPT2Config(vocab_size=vocab, n_positions=size["positions"], n_embd=size["d"], n_layer=size["layers"],
                     n_head=size["heads"], add_cross_attention=True, is_decoder=True, bos_token_id=ids["bos"],
                     eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = ids["bos"], ids["pad"], ids["eos"]
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        torch.manual_seed(0)
        model = VisionEncoderDecoderModel._from_config(cfg, attn_implementation="eager").eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model


def scene_images(n: int, seed0: int = HELDOUT):
    from vizcap.scenes import render_scene

    return [render_scene(seed0 + k).image for k in range(n)]


def forced_ids(captioner, T: int, seed: int = 0) -> list[int]:
    """T token ids that are never a special token: the model is made to read a T-word caption."""
    cfg = captioner.cfg
    specials = {cfg.bos_id, cfg.eos_id, cfg.pad_id}
    pool = [i for i in range(cfg.vocab_size) if i not in specials]
    g = np.random.default_rng(seed)
    return [int(x) for x in g.choice(pool, size=T)]


# ------------------------------------------------------------------------------------------------
# 1. explain ÷ caption


def bench_explain(args) -> dict:
    from vizcap.explain import explain

    cap, what = shipped_or_random()
    candidates = scene_images(args.n_images * 2)
    images, lengths = [], []
    for img in candidates:  # greedy is greedy: both decoders must write the very same tokens
        tokens, _ = cap.generate_greedy(cap.pixels([img]))
        exp = cap.explain(img)
        same = tokens[0] == exp.token_ids + ([cap.cfg.eos_id] if exp.ended else [])
        if same and len(images) < args.n_images:
            images.append(img)
            lengths.append(len(tokens[0]))
    if not images:
        raise RuntimeError("explain and caption disagree on every image: their greedy decoders differ")
    steps = sum(lengths)  # decoder steps per pass over the images (the <eos> step included)

    def caption_all():
        for img in images:
            cap.caption(img)

    def explain_all():
        for img in images:
            cap.explain(img)

    s = interleaved({"caption": caption_all, "explain": explain_all}, args.repeats, warmup=2)
    ratio = paired_ratio(s["explain"], s["caption"])

    exps = [cap.explain(img) for img in images]
    n_words = sum(len(e) for e in exps)

    def relevancy_all():
        for e in exps:
            e._relevancy = None  # computed on first use and kept: start afresh every time
            e.maps("relevancy")

    r = interleaved({"explain": explain_all, "relevancy": relevancy_all}, max(3, args.repeats // 2), warmup=1)
    return {
        "model": what,
        "images": len(images),
        "decoder_steps": steps,
        "caption_s": med(s["caption"]),
        "explain_s": med(s["explain"]),
        "ratio": ratio,
        "explain_ms_per_token": med(s["explain"]) / steps * 1e3,
        "caption_ms_per_token": med(s["caption"]) / steps * 1e3,
        "relevancy_ms_per_token": med(r["relevancy"]) / n_words * 1e3,
        "relevancy_vs_explain": paired_ratio(r["relevancy"], r["explain"]),
        "samples": {"first": s, "relevancy": r},
        "words": n_words,
    }


# ------------------------------------------------------------------------------------------------
# 2. the Hugging Face peer


def bench_peer(size: dict, repeats: int, T: int = PEER_TOKENS) -> dict:
    from vizcap.explain import explain

    cap = vizcap_vit(size)
    cfg = cap.cfg
    ids = {"bos": cfg.bos_id, "eos": cfg.eos_id, "pad": cfg.pad_id}
    hf = hf_peer(size, cfg.vocab_size, ids)
    img = scene_images(1)[0]
    pixels = cap.pixels([img])  # the same normalised input for the peer (its preprocessing is not timed)
    forced = forced_ids(cap, T)

    def run_vizcap():
        return explain(cap, img, forced=forced)

    def run_hf():
        with torch.inference_mode():
            return hf.generate(pixel_values=pixels, max_new_tokens=T, min_new_tokens=T, do_sample=False, num_beams=1,
                               output_attentions=True, return_dict_in_generate=True, eos_token_id=None)

    e, out = run_vizcap(), run_hf()
    assert len(e.tokens) == T, len(e.tokens)
    assert out.sequences.shape[1] == T + 1, out.sequences.shape  # decoder start + T new tokens
    s = interleaved({"vizcap": run_vizcap, "hf": run_hf}, repeats, warmup=1)
    n_params = {"vizcap": sum(p.numel() for p in cap.model.parameters()),
                "hf": sum(p.numel() for p in hf.parameters())}
    phases = peer_phases(cap, hf, run_vizcap, run_hf)
    floor = step_floor(cap, repeats=max(5, repeats))
    # No implementation can beat: the faster of the two encoders, then T decoder passes that each read
    # every weight matrix at least once. The best speed-up any fp32 vizcap could show over this peer:
    best = phases["hf"]["total"] / (min(phases["vizcap"]["encoder (+ mapper)"], phases["hf"]["encoder (+ mapper)"])
                                    + T * floor["s"])
    return {
        "size": size["name"], "tokens": T, "vizcap_s": med(s["vizcap"]), "hf_s": med(s["hf"]),
        "speedup": paired_ratio(s["hf"], s["vizcap"]), "params": n_params, "grid": list(cap.grid),
        "phases": phases, "step_floor": floor, "best_possible_speedup": best, "samples": s,
    }


def step_floor(cap, repeats: int) -> dict:
    """The least time one decoder step can take: one token's activations multiplied by every weight
    matrix a step uses (self-attention, cross-attention query and output, MLP, the LM head), and
    nothing else. For big models that is reading the weights from memory once (memory bandwidth)."""
    import torch.nn.functional as F

    decoder = cap.model.decoder
    mats = [m for n, m in decoder.named_modules()
            if type(m).__name__ == "Conv1D" and not n.endswith("crossattention.c_attn")]  # K/V of the image: once
    head = decoder.lm_head.weight.detach()
    xs = {m.weight.shape[0]: torch.randn(1, m.weight.shape[0]) for m in mats}
    x = torch.randn(1, head.shape[1])

    def one_step():
        with torch.inference_mode():
            for m in mats:
                torch.addmm(m.bias, xs[m.weight.shape[0]], m.weight)
            F.linear(x, head)

    nbytes = sum(m.weight.numel() + m.bias.numel() for m in mats) * 4 + head.numel() * 4
    times = interleaved({"floor": one_step}, repeats, warmup=2)["floor"]
    big = torch.ones(64 * 1024 * 1024)  # 256 MiB: far bigger than any cache
    sweep = interleaved({"sum": lambda: big.sum()}, 5, warmup=1)["sum"]
    return {"s": med(times), "weight_bytes": nbytes, "gb_per_s": nbytes / med(times) / 1e9,
            "memory_read_gb_per_s": big.numel() * 4 / med(sweep) / 1e9}


def peer_phases(cap, hf, run_vizcap, run_hf, repeats: int = 3) -> dict:
    """Where each side's time goes (separate instrumented runs, after the timed ones): encoder,
    first decoder pass, the other T - 1 steps, the rest."""
    from vizcap.decoding import CachedSteps

    acc: dict[str, list[float]] = {}
    patched = []

    def instrument(owner, attr, label):
        fn = getattr(owner, attr)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc.setdefault(label, []).append(time.perf_counter() - t0)

        patched.append((owner, attr, fn))
        setattr(owner, attr, wrapper)

    instrument(cap.model, "encode", "vizcap encoder")
    instrument(cap.model, "prefix", "vizcap mapper")
    instrument(cap.model.decoder, "forward", "vizcap decoder")
    instrument(CachedSteps, "__call__", "vizcap decoder")
    instrument(hf.encoder, "forward", "hf encoder")
    instrument(hf.decoder, "forward", "hf decoder")
    runs = []
    try:
        for _ in range(repeats):
            for side, fn in (("vizcap", run_vizcap), ("hf", run_hf)):
                acc.clear()
                t0 = time.perf_counter()
                fn()
                total = time.perf_counter() - t0
                enc = sum(acc.get(f"{side} encoder", [])) + sum(acc.get(f"{side} mapper", []))
                dec = acc[f"{side} decoder"]
                runs.append((side, {"encoder (+ mapper)": enc, "first decoder pass": dec[0],
                                    "later steps": sum(dec[1:]), "rest": total - enc - sum(dec), "total": total}))
    finally:
        for owner, attr, fn in reversed(patched):
            setattr(owner, attr, fn)
    return {side: {k: med([r[k] for s_, r in runs if s_ == side]) for k in runs[0][1]} for side in ("vizcap", "hf")}


def encoder_costs(repeats: int) -> dict:
    """The default model's encoder and its ViT stand-in (peer, default size): time and FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from vizcap.model import CaptionerConfig, Encoder

    v = SMALL["vit"]
    encs = {
        "mobilenetv3_small_100 stage 3": Encoder(CaptionerConfig()).eval(),
        "ViT 96w×2 layers, patch 16": Encoder(CaptionerConfig(
            encoder="vit_base_patch16_224", encoder_kwargs=vit_kwargs(128, v["width"], v["depth"], v["heads"]),
            feature_index=None)).eval(),
    }
    x = torch.randn(1, 3, 128, 128)
    out = {}
    for name, e in encs.items():
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            y = e(x)
        out[name] = {"mflops": fc.get_total_flops() / 1e6, "grid_tokens": y.shape[1], "width": y.shape[2]}

    def timed(e):
        def f():
            with torch.inference_mode():
                e(x)
        return f

    s = interleaved({n: timed(e) for n, e in encs.items()}, repeats * 4, warmup=3)
    for n in encs:
        out[n]["ms"] = med(s[n]) * 1e3
    return out


# ------------------------------------------------------------------------------------------------
# 3. the app (Streamlit AppTest, the explorer page)


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
    page = ROOT / "pages" / "explorer.py"
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
    # where a re-render's time goes: vizcap.figures builders, Explanation.maps, pages.common.show
    spent: dict[str, float] = {}
    measuring, depth = [False], [0]
    patched: list[tuple[object, str, object]] = []

    def instrument(owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def wrapper(*a, **k):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                if depth[0] == 0 and measuring[0]:  # outermost call only: nothing is counted twice
                    spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0

        patched.append((owner, attr, fn))
        setattr(owner, attr, wrapper)

    for name in dir(figures_module):
        fn = getattr(figures_module, name)
        if not name.startswith("_") and callable(fn) and getattr(fn, "__module__", "") == figures_module.__name__:
            instrument(figures_module, name, "vizcap.figures")
    instrument(Explanation, "maps", "Explanation.maps")
    cwd = os.getcwd()
    os.chdir(ROOT)  # pages import `pages.common`; .streamlit/config.toml is read from here
    try:
        at = AppTest.from_file(str(page), default_timeout=600)
        at.run()
        if at.exception:
            raise RuntimeError(f"the explorer page failed: {at.exception[0].message}")
        import pages.common as page_common  # imported by the page's first run

        instrument(page_common, "show", "st.plotly_chart (pages.common.show)")
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
            measuring[0] = r > 0  # the first change is the warm-up
            t0 = time.perf_counter()
            at.run()
            dt = time.perf_counter() - t0
            measuring[0] = False
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
        return {
            "page": "pages/explorer.py",
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
        for owner, attr, fn in reversed(patched):
            setattr(owner, attr, fn)
        os.chdir(cwd)


# ------------------------------------------------------------------------------------------------
# 4. training throughput (subprocesses, as a user runs them)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _train(argv: list[str], out: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "train", *argv], cwd=str(ROOT), env=_env(), capture_output=True,
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
    res["shapes"] = {"samples_per_s": med(later), "windows": r["rates"], "steps": steps, "batch": 32,
                     "threads": 2, "workers": 1, "wall_s": r["wall_s"]}

    # The photo preset on fabricated images (tests/fabricate.py): a frozen random ViT-S/16 at 224 px
    # and the tiny random GPT-2, with and without the feature cache. Alternated run by run.
    from fabricate import fabricate

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


# ------------------------------------------------------------------------------------------------
# 5. memory (a fresh process each)

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
MEMORY_CHILD = CHILD_PRELUDE + r"""
sys.path.insert(0, {benchdir!r})
import run as bench
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
        code = MEMORY_CHILD.format(root=str(ROOT), benchdir=str(Path(__file__).parent), which=which)
        r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"memory child {which} failed: {r.stderr.strip()[-800:]}")
        out[which] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------------------------------------
# 6. a real Hugging Face captioner's shape: ViT-B/16 + GPT-2 small through vizcap.load


def save_hf_vit_gpt2(directory: Path) -> Path:
    """A VisionEncoderDecoderModel with nlpconnect/vit-gpt2-image-captioning's shapes (ViT-B/16 at 224,
    GPT-2 small with cross-attention, 50257 tokens, start = eos = pad = <|endoftext|>, no crop,
    mean/std 0.5), random weights, saved as a hub folder: config, safetensors, processor, tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (GPT2Config, GPT2TokenizerFast, ViTConfig, ViTImageProcessor, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    eot = "<|endoftext|>"
    vocab = {f"w{i}": i for i in range(50256)}
    vocab[eot] = 50256
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token=eot))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = GPT2TokenizerFast(tokenizer_object=word_level, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot)
    enc = ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072)
    dec = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, add_cross_attention=True,
                     is_decoder=True, bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = cfg.pad_token_id = cfg.eos_token_id = 50256
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        torch.manual_seed(0)
        model = VisionEncoderDecoderModel(cfg)
        model.save_pretrained(directory)
    finally:
        transformers.logging.set_verbosity(verbosity)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


HUB_CHILD = CHILD_PRELUDE + r"""
base = hwm()
import vizcap
from vizcap.scenes import render_scene
cap = vizcap.load({folder!r})
e = cap.explain(render_scene({seed}).image, max_tokens={T})
e.maps("cross_attention"); e.maps("rollout")
print(json.dumps({{"imports_mb": base, "peak_mb": hwm(), "tokens": len(e.tokens)}}))
"""


def bench_hub(args, tmp: Path, T: int = PEER_TOKENS) -> dict:
    """vizcap on a Hugging Face model against that model's own generate(), same image, same T tokens."""
    import vizcap

    folder = save_hf_vit_gpt2(tmp / "vit-gpt2-base")
    cap = vizcap.load(folder)
    hf = cap.model
    img = scene_images(1)[0]
    pixels = cap.pixels(img)

    def explain_all():
        e = cap.explain(img, max_tokens=T)
        e.maps("cross_attention")
        e.maps("rollout")
        return e

    def generate(attentions: bool):
        with torch.inference_mode():
            return hf.generate(pixel_values=pixels, max_new_tokens=T, min_new_tokens=T, do_sample=False, num_beams=1,
                               output_attentions=attentions, return_dict_in_generate=True)

    e, plain, full = explain_all(), generate(False), generate(True)
    assert len(e.tokens) == T and plain.sequences.shape[1] == T + 1, (len(e.tokens), plain.sequences.shape)
    assert e.token_ids == plain.sequences[0, 1:].tolist()  # the very caption the model's own generate() writes
    assert full.cross_attentions is not None and len(full.cross_attentions) == T
    repeats = 3 if args.quick else 7
    s = interleaved({"vizcap": explain_all, "hf": lambda: generate(False), "hf_attn": lambda: generate(True)},
                    repeats, warmup=1)
    child = HUB_CHILD.format(root=str(ROOT), folder=str(folder), seed=HELDOUT, T=T)
    r = subprocess.run([sys.executable, "-c", child], env=_env(), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"hub memory child failed: {r.stderr.strip()[-800:]}")
    memory = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tokens": T, "vizcap_s": med(s["vizcap"]), "hf_s": med(s["hf"]), "hf_attn_s": med(s["hf_attn"]),
            "ratio_vs_generate": paired_ratio(s["vizcap"], s["hf"]),
            "ratio_vs_generate_attentions": paired_ratio(s["vizcap"], s["hf_attn"]),
            "params": sum(p.numel() for p in hf.parameters()), "memory": memory, "samples": s}


# ------------------------------------------------------------------------------------------------
# 7. scaling


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


# ------------------------------------------------------------------------------------------------
# 8. GPU


def bench_gpu(args) -> dict:
    if not torch.cuda.is_available():
        return {"available": False, "note": "no GPU available"}
    return {"available": True, "device": torch.cuda.get_device_name(0),
            "note": "a GPU is present; this script measures the CPU (the laptop case) only"}


# ------------------------------------------------------------------------------------------------
# report


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import timm
    import transformers

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "memory_gib": mem,
            "platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "timm": timm.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def table(res: dict) -> list[tuple[str, str, str, str]]:
    """(what, figure, target, verdict) rows."""
    rows = []

    def ok(good: bool) -> str:
        return "met" if good else "NOT met"

    e = res.get("explain")
    if e:
        rows.append(("explain ÷ caption, same images and tokens, every map captured",
                     f"{e['ratio']:.2f} ({ms(e['explain_s'])} vs {ms(e['caption_s'])} for {e['images']} images, "
                     f"{e['decoder_steps']} decoder steps; {e['model']})", "≤ 1.10", ok(e["ratio"] <= 1.10)))
        rows.append(("gradient relevancy, per token", f"{e['relevancy_ms_per_token']:.1f} ms/token "
                     f"(explain: {e['explain_ms_per_token']:.2f} ms/token)", "—", "—"))
    for p in res.get("peer", []):
        f = p.get("step_floor")
        bound = "" if not f else (
            f"; a decoder step cannot take less than {ms(f['s'])} (its {f['weight_bytes'] / 1e6:.0f} MB of weights "
            f"read once, {f['gb_per_s']:.0f} GB/s; memory reads {f['memory_read_gb_per_s']:.0f} GB/s), so no fp32 "
            f"implementation can be more than {p['best_possible_speedup']:.2f}× faster than this peer here")
        rows.append((f"vizcap explain vs HF generate(output_attentions), {p['size']}, {p['tokens']} tokens",
                     f"speed-up {p['speedup']:.2f}× (HF {ms(p['hf_s'])} ÷ vizcap {ms(p['vizcap_s'])}){bound}",
                     "≥ 1.5×", ok(p["speedup"] >= 1.5)))
    a = res.get("app")
    if a and "error" in a:
        rows.append(("app: display-only change re-render ÷ explain", f"not measured: {a['error']}", "≤ 0.10", "—"))
    elif a:
        for which, name in (("default", "default model"), ("base", "ViT-B/16 + GPT-2 size")):
            x = a[which]
            rows.append((f"app ({name}): display-only widget change, re-render ÷ explain",
                         f"{x['ratio']:.2f} ({ms(x['rerun_s'])} vs explain {ms(x['explain_s_reference'])}); "
                         f"model calls {x['model_calls_during_changes']}; figures sent "
                         f"{x['figure_json_bytes'] / 1024:.0f} KB; a one-slider page re-runs in "
                         f"{ms(x['one_slider_page_rerun_s'])}", "≤ 0.10, 0 calls",
                         ok(x["ratio"] <= 0.10 and x["model_calls_during_changes"] == 0)))
    t = res.get("train")
    if t:
        rows.append(("train shapes (CPU), samples/s", f"{t['shapes']['samples_per_s']:.1f}", "—", "—"))
        ph = t["photos"]
        rows.append(("photo preset, frozen ViT-S/16 224 px: samples/s without / with feature cache",
                     f"{ph['no cache']['samples_per_s']:.1f} / {ph['feature cache']['samples_per_s']:.1f} "
                     f"({ph['feature cache']['samples_per_s'] / ph['no cache']['samples_per_s']:.1f}×); whole run "
                     f"{ph['no cache']['wall_s']:.0f} s / {ph['feature cache']['wall_s']:.0f} s", "—", "—"))
    m = res.get("memory")
    if m:
        rows.append(("peak RSS: load default model + one explain", f"{m['default']['peak_mb']:.0f} MB "
                     f"(imports alone {m['default']['imports_mb']:.0f} MB)", "—", "—"))
        rows.append(("peak RSS: ViT-B/16 + GPT-2 small size + one explain", f"{m['base']['peak_mb']:.0f} MB "
                     f"(imports alone {m['base']['imports_mb']:.0f} MB)", "—", "—"))
    s = res.get("scaling")
    if s:
        tk = s["tokens"]
        rows.append(("explain vs caption length 10 / 20 / 40 tokens (forced)",
                     " / ".join(ms(tk[k]["s"]) for k in ("10", "20", "40"))
                     + f"; per token at 40 ÷ at 10 = {s['per_token_ratio_40_vs_10']:.2f}; marginal "
                     f"{s['marginal_ms_per_token']['10-20']:.2f} → {s['marginal_ms_per_token']['20-40']:.2f} ms/token",
                     "near-linear", ok(s["marginal_ms_per_token"]["20-40"] <= 1.25 * s["marginal_ms_per_token"]["10-20"])))
        g = s["grid"]
        rows.append(("explain vs grid 7×7 / 14×14 / 24×24 (20 tokens)",
                     " / ".join(f"{ms(g[k]['explain_s'])} (encoder {ms(g[k]['encode_s'])})" for k in ("7", "14", "24"))
                     + f"; 24×24 ÷ 7×7 = {s['grid_ratio_24_vs_7']:.2f}", "—", "—"))
    h = res.get("hub")
    if h:
        what = f"HF ViT-B/16 + GPT-2 through vizcap.load ({h['params'] / 1e6:.0f} M params, {h['tokens']} tokens)"
        rows.append((f"{what}: vizcap explain (all maps) ÷ HF generate without attentions",
                     f"{h['ratio_vs_generate']:.2f} ({ms(h['vizcap_s'])} vs {ms(h['hf_s'])})", "≤ 1.10",
                     ok(h["ratio_vs_generate"] <= 1.10)))
        rows.append((f"{what}: vizcap explain (all maps) ÷ HF generate(output_attentions=True)",
                     f"{h['ratio_vs_generate_attentions']:.2f} ({ms(h['vizcap_s'])} vs {ms(h['hf_attn_s'])})", "≤ 1.0",
                     ok(h["ratio_vs_generate_attentions"] <= 1.0)))
        rows.append(("peak RSS: open that HF model with vizcap.load + one explain",
                     f"{h['memory']['peak_mb']:.0f} MB (imports alone {h['memory']['imports_mb']:.0f} MB)", "—", "—"))
    gpu = res.get("gpu")
    if gpu:
        rows.append(("GPU", gpu["note"], "—", "—"))
    return rows


def markdown(res: dict, rows) -> str:
    m = res["machine"]
    lines = [
        "# vizcap benchmarks",
        "",
        f"Measured {res['date']} with `python benchmarks/run.py{' --quick' if res['quick'] else ''}` "
        f"({res['seconds']:.0f} s). Every pair was measured side by side in this one run: alternately within each "
        "repeat (order flipped every repeat), after warm-up; figures are medians over repeats, ratios the median "
        "of per-repeat ratios.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, GPU: {m['gpu']}; {m['platform']}; "
        f"Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), transformers {m['transformers']}, "
        f"timm {m['timm']}. Load average (1/5/15 min) at start {res['load_start']}, at end {res['load_end']} "
        "(other jobs may share the machine).",
        "",
        "| what | measured | target | |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    notes = []
    if "peer" in res:
        notes.append(
            "Peer: `transformers.VisionEncoderDecoderModel` (ViTModel + GPT2LMHeadModel with cross-attention, eager "
            "attention, random weights), `generate(output_attentions=True, return_dict_in_generate=True)`, greedy, "
            f"min_new_tokens = max_new_tokens = {PEER_TOKENS}, eos disabled; vizcap: `explain(..., forced=ids)` "
            f"({PEER_TOKENS} tokens, every map captured and assembled, top-10 alternatives) on a vizcap CaptionModel "
            "with a timm ViT encoder of the same dimensions (mode both). Default size: a ViT with the default "
            "model's 8×8 grid (128 px, patch 16) and about its encoder's FLOPs (width 96, depth 2, 4 heads: "
            "38.2 MFLOPs vs 36.5 for MobileNetV3-small stage 3), GPT-2 128 wide, 2 layers, 4 heads, 33 tokens, "
            "6 prefix tokens. ViT-B/16 size: 224 px, 768 wide, 12 layers, 12 heads + GPT-2 small (50257 tokens), "
            "10 prefix tokens and 2 mapper layers as in the photo presets. vizcap's time includes its image "
            "preprocessing; the peer gets ready-made pixel values.")
    for p in res.get("peer", []):
        notes.append(f"Peer, {p['size']}, where the time goes (instrumented runs): " + "; ".join(
            f"{side}: " + ", ".join(f"{k} {ms(v)}" for k, v in p["phases"][side].items()) for side in ("vizcap", "hf")))
    enc = res.get("encoder_costs")
    if enc:
        notes.append("Encoder stand-in: " + "; ".join(
            f"{n}: {v['mflops']:.1f} MFLOPs, {v['grid_tokens']} cells × {v['width']}, {v['ms']:.2f} ms"
            for n, v in enc.items()) + " (one 128 px image).")
    if "app" in res and "error" not in res["app"]:
        for which, x in res["app"].items():
            notes.append(
                f"App ({x['checkpoint']}): Streamlit AppTest of {x['page']}; after the first run (which explained "
                f"once, {ms(x['explain_s_in_app'])}), the {x['widgets']} were changed and at.run() timed; median "
                f"re-render opacity {ms(x['rerun_by_widget']['opacity'])}, word {ms(x['rerun_by_widget']['word'])}; "
                "of a re-render, " + ", ".join(f"{k} {ms(v)}" for k, v in x["rerun_breakdown_s"].items())
                + f"; plotly JSON sent per re-render {x['figure_json_bytes'] / 1024:.0f} KB. A page holding one "
                f"slider re-runs in {ms(x['one_slider_page_rerun_s'])} under AppTest: no re-render is cheaper "
                "than that. Model calls counted by wrapping vizcap.Captioner.explain and CaptionModel.encode.")
    if "train" in res:
        t = res["train"]
        notes.append(f"Training: `python -m train shapes` ({t['shapes']['steps']} steps, batch 32, 2 threads, 1 "
                     "render worker), samples/s from train_log.jsonl windows after the first 25 steps. Photo preset: "
                     + t["photos"]["setup"] + ".")
    if "memory" in res:
        notes.append("Memory: VmHWM of a fresh Python process that imports torch/timm/transformers, loads the model "
                     "and explains one image (the default model: " + res["memory"]["default"]["what"] + "; "
                     "ViT-B/16 + GPT-2 small: random weights, 20 forced tokens).")
    if "scaling" in res:
        notes.append("Scaling: tokens on the " + res["scaling"]["model"] + " with forced captions of random words; "
                     "grid: " + res["scaling"]["grid_encoder"] + ".")
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return "\n".join(lines) + "\n"


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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(res, rows))
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
