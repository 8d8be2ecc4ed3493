"""The `vizcap` command line (also `python -m vizcap`).

    vizcap caption PATH... [--checkpoint DIR] [--fast] [--strategy greedy|beam|sample] [--beams N]
                   [--top-k K] [--top-p P] [--temperature T] [--length-penalty L] [--seed S]
                   [--max-tokens N] [--maps M1,M2,...|all] [--normalize none|max|sum|global] [--layer L] [--head H]
                   [--export DIR] [--html OUT] [--json]
    vizcap eval [--checkpoint DIR] [--n N] [--curves-n N] [--rank-n N] [--orders K] [--independent] [--hard]
                [--methods M1,M2,...|all] [--out DIR] [--json]
    vizcap decoding [--checkpoint NAME|DIR] [--n N] [--draws N] [--beams N] [--independent] [--out DIR] [--json]
    vizcap web DIR [--checkpoint NAME|DIR ...]

caption: with --json, exactly one JSON object per input on its own line, in input order; a failed
input gets {"image": ..., "error": ...} and the others are still processed. Exit status: 0 if every
input was captioned, 2 if any failed or the arguments or the checkpoint were bad. Never a traceback.

eval: writes trust.json (the figures the app's "Training & trust" page shows, with the command that made
them) and trust_scenes.jsonl (one line of measurements per scene, from which every figure is recomputed)
into --out, by default the checkpoint directory.

decoding: how much greedy, beam search and sampling differ on held-out scenes of two or three objects
(vizcap.spread); writes decoding.json (figures and every scene's captions) into --out, by default the
checkpoint directory; with --independent, on scenes of the independent renderer, into decoding_independent.json.

web: the ShapeScenes explorer as a static site in DIR that runs the model(s) in the browser with ONNX
Runtime Web (vizcap/web.py); serve DIR with any static host (python -m http.server -d DIR, GitHub Pages).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, status 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from .strategies import STRATEGIES
    from .maps import METHODS, NORMALIZATIONS

    parser = _Parser(prog="vizcap", description="See where an image captioner looks while it writes each word.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cap = sub.add_parser("caption", help="caption images and explain every word")
    cap.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    cap.add_argument("--checkpoint", metavar="DIR|ID", default=None,
                     help="a shipped model's name (shapes: attention trained to point; shapes-free: attention left "
                          "free), a vizcap checkpoint directory, a Hugging Face ViT+GPT-2 / BLIP / GIT folder, or a hub id "
                          "such as nlpconnect/vit-gpt2-image-captioning (default: shapes)")
    cap.add_argument("--strategy", default="greedy", help=f"{' | '.join(STRATEGIES)} (default greedy)")
    cap.add_argument("--beams", type=_int, default=None, metavar="N", help="beam width (strategy beam; default 3)")
    cap.add_argument("--top-k", type=_int, default=0, metavar="K", help="sample only from the K likeliest words (0 = off)")
    cap.add_argument("--top-p", type=_float, default=1.0, metavar="P", help="nucleus sampling mass (1 = off)")
    cap.add_argument("--temperature", type=_float, default=1.0, metavar="T", help="sampling temperature (> 0)")
    cap.add_argument("--length-penalty", type=_float, default=None, metavar="L",
                     help="beam score = logp / length**L (default: the model's own, 1.0 unless its generation config says)")
    cap.add_argument("--early-stopping", default=None, metavar="RULE",
                     help="when beam search may stop: exact (default) | heuristic | first_k (Hugging Face's never / False / True)")
    cap.add_argument("--seed", type=_int, default=None, metavar="S", help="sampling seed (same seed, same caption)")
    cap.add_argument("--max-tokens", type=_int, default=None, metavar="N",
                     help="longest caption (default 20; a Hugging Face model: its generation config's length)")
    cap.add_argument("--maps", default="", metavar="M1,M2",
                     help=f"map methods to output: {', '.join(METHODS)}, or all (those the checkpoint has)")
    cap.add_argument("--normalize", default=None,
                     help=f"map scaling: {' | '.join(NORMALIZATIONS)} (default: none for the --json maps, raw values; "
                          "max for the --export pictures, as in the app, so every word's map uses the whole colour scale)")
    cap.add_argument("--layer", type=_int, default=None, metavar="L",
                     help="cross_attention / prefix maps of this decoder layer only (default: mean of all)")
    cap.add_argument("--head", type=_int, default=None, metavar="H",
                     help="cross_attention / prefix maps of this head only (default: mean of all)")
    cap.add_argument("--export", metavar="DIR", default=None, help="write PNG overlays, a GIF and JSON per image into DIR")
    cap.add_argument("--html", metavar="OUT", default=None,
                     help="write one self-contained interactive page per image (every word, every map method the "
                          "checkpoint has or those of --maps, with layers, heads and normalisations; opens offline): "
                          "OUT.html for one image; for several, OUT-NAME.html beside it, NAME the image's file name "
                          "without its suffix; an OUT not ending in .html is a folder: OUT/NAME.html")
    cap.add_argument("--fast", action="store_true",
                     help="fast mode for a big Hugging Face captioner on a CPU: its linear layers in int8; captions "
                          "and maps can differ slightly from float32, by the cost vizcap/fast_cost.json records "
                          "(python -m benchmarks.fast_mode); every record then says \"fast\": true")
    cap.add_argument("--json", action="store_true", help="one JSON object per input, one per line")

    ev = sub.add_parser("eval", help="caption metrics and heatmap trust metrics on held-out ShapeScenes")
    ev.add_argument("--checkpoint", metavar="DIR", default=None)
    ev.add_argument("--n", type=_int, default=100, metavar="N", help="held-out scenes (default 100)")
    ev.add_argument("--curves-n", type=_int, default=30, metavar="N", help="scenes for deletion/insertion and the sanity check")
    ev.add_argument("--rank-n", type=_int, default=30, metavar="N",
                    help="scenes for the top-k deletion/insertion test that ranks the maps against the object's own "
                         "box and random cells (colour and shape words, k = 1, 2, 4, 8; default 30; about 2 s a scene "
                         "on the shipped model, one thread)")
    ev.add_argument("--orders", type=_int, default=4, metavar="K",
                    help="random orders per word in the top-k test: its random baseline is their mean (default 4)")
    ev.add_argument("--independent", action="store_true",
                    help="also measure on N scenes of the independent renderer (stored under 'independent')")
    ev.add_argument("--hard", action="store_true",
                    help="also measure on N hard scenes (three small objects, large JPEG pictures) of ShapeScenes and, "
                         "with --independent, of the independent renderer (under 'hard', 'independent_hard'; no curves)")
    ev.add_argument("--methods", default="all", metavar="M1,M2",
                    help="map methods to measure (default all those the checkpoint has: " + ", ".join(METHODS)
                         + "; occlusion costs about two seconds per scene on the shipped model)")
    ev.add_argument("--out", metavar="DIR", default=None,
                    help="folder for trust.json and trust_scenes.jsonl, made if missing (default: the checkpoint directory)")
    ev.add_argument("--json", action="store_true", help="print trust.json's content as one JSON object")

    dec = sub.add_parser("decoding", help="how much decoding strategies differ on held-out ShapeScenes")
    dec.add_argument("--checkpoint", metavar="NAME|DIR", default=None, help="a shipped model's name or a vizcap "
                     "checkpoint directory (default: shapes)")
    dec.add_argument("--n", type=_int, default=200, metavar="N", help="held-out scenes with 2 or 3 objects (default 200)")
    dec.add_argument("--draws", type=_int, default=5, metavar="N", help="sampled captions per scene (default 5)")
    dec.add_argument("--beams", type=_int, default=5, metavar="N", help="beam width (default 5)")
    dec.add_argument("--independent", action="store_true", help="scenes of the independent renderer "
                     "(vizcap/independent_renderer.py) instead of held-out ShapeScenes; writes decoding_independent.json")
    dec.add_argument("--out", metavar="DIR", default=None, help="folder for decoding.json (default: the checkpoint's)")
    dec.add_argument("--json", action="store_true", help="print the figures as one JSON object")

    web = sub.add_parser("web", help="build the explorer as a static site that runs the model in the browser")
    web.add_argument("dir", metavar="DIR", help="the folder to write the site into (made if missing)")
    web.add_argument("--checkpoint", metavar="NAME|DIR", action="append", default=None,
                     help="a shipped model's name or a vizcap checkpoint directory; repeat for several "
                          "(default: every shipped model)")
    return parser


def _knobs(args) -> dict:
    """The decoding knobs as given, validated here, before any model is loaded (vizcap.decoding.validate);
    those left unset stay None: the model's own defaults fill them (ExplainAPI.decoding_params)."""
    from .strategies import validate

    knobs = dict(strategy=args.strategy, beams=3 if args.beams is None else args.beams, top_k=args.top_k,
                 top_p=args.top_p, temperature=args.temperature, length_penalty=args.length_penalty, seed=args.seed,
                 max_tokens=args.max_tokens, early_stopping=args.early_stopping)
    problems = validate({k: v for k, v in knobs.items() if v is not None})
    if problems:
        raise ValueError(problems[0])
    return knobs


def _methods(spec: str) -> tuple[str, ...]:
    from .maps import METHODS

    methods = tuple(m.strip() for m in spec.split(",") if m.strip())
    if methods == ("all",):
        return methods  # resolved in _caption once the checkpoint (and so its mode) is loaded
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown map method {unknown[0]!r}; choose from {', '.join(METHODS)} (or all)")
    return methods


def _export(exp, path: str, directory: Path, methods: tuple[str, ...], normalize: str, layer: int | None = None,
            head: int | None = None) -> None:
    """Per word a slide-ready PNG (the word, the overlay, a colour bar in the map's unit, how it was
    made), the caption as a GIF, and the JSON with the decoding settings and the view."""
    from .files import atomic_write
    from .maps import colour_range, layer_head, lookup
    from .notices import map_status
    from .render import caption_gif, labelled_overlay

    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "image"
    directory.mkdir(parents=True, exist_ok=True)
    method = methods[0] if methods else ("cross_attention" if exp.cross is not None else "prefix")
    per_head = lookup(method).per_layer_head
    maps = exp.maps(method, *layer_head(method, layer, head), normalize)
    vmax, unit = colour_range(maps, method, normalize)  # one colour scale for every word
    where = (f" · {'all layers (mean)' if layer is None else f'layer {layer}'} · "
             f"{'all heads (mean)' if head is None else f'head {head}'}") if per_head else ""
    status = map_status(exp._captioner, method) if exp._captioner is not None else None
    note = (f"{method.replace('_', ' ')}{where} · normalisation {normalize} · {exp.params.strategy} decoding"
            + (f" · {status}" if status else "") + (f" · fast ({exp.precision}) mode" if exp.fast else ""))
    for j, word in enumerate(exp.tokens):
        name = f"{stem}.{j:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', word)}.{method}.png"
        picture = labelled_overlay(exp.image, maps[j], word, unit, vmax, note=note)
        atomic_write(directory / name, lambda p, picture=picture: picture.save(p, "PNG"))
    gif = caption_gif(exp.image, exp.tokens, maps, vmax=vmax)
    atomic_write(directory / f"{stem}.{method}.gif", lambda p: Path(p).write_bytes(gif))
    record = exp.to_json(methods or (method,), normalize, layer=layer, head=head, image=Path(path).name)
    atomic_write(directory / f"{stem}.json", lambda p: Path(p).write_text(record))


class _HtmlTargets:
    """Where --html OUT puts each input's page: OUT itself for one input when it ends in .html (or .htm);
    OUT-NAME.html beside it for several; OUT/NAME.html when OUT is a folder (any other name). NAME is the
    image's file name without its suffix; a NAME met again for another file gets -2, -3, … ."""

    def __init__(self, out: str, n_inputs: int):
        self.out, self.n, self.taken = Path(out), n_inputs, {}

    def target(self, path: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "image"
        is_file = self.out.suffix.lower() in (".html", ".htm") and not self.out.is_dir()
        if is_file and self.n == 1:
            return self.out
        name, k = stem, 1
        while self.taken.get(name, path) != path:  # another file of the same name: keep both pages
            k += 1
            name = f"{stem}-{k}"
        self.taken[name] = path
        return self.out.with_name(f"{self.out.stem}-{name}{self.out.suffix}") if is_file else self.out / f"{name}.html"


def _caption(args) -> int:
    from . import ImageError, load
    from .strategies import STRATEGIES
    from .maps import METHODS, available, check_layer_head, check_normalize, layer_head
    from .notices import caption_notices, trained_maps

    # bad values and bad checkpoints raise ValueError / CheckpointError: main() prints one line, exit 2
    knobs = _knobs(args)
    methods = _methods(args.maps)
    for how in [args.normalize] if args.normalize is not None else []:
        check_normalize(how)
    json_normalize = args.normalize or "none"  # raw values in JSON; pictures use the app's default (max)
    progress = (lambda message: print(f"vizcap: {message}", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    captioner = load(args.checkpoint, progress=progress, fast=args.fast)
    if methods == ("all",):
        methods = available(captioner.mode)
    unsupported = [m for m in methods if captioner.mode not in METHODS[m].modes]
    if unsupported:
        print(f"vizcap: error: this checkpoint (mode {captioner.mode!r}) has no {unsupported[0]!r} maps", file=sys.stderr)
        return 2
    check_layer_head(args.layer, args.head, captioner.decoder_layers, captioner.decoder_heads)  # once, before any image
    unsupported = getattr(captioner, "unsupported_settings", None)
    if unsupported:  # a Hugging Face generation setting vizcap's decoding does not apply
        print(f"vizcap: note: this model's generation settings {', '.join(unsupported)} are not applied here, so "
              "its captions may differ from its generate()", file=sys.stderr, flush=True)
    params = captioner.decoding_params(**knobs)  # once, for every image
    trained = trained_maps(captioner)
    pages = _HtmlTargets(args.html, len(args.paths)) if args.html else None
    failed = 0
    for path in args.paths:
        try:
            exp = captioner.explain(path, params=params)
            record = {
                "image": path,
                "caption": exp.caption,
                "tokens": exp.tokens,
                "token_probs": [round(float(p), 6) for p in exp.probs],
                "grid": list(exp.grid),
                "maps": {m: exp.maps(m, *layer_head(m, args.layer, args.head), normalize=json_normalize).round(6).tolist()
                         for m in methods},
            }
            said = caption_notices(captioner, exp)  # a picture unlike the model's world; a caption ended at once
            if said:
                record["notice"] = " ".join(said)
            if exp.fast:  # the maps come from int8 layers: the notice gives the measured cost
                record.update(fast=True, precision=exp.precision)
            if trained is not None:  # which maps a loss pulled onto the objects: those are not evidence
                record.update(attention_trained=bool(trained), trained_maps=list(trained))
            if exp.n_extra and exp.extra_attention is not None:  # the encoder's class token(s): their share, apart from the maps
                record["class_token_share"] = exp.extra_share(args.layer, args.head).round(6).tolist()
            if STRATEGIES[params.strategy].search != "greedy":  # greedy: nothing drawn or ranked
                record.update(strategy=params.strategy, score=round(exp.score, 6), seed=exp.seed)
            if args.export:
                _export(exp, path, Path(args.export), methods, args.normalize or "max", args.layer, args.head)
            if args.html:
                target = pages.target(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                exp.to_html(target, methods or None, image=Path(path).name, normalize=args.normalize or "max",
                            layer=args.layer, head=args.head)
                print(f"vizcap: wrote {target}", file=sys.stderr, flush=True)
        except ImageError as e:
            failed += 1
            record = {"image": path, "error": str(e)}
        except OSError as e:
            failed += 1
            record = {"image": path, "error": f"{path}: cannot write export ({e.strerror or e})"}
        except Exception as e:  # one bad input never stops the batch
            failed += 1
            record = {"image": path, "error": f"{path}: {type(e).__name__}: {e}".splitlines()[0]}
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"error: {record['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{path}: {record['caption']}", flush=True)
            if "notice" in record:
                print(f"vizcap: note: {path}: {record['notice']}", file=sys.stderr, flush=True)
    return 2 if failed else 0


def _eval(args) -> int:
    from . import load
    from .captioner import DEFAULT_CHECKPOINT
    from .files import atomic_write, shipped_checkpoint
    from .trust import INDEPENDENT_FIRST_SEED, HELDOUT_FIRST_SEED, SOURCES, evaluate_trust

    if args.n < 1 or args.curves_n < 0 or args.rank_n < 0 or args.orders < 1:
        raise ValueError("--n and --orders must be at least 1, --curves-n and --rank-n at least 0")
    out = Path(args.out) if args.out else Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if args.out and out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out}: not a directory")
    methods = _methods(args.methods)  # checked before the model loads
    captioner = load(args.checkpoint)
    if not args.out and args.checkpoint and not Path(args.checkpoint).exists():
        out = Path(captioner.name)  # a shipped model's name: its own folder, not one in the current directory
    methods = None if methods == ("all",) else methods  # evaluate_trust: every method the model has
    out.mkdir(parents=True, exist_ok=True)
    curves_n, rank_n = min(args.curves_n, args.n), min(args.rank_n, args.n)
    named = args.checkpoint if args.checkpoint and shipped_checkpoint(args.checkpoint) else None
    command = ("vizcap eval" + (f" --checkpoint {named}" if named else "")
               + f" --n {args.n} --curves-n {args.curves_n} --rank-n {args.rank_n} --orders {args.orders}"
               + (" --independent" if args.independent else "") + (" --hard" if args.hard else "")
               + (f" --methods {args.methods}" if methods else ""))
    result = evaluate_trust(captioner, n=args.n, curves_n=curves_n, methods=methods, progress=not args.json,
                            records=True, rank_n=rank_n, orders=args.orders)
    scenes = [{"source": result["source"], **r} for r in result.pop("scenes")]
    result.update(first_seed=HELDOUT_FIRST_SEED, command=command)
    more = [("independent", "independent renderer", curves_n, rank_n)] if args.independent else []
    more += [("hard", "hard held-out ShapeScenes", 0, 0)] if args.hard else []
    more += [("independent_hard", "hard independent renderer", 0, 0)] if args.hard and args.independent else []
    for key, source, n_curves, n_rank in more:
        other = evaluate_trust(captioner, n=args.n, curves_n=n_curves, methods=methods, progress=not args.json,
                               records=True, scene_fn=SOURCES[source], source=source, rank_n=n_rank, orders=args.orders)
        scenes += [{"source": other["source"], **r} for r in other.pop("scenes")]
        first = INDEPENDENT_FIRST_SEED if "independent" in key else HELDOUT_FIRST_SEED
        result[key] = {**other, "first_seed": first}
    stored = _finite_or_null(result)  # strict JSON: an undefined figure (no correctly named object) is null
    text = json.dumps(stored, indent=1, allow_nan=False) + "\n"
    lines = "".join(json.dumps(_finite_or_null(r), separators=(",", ":"), allow_nan=False) + "\n" for r in scenes)
    atomic_write(out / "trust_scenes.jsonl", lambda p: Path(p).write_text(lines))
    atomic_write(out / "trust.json", lambda p: Path(p).write_text(text))
    if args.json:
        print(json.dumps(stored, allow_nan=False))
        return 0
    print(format_report(result))
    for key in ("independent", "hard", "independent_hard"):
        if key in result:
            print("\n" + format_report(result[key]))
    print(f"\nwrote {out / 'trust.json'} and {out / 'trust_scenes.jsonl'}")
    return 0


def _decoding(args) -> int:
    from . import load
    from .files import shipped_checkpoint, write_json
    from .records import DECODING, DECODING_INDEPENDENT
    from .spread import SOURCES, decoding_spread

    if args.n < 1 or args.draws < 2 or args.beams < 2:
        raise ValueError("--n must be at least 1, --draws and --beams at least 2")
    captioner = load(args.checkpoint)
    if captioner.is_photo_model:
        raise ValueError("decoding spread needs a ShapeScenes model (it scores captions against the scenes' truth)")
    out = Path(args.out) if args.out else Path(captioner.name)
    source = SOURCES[1] if args.independent else SOURCES[0]
    result = decoding_spread(captioner, args.n, args.draws, args.beams, progress=not args.json, source=source)
    named = args.checkpoint if args.checkpoint and shipped_checkpoint(args.checkpoint) else None
    result["command"] = ("vizcap decoding" + (f" --checkpoint {named}" if named else "")
                         + f" --n {args.n} --draws {args.draws} --beams {args.beams}"
                         + (" --independent" if args.independent else ""))
    out.mkdir(parents=True, exist_ok=True)
    written = out / (DECODING_INDEPENDENT if args.independent else DECODING)
    write_json(written, result)
    figures = {k: v for k, v in result.items() if k != "records"}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.n} scenes of 2–3 objects ({source}): {figures['two_distinct_samples']:.0%} give at least two distinct "
          f"captions in {args.draws} samples (temperature 1); {figures['samples_right']:.1%} of sampled captions are "
          f"right; greedy and beam ({args.beams}) differ on {figures['greedy_beam_differ']:.0%} "
          f"(right: greedy {figures['greedy_right']:.1%}, beam {figures['beam_right']:.1%})")
    print(f"wrote {written}")
    return 0


def _web(args) -> int:
    from .web import build

    site = build(args.dir, args.checkpoint, progress=lambda m: print(f"vizcap: {m}", file=sys.stderr, flush=True))
    print(f"wrote the site into {args.dir} ({', '.join(m['name'] for m in site['models'])}; onnxruntime-web "
          f"{site['onnxruntime_web']}); try it: python -m http.server -d {args.dir}")
    return 0


def _finite_or_null(obj):
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def format_report(r: dict) -> str:
    c = r["caption"]
    lines = [
        f"{r.get('source', 'held-out ShapeScenes')}: {r['n_scenes']} scenes, {r['n_words']} correctly named objects, grid {r['grid'][0]}x{r['grid'][1]}",
        "",
        "caption quality",
        f"  exact {c['exact']:.3f}   colour {c['colour_acc']:.3f}   shape {c['shape_acc']:.3f}   "
        f"count {c['count_acc']:.3f}   object recall {c['object_recall']:.3f}",
        f"  BLEU-1 {c['bleu1']:.3f}  BLEU-2 {c['bleu2']:.3f}  BLEU-3 {c['bleu3']:.3f}  BLEU-4 {c['bleu4']:.3f}  "
        f"ROUGE-L {c['rouge_l']:.3f}  CIDEr {c['cider']:.3f}  (tokenizer: {c['tokenizer']})",
        "",
        f"{'method':<16}{'pointing':>9}{'chance':>8}{'colour-word':>12}{'mass':>7}{'chance':>8}{'sanity ρ':>10}"
        f"{'del map':>9}{'del rnd':>9}{'ins map':>9}{'ins rnd':>9}",
    ]
    for m, p in r["pointing"].items():
        cur = r["curves"].get(m, {})
        lines.append(
            f"{m:<16}{p['hit']:>9.3f}{p['chance']:>8.3f}{r['pointing_colour_word'][m]['hit']:>12.3f}"
            f"{r['mass_in_box'][m]['mass']:>7.3f}{r['mass_in_box'][m]['chance']:>8.3f}{r['sanity_spearman'][m]:>10.3f}"
            f"{cur.get('deletion_map_auc', float('nan')):>9.3f}{cur.get('deletion_random_auc', float('nan')):>9.3f}"
            f"{cur.get('insertion_map_auc', float('nan')):>9.3f}{cur.get('insertion_random_auc', float('nan')):>9.3f}"
        )
    rank = r.get("ranking")
    if rank:  # the top-k test: mean drop [95 % interval] at each k
        lines += ["", f"top-k deletion: drop of the word's probability (colour and shape words, {rank['n_scenes']} scenes, "
                      f"{rank['orders']} random orders; [95 % interval over scenes])",
                  f"{'':<18}" + "".join(f"{'k=' + str(k):<22}" for k in rank["ks"]) + f"÷ box at k={rank['k']}  beats random"]
        for name, s in rank["deletion"]["all"].items():
            v = rank["methods"].get(name) or rank.get(name) if name != "random" else {}
            cells = "".join(f"{_interval_text(m, lo, hi):<22}" for m, lo, hi in zip(s["mean"], s["low"], s["high"]))
            ratio = f"{v['ratio_to_box']:.2f}" if "ratio_to_box" in v else ""
            lines.append(f"{name:<18}{cells}{ratio:<14}{str(v['beats_random']) if 'beats_random' in v else ''}")
    lines += [
        "",
        f"best method by pointing game: {r['best_method']}",
        "pointing: the map's hottest cell touches the object's box (chance: share of cells that touch it);",
        "mass: share of the map on the object; sanity ρ: rank correlation with a model whose mapper and decoder",
        "are re-initialised (lower = the map depends on what the model learned); del/ins: area under the word's",
        "probability as cells are greyed out / revealed in map order vs random order; top-k deletion: the drop of",
        "the word's probability when the map's k hottest cells are greyed, vs the object's own cells (box) and random.",
    ]
    return "\n".join(lines)


def _interval_text(mean: float, low: float, high: float) -> str:
    if low != low or high != high:  # NaN: one scene, no interval
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.2f}, {high:.2f}]"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "caption":
            return _caption(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "decoding":
            return _decoding(args)
        if args.command == "web":
            return _web(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ValueError as e:  # invalid values, unusable checkpoints (CheckpointError): one line, exit 2
        print(f"vizcap: error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except Exception as e:  # last resort: a one-line message, never a traceback
        print(f"vizcap: error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
