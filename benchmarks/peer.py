"""2. vizcap explain vs Hugging Face VisionEncoderDecoderModel.generate(output_attentions=True) at
the default model's size and at ViT-B/16 + GPT-2 small size (random weights, T tokens), with the
single-step floor, where each side's time goes, and the encoders' costs."""

from __future__ import annotations

import time

import torch

from benchmarks.models import PEER_TOKENS, SMALL, forced_ids, hf_peer, scene_images, vit_kwargs, vizcap_vit
from benchmarks.timing import Instrument, interleaved, med, paired_ratio


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

    timer = Instrument()
    timer.patch(cap.model, "encode", "vizcap encoder")
    timer.patch(cap.model, "prefix", "vizcap mapper")
    timer.patch(cap.model.decoder, "forward", "vizcap decoder")
    timer.patch(CachedSteps, "__call__", "vizcap decoder")
    timer.patch(hf.encoder, "forward", "hf encoder")
    timer.patch(hf.decoder, "forward", "hf decoder")
    runs = []
    try:
        for _ in range(repeats):
            for side, fn in (("vizcap", run_vizcap), ("hf", run_hf)):
                timer.calls.clear()
                t0 = time.perf_counter()
                fn()
                total = time.perf_counter() - t0
                enc = timer.total(f"{side} encoder") + timer.total(f"{side} mapper")
                dec = timer.calls[f"{side} decoder"]
                runs.append((side, {"encoder (+ mapper)": enc, "first decoder pass": dec[0],
                                    "later steps": sum(dec[1:]), "rest": total - enc - sum(dec), "total": total}))
    finally:
        timer.undo()
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
