"""The report: the machine, the table of figures against their targets, results.md and results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

from benchmarks.models import PEER_TOKENS
from benchmarks.timing import ms


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
        if "occlusion_ms_per_caption" in e:  # results written before occlusion existed lack it
            rows.append(("decoder relevancy (gradients stopped at the encoder), per token",
                         f"{e['decoder_relevancy_ms_per_token']:.1f} ms/token", "—", "—"))
            rows.append(("occlusion (every cell greyed, every word), per caption",
                         f"{e['occlusion_ms_per_caption']:.0f} ms/caption = {e['occlusion_vs_explain']:.1f}× explain "
                         f"({e['explain_ms_per_caption']:.0f} ms/caption; {e['model']})", "—", "—"))
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
        sh = t["shapes"]
        notes.append(f"Training: `python -m train shapes` ({sh['steps']} steps, batch {sh['batch']}, "
                     f"{sh['threads']} threads, scenes rendered first by {sh['workers']} processes), "
                     "samples/s from train_log.jsonl windows after the first 25 steps. Photo preset: "
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


def write_results(out: Path, res: dict, rows) -> Path:
    """results.md (the table and the machine) and results.json (every sample) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(res, rows))
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    return out
