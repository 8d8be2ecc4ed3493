"""One explanation as one self-contained interactive HTML page (`Explanation.to_html`, `vizcap caption
--html`, the explorer's "Download interactive page") and the same view inline in a notebook
(`Explanation._repr_html_`).

Everything is inline: the script and styles (vizcap/html/: view.html, view.css, overlay.js, view.js), the picture as
a data URI and the data as JSON; the page requests nothing from the network (its Content-Security-Policy
forbids it), so it opens offline from a USB stick. Every map is computed here, by `Explanation.maps`, for
every method captured, every layer/head choice (the mean over layers and heads, each layer's mean over
heads, each head's mean over layers, each single one) and both sink settings; the browser decodes them,
normalises them (vizcap.maps.normalize) and draws them, nothing else.

Storage: each word's map (per method, layer/head choice and sink setting) is kept as 16-bit steps between
its own minimum and maximum, little-endian uint16 in base64, with the minimum and maximum as JSON numbers:
value = lo + q·(hi − lo)/65535, so a stored value is within half a step, (hi − lo)/131070, of the exact one.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import secrets
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from . import maps as mapping
from . import notices
from .render import COLORMAPS
from .strategies import STRATEGIES, describe

STEPS = 65535  # 16-bit storage: a map's range in this many steps
PICTURE_SIDE = 512  # the embedded picture's long side at most (pixels)
PNG_LIMIT = 200_000  # bytes: a larger PNG (a photograph) is embedded as JPEG instead
COLOUR_SCALES = ("viridis", "cividis")  # the app's (vizcap.figures.COLORSCALES): both colour-blind safe
TEMPLATES = Path(__file__).parent / "html"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
NORM_HELP = ("none: raw values on the method's own scale (0 to 1 for attention shares), so a weak map stays weak · "
             "max: each word's map divided by its own maximum · sum: each map sums to 1 · global: divided by the "
             "maximum over all words · sinks: each cell's median over the caption subtracted (what every word looks "
             "at), the rest clipped at 0")
VIEW_KEYS = ("method", "layer", "head", "normalize", "discount_sinks", "word", "cmap", "opacity")


def page(exp, methods=None, model: str | None = None, image: str | None = None, view: dict | None = None,
         embedded: bool = False) -> str:
    """The whole HTML document: `fragment` in a page of its own whose policy forbids any request.
    embedded: the document `notebook_view` puts in its frame (the frame grows to the view's height)."""
    body = fragment(exp, methods, model, image, view, standalone=True, embedded=embedded)
    title = html.escape(f"vizcap: {exp.caption or '(empty caption)'}")
    body_style = ' style="margin:0"' if embedded else ""  # in a frame: the frame's height is the view's
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title></head>\n<body{body_style}>\n{body}\n</body></html>\n")


def notebook_view(exp, model: str | None = None) -> str:
    """`Explanation._repr_html_`: the page itself in an <iframe srcdoc>. Its own document keeps the view
    apart from the notebook and from other views (ids, styles, globals, arrow keys) and keeps its policy
    (no request). The page's script makes the frame as tall as the view (srcdoc has the notebook's
    origin; where it cannot, the frame scrolls). A notebook that does not run its outputs' HTML (an
    untrusted one strips frames and scripts) shows the sentence underneath instead."""
    document = page(exp, model=model, embedded=True)
    title = html.escape(f"vizcap: {exp.caption or '(empty caption)'}", quote=True)
    return ('<div style="position:relative;width:100%;max-width:1120px;height:880px">'
            '<p style="position:absolute;margin:8px;font-family:sans-serif">vizcap: the interactive view of '
            f"&ldquo;{html.escape(exp.caption)}&rdquo; did not load here: run the cell again (or trust the notebook), or "
            'write it to a file with <code>exp.to_html("page.html")</code>.</p>'
            f'<iframe srcdoc="{html.escape(document, quote=True)}" title="{title}" '
            'style="position:absolute;top:0;left:0;width:100%;height:100%;border:0;background:#fff"></iframe></div>')


def fragment(exp, methods=None, model: str | None = None, image: str | None = None, view: dict | None = None,
             standalone: bool = False, embedded: bool = False) -> str:
    """The interactive view as one <div> (its styles and script inside it, scoped to it; the element
    id is random and the script looks only inside it, so several could share a page).

    methods: the map methods to include (default: every one the model's mode has); view: where the
    page starts (VIEW_KEYS: method, layer, head, normalize, discount_sinks, word, cmap, opacity);
    standalone: the view is the whole page (the arrow keys work anywhere on it); embedded: the page is
    in a notebook's frame (`notebook_view`)."""
    data = payload(exp, methods, view)
    data["page"] = standalone
    data["embedded"] = embedded
    captioner = exp._captioner
    view_id = "vz" + secrets.token_hex(6)
    start = data["view"]
    L, H = data["layers"], data["heads"]
    parts = {
        "id": view_id,
        "css": _template("view.css"),
        "caption": html.escape(exp.caption) or "<i>(empty: no word to explain)</i>",
        "about": html.escape(_about(exp, model, image)),
        "notices": _notices(exp, captioner),
        "words": "".join(f'<button type="button" aria-pressed="false">{html.escape(t)}</button>' for t in exp.tokens),
        "methods": _options([(m, data["methods"][m]["label"]) for m in data["order"]], start["method"]),
        "layers": _options([(-1, "all (mean)")] + [(i, f"layer {i}") for i in range(L)], start["layer"]),
        "heads": _options([(-1, "all (mean)")] + [(i, f"head {i}") for i in range(H)], start["head"]),
        "norms": _options([(n, n) for n in mapping.NORMALIZATIONS], start["normalize"]),
        "cmaps": _options([(c, c) for c in COLOUR_SCALES], start["cmap"]),
        "opacity": f"{start['opacity']:g}",
        "sinks": " checked" if start["sinks"] else "",
        "norm_help": html.escape(NORM_HELP),
        "left_out": "".join(f"<p class=\"vz-small\">Not in this page: {html.escape(m)}: {html.escape(why)}</p>"
                            for m, why in data["left_out"]),
        "beam": _beam_section(exp),
        "made": _made(exp, data, model),
        "data": json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c"),
        "js": _template("overlay.js") + _template("view.js").replace("__VZ_ID__", view_id),
    }
    # one pass over the template: what is put in is never read again for {{…}}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _template("view.html"))


def payload(exp, methods=None, view: dict | None = None) -> dict:
    """The JSON the page's script reads: words, probabilities, alternatives, the picture, and per method
    its maps (`quantise`d; layer/head choices in the order `layer_head_choices` gives) with its labels."""
    methods = tuple(mapping.available(exp.mode) if methods is None else methods)
    for m in methods:
        mapping.check_available(m, exp.mode)  # a wrong name is an error, not a method left out
    T, N = len(exp.tokens), exp.grid[0] * exp.grid[1]
    L, H = exp.self_full.shape[0], exp.self_full.shape[1]
    captioner = exp._captioner
    trained = notices.trained_maps(captioner) if captioner is not None else None
    out, left_out = {}, []
    for name in methods:
        method = mapping.lookup(name)
        choices = layer_head_choices(L, H) if method.per_layer_head else [(None, None)]
        try:
            stored = {key: quantise(np.concatenate([exp.maps(name, layer, head, discount_sinks=sinks).reshape(T, N)
                                                    for layer, head in choices]))
                      for key, sinks in (("raw", False), ("sinks", True))}
        except ValueError as e:  # a method computed on demand needs the model (an explanation without one)
            left_out.append((name, str(e)))
            continue
        out[name] = {"label": method.label, "help": method.help, "per_layer_head": method.per_layer_head,
                     "colour_range": method.colour_range, "maps": stored,
                     "units": {n: mapping.unit(name, n) for n in mapping.NORMALIZATIONS},
                     "status": _map_note(captioner, name, trained)}
    order = [m for m in methods if m in out]
    share = None
    if exp.extra_attention is not None and exp.n_extra and T:  # the encoder's class token(s): their share, apart from the maps
        share = [np.round(exp.extra_share(layer, head), 6).tolist() for layer, head in layer_head_choices(L, H)]
    largest = max((max(np.subtract(v["hi"], v["lo"]), default=0.0) for m in out.values() for v in m["maps"].values()),
                  default=0.0)
    return {
        "tokens": list(exp.tokens),
        "probs": [_finite(p) for p in exp.probs],
        "alts": [[[tok, _finite(p), int(i) == int(chosen)] for tok, p, i in zip(toks, probs, ids)]
                 for toks, probs, ids, chosen in zip(exp.top_tokens, exp.top_probs, exp.top_ids, exp.token_ids)],
        "grid": list(exp.grid),
        "layers": int(L),
        "heads": int(H),
        "image": picture_uri(exp.image),
        "methods": out,
        "order": order,
        "left_out": left_out,
        "share": share,
        "view": _start(view or {}, order, L, H, T),
        "colormaps": {c: [list(rgb) for rgb in COLORMAPS[c]] for c in COLOUR_SCALES},
        "sink_label": mapping.SINKS_LABEL,
        "storage": {"bits": 16, "steps": STEPS, "max_error": largest / (2 * STEPS)},
    }


def layer_head_choices(n_layers: int, n_heads: int) -> list[tuple[int | None, int | None]]:
    """Every (layer, head) a per-layer/head method is stored for, in storage order: layer None (the
    mean), 0 … L−1, and within each head None, 0 … H−1. Choice c = (layer + 1)·(H + 1) + head + 1,
    None counting as −1."""
    return [(layer, head) for layer in (None, *range(n_layers)) for head in (None, *range(n_heads))]


def quantise(maps: np.ndarray) -> dict:
    """maps [K, N] -> {"q": base64 of little-endian uint16 [K, N], "lo": [K], "hi": [K]}: each row in
    STEPS steps between its own minimum and maximum (a constant row is all 0 and decodes exactly)."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64))
    lo = maps.min(1) if maps.size else np.zeros(len(maps))
    hi = maps.max(1) if maps.size else np.zeros(len(maps))
    span = np.where(hi > lo, hi - lo, 1.0)[:, None]
    q = np.rint((maps - lo[:, None]) / span * STEPS).clip(0, STEPS).astype("<u2")
    return {"q": base64.b64encode(q.tobytes()).decode("ascii"), "lo": lo.tolist(), "hi": hi.tolist()}


def picture_uri(image: Image.Image) -> str:
    """The picture as a data URI, at most PICTURE_SIDE pixels on its long side: PNG (drawn scenes stay
    crisp), or JPEG when the PNG would be large (a photograph)."""
    image = image.convert("RGB")
    scale = min(1.0, PICTURE_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    mime = "image/png"
    if buf.tell() > PNG_LIMIT:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- the parts of the view --------------------------------------------------------------------------


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _start(view: dict, order: list[str], L: int, H: int, T: int) -> dict:
    """Where the page starts, checked as the API checks it (layer/head None: the mean, stored as −1)."""
    unknown = sorted(set(view) - set(VIEW_KEYS))
    if unknown:
        raise TypeError(f"unexpected view setting {unknown[0]!r}; choose from {', '.join(VIEW_KEYS)}")
    method = view.get("method") or (order[0] if order else "")
    if order and method not in order:
        raise ValueError(f"method {method!r} is not in this page; choose from {', '.join(order)}")
    normalize = view.get("normalize", "max")  # the app's default: each word's map uses the whole colour scale
    mapping.check_normalize(normalize)
    layer, head = view.get("layer"), view.get("head")
    mapping.check_layer_head(layer, head, L, H)
    cmap = view.get("cmap", COLOUR_SCALES[0])
    if cmap not in COLOUR_SCALES:
        raise ValueError(f"cmap must be one of {', '.join(COLOUR_SCALES)}; got {cmap!r}")
    opacity = float(view.get("opacity", 0.55))
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be from 0 to 1; got {opacity!r}")
    word = view.get("word", 0)
    if not isinstance(word, (int, np.integer)) or isinstance(word, bool) or not (0 <= word < max(T, 1)):
        raise ValueError(f"word must be a token index in 0..{max(T - 1, 0)}; got {word!r}")
    return {"method": method, "layer": -1 if layer is None else int(layer) % L, "head": -1 if head is None else int(head) % H,
            "normalize": normalize, "sinks": bool(view.get("discount_sinks", False)), "word": int(word), "cmap": cmap,
            "opacity": opacity}


def _options(choices, selected) -> str:
    return "".join(f'<option value="{html.escape(str(v))}"{" selected" if v == selected else ""}>{html.escape(label)}</option>'
                   for v, label in choices)


def _map_note(captioner, method: str, trained) -> str | None:
    """What the explorer says under a map: whether something trained it to point (None: not recorded)."""
    if captioner is None or trained is None:
        return None
    if method in trained:
        return "Trained to point. " + (notices.attention_notice(captioner) or "")
    return (f"{mapping.lookup(method).label.capitalize()}: nothing trained this map to point, so where it points is "
            "evidence of what the model used (vizcap's Training & trust page measures how far).")


def _notices(exp, captioner) -> str:
    """The app's notices: the picture, an empty caption, word pieces, which maps were trained, a crop."""
    said = list(notices.caption_notices(captioner, exp)) if captioner is not None else []
    attention = notices.attention_notice(captioner) if captioner is not None else None
    said += [attention] if attention else []
    said += [exp.crop[0].upper() + exp.crop[1:] + "."] if exp.crop else []
    said.append("The maps show where the model looked while it wrote each word, not proof of why it wrote it.")
    return '<ul class="vz-notices">' + "".join(f"<li>{html.escape(s)}</li>" for s in said) + "</ul>"


def _about(exp, model: str | None, image: str | None) -> str:
    p = exp.params
    bits = [f"Model: {model or 'not named'}", f"decoding: {describe(p)}, at most {p.max_tokens} words"]
    if STRATEGIES[p.strategy].search == "sample" and p.seed is None and exp.seed is not None:
        bits.append(f"seed drawn: {exp.seed}")  # a seed that was given is in describe()'s words
    if STRATEGIES[p.strategy].search == "beam":
        bits.append(f"score {exp.score:.4f}")
    bits.append(f"log p {exp.logprob:.4f}")
    bits.append("ended with <eos>" if exp.ended else "cut at the word limit" if len(exp) else "")
    if image:
        bits.insert(0, f"Picture: {image}")
    return " · ".join(b for b in bits if b)


def _made(exp, data: dict, model: str | None) -> str:
    err = data["storage"]["max_error"]
    p = exp.params
    lines = [
        f"Made by vizcap {__version__} from one explanation of {model or 'a captioner'}; the page loads nothing "
        "from the network (its script, styles, picture and data are all inside this file).",
        f"Every map was computed by vizcap in Python (Explanation.maps) for the {exp.grid[0]}×{exp.grid[1]} grid of "
        "image cells, each cell covering its share of the whole picture; your browser only normalises and draws them.",
        "Storage: each word's map (per method, layer, head and sink setting) is kept as 16-bit steps between its own "
        "minimum and maximum, so a value here differs from vizcap's exact value by at most half a step, "
        f"(maximum − minimum)/131070: at most {err:.2g} in this page's raw units. A normalisation divides a value "
        "and its error by the same number, so on every scale the error stays about 1/131070 of the map's range.",
        "Decoding settings: " + ", ".join(f"{k} {getattr(p, k)}" for k in p.__dataclass_fields__)
        + (f"; seed used {exp.seed}" if exp.seed is not None else "") + ".",
    ]
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


def _beam_section(exp) -> str:
    """Beam search only: the search tree (the app's layout, drawn as SVG) and the finished candidates."""
    if STRATEGIES[exp.params.strategy].search != "beam" or not exp.beam_tree:
        return ""
    from .figures.beam import BEAM_TREE_HELP, END_STEP, _chosen_path, _tree_layout  # the decoding lab's tree

    tree = exp.beam_tree
    ys = _tree_layout(tree)
    lane = max(len(s["tokens"]) for s in tree) + 0.4
    x_of, y_of = (lambda step: 24 + 84 * step), (lambda row: 30 + 44 * row)
    edges, nodes = [], [_node(0, 0.0, "<bos>", "start of the caption", True, x_of, y_of)]
    last = len(tree) - 1
    for t, step in enumerate(tree):
        nxt = tree[t + 1] if t < last else None
        for i, (tok, parent, score) in enumerate(zip(step["tokens"], step["parents"], step["scores"])):
            kept = (nxt is not None and (i in nxt["parents"] or any(f["parent"] == i for f in nxt.get("finished", []))))
            kept = kept or (t == last and step.get("truncated", False))
            py = ys[t - 1][parent] if t else 0.0
            edges.append(_line([(t, py), (t + 1, ys[t][i])], "#b9b9b9" if kept else "#e4e4e4", 1, x_of, y_of))
            hover = f"step {t + 1}: {tok!r}, log p so far {score:.3f}, " + ("kept" if kept else "dropped at the next step")
            nodes.append(_node(t + 1, ys[t][i], tok, hover, kept, x_of, y_of))
        for k, fin in enumerate(step.get("finished", [])):
            py, y = (ys[t - 1][fin["parent"]] if t else 0.0), lane + END_STEP * k
            edges.append(_line([(t, py), (t + 1, y)], "#b9b9b9", 1, x_of, y_of))
            cx, cy = x_of(t + 1), y_of(y)
            nodes.append(f'<path d="M{cx} {cy - 6}l6 6-6 6-6-6z" fill="#CC79A7"><title>step {t + 1}: ended (&lt;eos&gt;), '
                         f'log p {fin["logp"]:.3f}, score {fin["score"]:.3f}</title></path>')
    xs, yv = _chosen_path(tree, ys, exp.token_ids, exp.ended, lane)
    chosen = _line(list(zip(xs, yv)), "#E69F00", 4, x_of, y_of) if xs else ""
    width, height = x_of(len(tree)) + 60, y_of(lane + END_STEP * 3) + 10
    svg = (f'<svg width="{width}" height="{height}" role="img" aria-label="the beam search tree">'
           + "".join(edges) + chosen + "".join(nodes) + "</svg>")
    rows = "".join(f"<tr><td>{html.escape(c['caption'])}</td><td>{c['score']:.4f}</td><td>{c['logprob']:.4f}</td>"
                   f"<td>{'cut at the word limit' if c['truncated'] else 'ended' if c['ended'] else ''}</td></tr>"
                   for c in exp.candidates)
    return ("<details open><summary><b>How beam search found this caption</b></summary>"
            f"<p class=\"vz-small\">Read left to right: a column per step, a dot per hypothesis kept (grey: dropped at "
            f"the next step), pink diamonds: hypotheses that ended; the orange line is the chosen caption. "
            f"{html.escape(BEAM_TREE_HELP)}</p><div class=\"vz-tree\">{svg}</div>"
            "<p class=\"vz-small\">Finished candidates, best first:</p><table><tr><th>caption</th><th>score</th>"
            f"<th>log p</th><th></th></tr>{rows}</table></details>")


def _line(points, colour: str, width: int, x_of, y_of) -> str:
    coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{width}"/>'


def _node(step: int, row: float, word: str, hover: str, kept: bool, x_of, y_of) -> str:
    x, y = x_of(step), y_of(row)
    colour, text = ("#0072B2", "#222") if kept else ("#c9c9c9", "#6b6b6b")
    return (f'<g><title>{html.escape(hover)}</title><circle cx="{x}" cy="{y}" r="5" fill="{colour}"/>'
            f'<text x="{x}" y="{y - 9}" font-size="13" text-anchor="middle" fill="{text}">{html.escape(word)}</text></g>')
