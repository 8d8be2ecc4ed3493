"""`vizcap web DIR`: the ShapeScenes explorer as a static site that runs the shipped model(s) in the
browser with ONNX Runtime Web; nothing to install for whoever opens it.

    DIR/
      index.html, style.css, overlay.js, engine.js, app.js   the page (vizcap/site/, vizcap/html/overlay.js)
      ort/                 ONNX Runtime Web (WebAssembly build), copied from web/node_modules at the
                           exact version web/package.json pins: nothing is fetched from a CDN
      models/NAME/         encoder.onnx, decoder.onnx (vizcap/onnx_export.py) and model.json (vocabulary,
                           preprocessing, sizes) for each checkpoint
      gallery/             ShapeScenes pictures (vizcap.scenes.render_scene) and the lesson's pictures
      site.json            the models, the gallery, the lesson's steps, what compose draws

The build reads whatever checkpoint is in vizcap/checkpoints/ (or the ones named), runs offline once
`npm ci --prefix web` and the PyPI packages onnx + onnxscript are installed, and fails with one line
naming what is missing. Serve DIR from any static host (`python -m http.server -d DIR`, GitHub Pages);
a file:// URL cannot load the WebAssembly module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import maps, notices
from .files import SHIPPED_TITLES, atomic_write, shipped_checkpoint, shipped_names, write_json

ROOT = Path(__file__).resolve().parents[1]
# ONNX Runtime Web's graph optimisation level when the page makes its sessions: what it costs on a
# first visit and what it saves per explanation are measured by benchmarks/web.py --levels
GRAPH_OPTIMIZATION = "basic"
NPM_DIR = ROOT / "web"  # web/package.json pins onnxruntime-web; `npm ci --prefix web` fills web/node_modules
SITE_FILES = Path(__file__).parent / "site"
OVERLAY = Path(__file__).parent / "html" / "overlay.js"  # the exported page's map renderer, shared
# The WebAssembly build only (one thread, no WebGPU): what the page loads, and the licence that travels with it
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
GALLERY_SEEDS = tuple(range(24))  # scene:0 … scene:23, plus the lesson's scenes


class BuildError(ValueError):
    """What the build needs and lacks, in one line (the CLI prints it)."""


def ort_dir(npm_dir: Path = NPM_DIR) -> tuple[Path, str]:
    """The installed onnxruntime-web's dist/ folder and its version; BuildError if `npm ci` was not run or
    installed another version than web/package.json pins."""
    package = npm_dir / "node_modules" / "onnxruntime-web"
    wanted = _pinned(npm_dir)
    hint = f"run `npm ci --prefix {npm_dir}` (web/package.json pins onnxruntime-web {wanted})"
    if not (package / "package.json").is_file():
        raise BuildError(f"ONNX Runtime Web is not installed: {hint}")
    found = json.loads((package / "package.json").read_text(encoding="utf-8")).get("version")
    if found != wanted:
        raise BuildError(f"{package} is onnxruntime-web {found}, not the pinned {wanted}: {hint}")
    missing = [f for f in ORT_FILES if not (package / "dist" / f).is_file()]
    if missing:
        raise BuildError(f"{package / 'dist' / missing[0]} is missing: {hint}")
    return package / "dist", found


def _pinned(npm_dir: Path) -> str:
    try:
        return json.loads((npm_dir / "package.json").read_text(encoding="utf-8"))["dependencies"]["onnxruntime-web"]
    except (OSError, ValueError, KeyError):
        raise BuildError(f"{npm_dir / 'package.json'} is missing or names no onnxruntime-web version") from None


def _check_exporter() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BuildError(f"exporting to ONNX needs {' and '.join(missing)}: pip install {' '.join(missing)} "
                         "(requirements.txt lists them)")


def build(out: str | Path, checkpoints: list[str] | None = None, gallery: tuple[int, ...] = GALLERY_SEEDS,
          npm_dir: Path = NPM_DIR, progress=None) -> dict:
    """Write the site into `out` (created; files of an earlier build are replaced). checkpoints: shipped names
    or checkpoint folders (default: every shipped model present). Returns site.json's content."""
    from . import load
    from .onnx_export import check_exportable, export

    say = progress or (lambda message: None)
    dist, version = ort_dir(npm_dir)  # the cheap checks first: a missing `npm ci` costs no export
    _check_exporter()
    names = list(checkpoints or shipped_names())
    if not names:
        raise BuildError("no checkpoint to export: vizcap/checkpoints/ holds none; name one with --checkpoint")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out}: exists and is not a folder")
    captioners = {}
    for name in names:  # every model loads and fits before anything is written
        captioner = load(name)
        check_exportable(captioner)
        captioners[_site_name(name)] = (name, captioner)
    out.mkdir(parents=True, exist_ok=True)
    for f in ORT_FILES:
        _copy(dist / f, out / "ort" / f)
    licence = dist.parent / "LICENSE"
    if licence.is_file():
        _copy(licence, out / "ort" / "LICENSE")
    for f in sorted(SITE_FILES.iterdir()):
        if f.is_file():
            _copy(f, out / f.name)
    _copy(OVERLAY, out / "overlay.js")
    models = []
    for site_name, (name, captioner) in captioners.items():
        say(f"exporting {name} to ONNX (a minute or two)")
        folder = out / "models" / site_name
        export(captioner, folder)
        write_json(folder / "model.json", model_info(captioner, site_name))
        models.append({"name": site_name, "title": SHIPPED_TITLES.get(site_name, site_name),
                       # where a map is read, the page says whether this model was trained to make it look right
                       "attention_notice": notices.attention_notice(captioner),
                       "map_status": {m: notices.map_status(captioner, m) for m in maps.METHODS}})
    say("drawing the gallery and the lesson's pictures")
    pictures = _gallery(out / "gallery", gallery)
    site = {
        "vizcap": _version(),
        "onnxruntime_web": version,
        "threads": 1,
        "graph_optimization": GRAPH_OPTIMIZATION,
        "models": models,
        "default_model": models[0]["name"],
        "gallery": pictures,
        "lesson": _lesson(out / "gallery", [m["name"] for m in models], say),
        "compose": _compose_data(),
        **_view_data(),
    }
    write_json(out / "site.json", site)
    return site


def _site_name(name: str) -> str:
    """A checkpoint's folder name under models/: the shipped name, or the folder's own name."""
    return name if shipped_checkpoint(name) else Path(name).name or "model"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _version() -> str:
    from . import __version__

    return __version__


def model_info(captioner, name: str) -> dict:
    """What the page needs beside the graphs: sizes, token ids, the vocabulary, the preprocessing."""
    from .onnx_export import output_names

    cfg = captioner.cfg
    gh, gw = captioner.grid
    defaults = {k: v for k, v in captioner.decoding_defaults().items() if v is not None}
    return {
        "name": name,
        "title": SHIPPED_TITLES.get(name, name),
        "image_size": cfg.image_size,
        "image_mean": list(cfg.image_mean),
        "image_std": list(cfg.image_std),
        "grid": [gh, gw],
        "n_prefix": cfg.n_prefix,
        "decoder_layers": cfg.decoder_layers,
        "decoder_heads": cfg.decoder_heads,
        "encoder_layers": len(captioner.model.encoder.model.blocks) if captioner.encoder_attends else 0,
        "encoder_heads": captioner.model.encoder.model.blocks[0].attn.num_heads if captioner.encoder_attends else 0,
        "vocab_size": cfg.vocab_size,
        "vocab": [captioner.tokenizer.token_text(i) for i in range(cfg.vocab_size)],
        "bos_id": cfg.bos_id,
        "eos_id": cfg.eos_id,
        "banned": list(captioner.banned),
        "token_limit": captioner.token_limit,
        "decoding": {"max_tokens": captioner.max_tokens, **defaults},
        "encoder_outputs": output_names(captioner),
    }


def _gallery(folder: Path, seeds) -> list[dict]:
    from .scenes import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        scene = render_scene(int(seed))
        atomic_write(folder / f"scene-{seed}.png", lambda tmp, im=scene.image: im.save(tmp, format="PNG", optimize=True))
        out.append({"image": f"scene:{seed}", "file": f"gallery/scene-{seed}.png", "truth": scene.caption,
                    "captions": list(scene.captions)})
    return out


def _lesson(folder: Path, models: list[str], say=lambda message: None) -> list[dict]:
    """The Lesson's steps (vizcap.lesson.STEPS) with their pictures drawn here. A step for a model the site
    lacks uses the site's first model, unless its sentence describes that model (Step.about_model): then it is
    left out, and said."""
    from .compose import compose_scene
    from .lesson import PHOTO, STEPS, photo_like
    from .links import parse_compose
    from .scenes import render_scene

    steps = []
    for i, step in enumerate(STEPS, 1):
        if step.about_model and step.model not in models:
            say(f"lesson step {step.title!r} left out: it needs the model {step.model!r}, which this site does not have")
            continue
        kind, _, rest = step.image.partition(":")
        if step.image == PHOTO:
            image, truth, file = photo_like(), None, "lesson-photo.png"
        elif kind == "scene":
            scene = render_scene(int(rest))
            image, truth, file = scene.image, list(scene.captions), f"scene-{int(rest)}.png"
        else:
            placements, background = parse_compose(rest)
            scene = compose_scene(placements, background=background)
            image, truth, file = scene.image, [scene.caption], f"lesson-{i}.png"
        atomic_write(folder / file, lambda tmp: image.save(tmp, format="PNG", optimize=True))
        steps.append({"title": step.title, "say": step.say, "image": step.image, "file": f"gallery/{file}",
                      "view": step.view, "method": step.method,
                      "model": step.model if step.model in models else models[0], "truth": truth})
    return steps


BROWSER_METHODS = ("cross_attention", "prefix", "rollout")  # the maps the browser computes from the graphs' attentions


def _view_data() -> dict:
    """The words the page shows about maps, colour scales and decoding, from the library that defines them."""
    from . import maps as mapping
    from .html_page import COLOUR_SCALES, NORM_HELP
    from .render import COLORMAPS
    from .strategies import STRATEGIES

    return {
        "methods": {m: {"label": mapping.lookup(m).label, "help": mapping.lookup(m).help,
                        "per_layer_head": mapping.lookup(m).per_layer_head, "colour_range": mapping.lookup(m).colour_range,
                        "units": {n: mapping.unit(m, n) for n in mapping.NORMALIZATIONS}} for m in BROWSER_METHODS},
        "normalizations": list(mapping.NORMALIZATIONS),
        "norm_help": NORM_HELP,
        "colormaps": {c: [list(rgb) for rgb in COLORMAPS[c]] for c in COLOUR_SCALES},
        "strategies": {name: s.help for name, s in STRATEGIES.items()},
    }


def _compose_data() -> dict:
    """What the page's composer draws with: the colours, backgrounds and each shape's outline as
    vizcap.compose draws them (unit polygons; the page places, turns and scales them as compose does)."""
    from .compose import BACKGROUNDS, MAX_OBJECTS
    from .scenes import COLOURS, SHAPES, _shape_polygon

    return {
        "colours": {k: list(v) for k, v in COLOURS.items()},
        "backgrounds": {k: list(v) for k, v in BACKGROUNDS.items()},
        "shapes": {s: np.round(_shape_polygon(s, np.random.default_rng(0)), 6).tolist() for s in SHAPES},
        "max_objects": MAX_OBJECTS,
        "size": 256,
    }
