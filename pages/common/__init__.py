"""Streamlit glue shared by the app's pages: the checkpoint picker, the model (st.cache_resource), the
current image, and the explanations kept in st.session_state.

This is a sub-package of pages/, not a page: streamlit_app.py registers the pages with
st.navigation and runs first on every address (sidebar() hands over a run that Streamlit started
from a page file alone; see streamlit_app.py). Each page calls `sidebar()` first and names page
files in its links. Everything
shown comes from `vizcap`; nothing here computes.

Keys in st.session_state (all prefixed "vz_"):
  vz_image        {"id", "label", "image", "truth"}: the picture every page explains
  vz_explanations {(image id, checkpoint, decoding params): Explanation}, the newest 16
  vz_model_calls  how many times this session asked the model to explain an image
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections import OrderedDict
from dataclasses import astuple, fields
from pathlib import Path
from types import SimpleNamespace

import streamlit as st

import vizcap
from vizcap.captioner import DEFAULT_CHECKPOINT
from vizcap.decoding import MAX_BEAMS, STRATEGIES, DecodingParams, validate
from vizcap.hub import SUGGESTED
from vizcap.scenes import render_scene

CHECKPOINT_ENV = "VIZCAP_CHECKPOINT"  # a checkpoint directory the app opens by default (tests, demos)
MAX_UPLOAD_MB = 20
DEFAULT_SCENE = 7
MAX_EXPLANATIONS = 16
PAGE_FILES = {
    "explorer": "pages/explorer.py",
    "decoding": "pages/decoding_lab.py",
    "how": "pages/how_it_works.py",
    "trust": "pages/training_and_trust.py",
    "lesson": "pages/lesson.py",
}
# -- the model -----------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=4)
def load_captioner(path: str) -> vizcap.Captioner:
    """vizcap.load(path), once per path for the whole app (st.cache_resource)."""
    return vizcap.load(path)


def is_photo_model(captioner) -> bool:
    """A Hugging Face captioner of photos (ViT+GPT-2, BLIP), not a model of ShapeScenes."""
    return getattr(captioner, "kind", "vizcap") != "vizcap"


def shapescenes_only(captioner, what: str) -> bool:
    """For a photo model, say once that `what` needs ShapeScenes' known truth and return True (the
    caller then leaves it out); False for vizcap's own models."""
    if not is_photo_model(captioner):
        return False
    st.info(f"{what} needs ShapeScenes, whose truth vizcap knows; this is a photo captioner, so it is left out here.")
    return True


# -- widgets that keep their values across pages ---------------------------------------------------
# Streamlit forgets a widget's value when a run does not draw it, and treats the same key drawn by
# another page as a new widget. One mechanism bridges it: a shadow copy of the value in
# st.session_state under _shadow(key), written by the widget's on_change callback and read back
# before the widget is drawn again. Pages use persistent(); the sidebar, whose defaults depend on
# each other, uses its three steps directly.


def _shadow(key: str) -> str:
    return f"_keep_{key}"


def _restore(key: str) -> None:
    """Before drawing the widget `key`: it gets back the value it had on another page."""
    if _shadow(key) in st.session_state:
        st.session_state[key] = st.session_state[_shadow(key)]


def _on_change(key: str):
    """The widget's on_change callback: runs before the script, so _restore() sees the new value."""
    return lambda: st.session_state.__setitem__(_shadow(key), st.session_state.get(key))


def _first_value(key: str):
    """After drawing the widget `key`: its first value becomes the shadow copy."""
    st.session_state.setdefault(_shadow(key), st.session_state.get(key))
    return st.session_state.get(key)


def persistent(key: str, default, options=None):
    """Call right before drawing the widget `key`, drawn with on_change=<the returned callback> and
    without a default of its own (value=/index=): it starts at `default`, and keeps its value across
    visits to other pages and tabs. A kept value that is no longer among `options` (another model)
    goes back to `default`."""
    _restore(key)
    if key not in st.session_state or (options is not None and st.session_state[key] not in options):
        st.session_state[key] = default
        st.session_state[_shadow(key)] = default
    return _on_change(key)


# Less empty space above the title, a smaller title and no word broken mid-word in labels: the
# explorer's caption, controls and map fit one 1280×800 screen (a projector), and 800-px-wide windows
# keep their labels whole.
STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; }
h1 { font-size: 2.1rem !important; padding-top: 0.5rem !important; }
[data-testid="stWidgetLabel"] p, button p { word-break: normal !important; overflow-wrap: normal !important; }
</style>"""


def _app_navigation_first() -> None:
    """A fresh Streamlit process that finds a pages/ folder runs a page's file on its own (its older
    multipage mode, with an automatic page list "streamlit app", "explorer" …) when the first visitor
    opens that page's address. Switch that mode off and run again: every run then starts in
    streamlit_app.py, whose st.navigation draws the app's own navigation and titles and runs the page
    the address names. (st.navigation switches the mode off the same way once it has run; the flag is
    Streamlit's own, read through getattr so that a Streamlit without it changes nothing here.)"""
    from streamlit.runtime.pages_manager import PagesManager

    # only on a session's first run: a rerun then loses no click (and AppTest, which starts every run
    # in that older mode, keeps its widget events)
    first = "vz_session" not in st.session_state
    st.session_state["vz_session"] = True
    if first and getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def sidebar() -> None:
    """Every page calls this first: the hand-over to the app's navigation, the page style, and the
    checkpoint picker in the sidebar (the shipped model or a directory). Pages draw it themselves, so
    that each page also works when run on its own."""
    _app_navigation_first()
    st.html(STYLE)
    env = os.environ.get(CHECKPOINT_ENV, "").strip()
    for key in ("vz_ckpt_choice", "vz_ckpt_dir", "vz_hf_source"):
        _restore(key)
    if "vz_ckpt_choice" not in st.session_state:
        st.session_state["vz_ckpt_choice"] = "directory" if env else "shipped"
        st.session_state["vz_ckpt_dir"] = env
    with st.sidebar:
        st.radio("Model", ["shipped", "directory", "hub"], key="vz_ckpt_choice",
                 format_func={"shipped": "Shipped ShapeScenes model", "directory": "A checkpoint directory",
                              "hub": "A Hugging Face captioner"}.get,
                 help="The shipped model was trained on ShapeScenes. A directory written by `python -m train` "
                      "(config.json, model.safetensors, tokenizer.json) loads the same way. A Hugging Face "
                      "captioner is a ViT+GPT-2 (VisionEncoderDecoder) or BLIP model: a hub id or a local folder.",
                 on_change=_on_change("vz_ckpt_choice"))
        if st.session_state["vz_ckpt_choice"] == "directory":
            st.text_input("Checkpoint directory", key="vz_ckpt_dir", placeholder="/path/to/checkpoint",
                          on_change=_on_change("vz_ckpt_dir"))
        elif st.session_state["vz_ckpt_choice"] == "hub":
            st.session_state.setdefault("vz_hf_source", SUGGESTED[0])
            st.text_input("Hub id or folder", key="vz_hf_source", placeholder=SUGGESTED[0],
                          on_change=_on_change("vz_hf_source"),
                          help="For example " + " or ".join(f"`{s}`" for s in SUGGESTED) + ". A hub id is read from "
                               "the Hugging Face cache (downloaded there first when this machine is online).")
            st.caption("Try " + " · ".join(f"`{s}`" for s in SUGGESTED))
    _first_value("vz_ckpt_choice")
    if st.session_state["vz_ckpt_choice"] == "directory":
        _first_value("vz_ckpt_dir")
    elif st.session_state["vz_ckpt_choice"] == "hub":
        _first_value("vz_hf_source")


def checkpoint_path() -> str:
    """The chosen checkpoint directory, resolved (the cache key of the model and its explanations)."""
    choice = st.session_state.get("vz_ckpt_choice", "shipped")
    if choice == "directory":
        text = (st.session_state.get("vz_ckpt_dir") or "").strip()
        return str(Path(text).expanduser().resolve()) if text else ""
    if choice == "hub":  # a hub id stays an id; a folder is resolved like a directory
        text = (st.session_state.get("vz_hf_source") or "").strip()
        path = Path(text).expanduser()
        return str(path.resolve()) if text and path.exists() else text
    return str(DEFAULT_CHECKPOINT.resolve())


def shipped_path() -> str:
    return str(DEFAULT_CHECKPOINT.resolve())


def require_captioner(notice: bool = True) -> tuple[vizcap.Captioner, str]:
    """The loaded captioner and its path (or a friendly st.error and a stopped page), with the notice
    for a current picture unlike the model's training data (unfamiliar_notice) unless notice=False
    (a page that shows pictures of its own)."""
    captioner, path = _require_captioner()
    if notice:
        unfamiliar_notice(captioner)
    return captioner, path


def model_input(captioner, image):
    """What the model actually sees of `image`: its preprocessing's output turned back into a picture
    (the whole image squashed to the model's square input, or the processor's crop)."""
    import numpy as np
    from PIL import Image

    pixels = captioner.pixels(image)[0].numpy()  # [3, H, W], normalised
    if is_photo_model(captioner):
        proc = captioner.image_processor
        mean, std = getattr(proc, "image_mean", None) or [0.0] * 3, getattr(proc, "image_std", None) or [1.0] * 3
    else:
        mean, std = captioner.cfg.image_mean, captioner.cfg.image_std
    rgb = pixels * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return Image.fromarray((rgb.transpose(1, 2, 0).clip(0, 1) * 255).round().astype(np.uint8))


def unfamiliar_notice(captioner) -> None:
    """While the current picture is unlike what the model was trained on — an upload for the shipped
    ShapeScenes model (or any vizcap checkpoint), a drawn scene for a photo captioner — say on every
    page what the model knows, that a word's probability is confidence and not correctness, and show
    on request what the model actually saw."""
    img = current_image()
    upload = img["id"].startswith("upload:")
    if is_photo_model(captioner):
        if upload:
            return
        knows = ("This captioner learned from photos with human captions; these drawn shapes are far from "
                 "anything it saw, so its words can be wrong")
    else:
        if not upload:
            return
        knows = ("This model has only ever seen ShapeScenes — up to three coloured shapes (7 colours, 5 shapes) "
                 "on a plain background — so it describes every picture, this one too, as coloured shapes")
    seen = model_input(captioner, img["image"])
    side = seen.size
    with st.container(border=True):
        st.markdown(f":material/info: **{knows}.** A word's probability is how *sure* the model is, not whether "
                    f"the word is right. It saw this picture squashed to {side[0]}×{side[1]} pixels.")
        if st.toggle("Show what the model saw", key="vz_show_input"):
            st.image(seen, caption=f"The model's input, {side[0]}×{side[1]}", width=min(256, 2 * side[0]))


def _require_captioner() -> tuple[vizcap.Captioner, str]:
    """The loaded captioner and its path, or a friendly st.error and a stopped page."""
    path = checkpoint_path()
    if not path:
        st.info("Type the path of a checkpoint directory or a Hugging Face id in the sidebar (or choose the "
                "shipped model).")
        st.stop()
    try:
        shown = Path(path).name if Path(path).exists() else path
        with st.spinner(f"Loading {shown}… (a big model takes a while the first time: its weights are read into "
                        "memory once, then every page reuses them)"):
            return load_captioner(path), path
    except vizcap.CheckpointError as e:
        shipped = path == str(DEFAULT_CHECKPOINT.resolve())
        st.error(("The shipped model is not available yet" if shipped else "This checkpoint cannot be loaded")
                 + f": {e}. " + ("Choose a checkpoint directory in the sidebar." if shipped else
                                 "Pick another directory in the sidebar, or the shipped model."))
    except Exception as e:  # never a traceback for a bad directory
        st.error(f"This checkpoint cannot be loaded: {type(e).__name__}: {e}. Pick another one in the sidebar.")
    st.stop()
    raise AssertionError  # st.stop() does not return


# -- the current image ---------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def scene_image(seed: int):
    scene = render_scene(int(seed))
    return scene.image, scene.caption


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnail(seed: int, side: int = 160):
    """The example scene letter-boxed to a square, so that a gallery row lines up."""
    from PIL import ImageOps

    return ImageOps.pad(scene_image(int(seed))[0], (side, side), color=(255, 255, 255))


def set_image(image_id: str, image, label: str, truth: str | None = None) -> None:
    st.session_state["vz_image"] = {"id": image_id, "image": image, "label": label, "truth": truth}


def set_scene(seed: int) -> None:
    image, caption = scene_image(int(seed))
    set_image(f"scene:{int(seed)}", image, f"ShapeScenes example {int(seed)}", caption)


def current_image() -> dict:
    if "vz_image" not in st.session_state:
        set_scene(DEFAULT_SCENE)
    return st.session_state["vz_image"]


def read_upload(name: str, data: bytes, size: int | None = None):
    """(image, image id, None) or (None, None, a one-line message): never raises."""
    size = len(data) if size is None else size
    if size > MAX_UPLOAD_MB * 1024 * 1024:
        return None, None, f"{name}: {size / 1024 / 1024:.1f} MB is over the {MAX_UPLOAD_MB} MB limit."
    try:
        image = vizcap.open_image(data, name=name)
    except vizcap.ImageError as e:
        return None, None, str(e)
    except Exception as e:  # a decoder bug must not reach the student as a traceback
        return None, None, f"{name}: cannot be read as an image ({type(e).__name__})."
    return image, "upload:" + hashlib.sha1(data).hexdigest()[:16], None


_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|$~:&")


def md(text) -> str:
    """`text` shown literally inside st.markdown / st.caption: every character markdown (or
    Streamlit's :colour[...] and $math$) could read as syntax is backslash-escaped. Captions,
    words and file names go through this (or html.escape inside HTML)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def image_header(captioner, ckpt: str, compact: bool = False) -> dict:
    """A strip naming the current image and the model's (greedy) caption: every page explains the same
    one. compact: one line without the thumbnail (the explorer, whose map shows the picture)."""
    img = current_image()
    exp = explanation(captioner, ckpt, img, DecodingParams())
    truth = img.get("truth") if not is_photo_model(captioner) else None  # ShapeScenes' truth, not a photo model's
    about = f"**Image:** {md(img['label'])}" + (f" · true caption: *{md(truth)}*" if truth else "")
    greedy = ("**Model's caption (greedy):** "
              f"<span class='vz-greedy-caption'>{html.escape(exp.caption) or '(empty)'}</span>")
    if compact:
        st.markdown(f"{about} · {greedy} · <small>choose another image on the Home page</small>",
                    unsafe_allow_html=True)
        return img
    left, right = st.columns([1, 7], vertical_alignment="center")
    left.image(img["image"], width=96)
    with right:
        st.markdown(about)
        st.markdown(greedy, unsafe_allow_html=True)
        st.caption("Choose another image on the Home page.")
    return img


# -- the checkpoint's own files -------------------------------------------------------------------
# Every number a page states about training comes from these files of the loaded checkpoint.


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None (missing, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file, one a line (other lines skipped); [] when missing."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def training_facts(ckpt: str) -> dict:
    """What the checkpoint's metrics.json says about its training: steps, batch_size, samples (the
    pictures it saw: samples_seen, or steps × batch size), aux_weight, bind_weight, attend_weight, minutes,
    command. Missing facts are absent, never guessed."""
    metrics = read_json(Path(ckpt) / "metrics.json") or {}
    args = metrics.get("args") if isinstance(metrics.get("args"), dict) else {}
    facts = {}
    for key in ("steps", "batch_size"):
        if isinstance(args.get(key), int) and not isinstance(args.get(key), bool):
            facts[key] = args[key]
    if isinstance(metrics.get("samples_seen"), int):
        facts["samples"] = metrics["samples_seen"]
    elif "steps" in facts and "batch_size" in facts:
        facts["samples"] = facts["steps"] * facts["batch_size"]
    for key in ("aux_weight", "bind_weight", "attend_weight"):
        if isinstance(args.get(key), (int, float)) and not isinstance(args.get(key), bool):
            facts[key] = args[key]
    if isinstance(metrics.get("train_seconds"), (int, float)):
        facts["minutes"] = metrics["train_seconds"] / 60
    if isinstance(metrics.get("command"), str):
        facts["command"] = metrics["command"]
    return facts


# -- decoding parameters and explanations ---------------------------------------------------------


def params_or_error(**values) -> DecodingParams | None:
    """DecodingParams from widget values, validated by vizcap.decoding.validate (errors shown)."""
    problems = validate(SimpleNamespace(**{**{f.name: f.default for f in fields(DecodingParams)}, **values}))
    if problems:
        for p in problems:
            st.error(p)
        return None
    return DecodingParams(**values)


# decoding widgets: DecodingParams field -> (widget key suffix, the widget's starting value)
DECODING_WIDGETS = {"strategy": ("strategy", "greedy"), "beams": ("beams", 3), "length_penalty": ("lp", 1.0),
                    "max_tokens": ("max", 20), "temperature": ("temp", 1.0), "top_k": ("topk", 0),
                    "top_p": ("topp", 1.0), "seed": ("seed", 0)}


def decoding_controls(prefix: str, expanded: bool = False) -> DecodingParams | None:
    """Strategy and its knobs. Changing them asks the model again (once per new combination). The
    widgets start from st.session_state (set here, or by a link: apply_link), never from value=."""
    for name, (suffix, start) in DECODING_WIDGETS.items():
        st.session_state.setdefault(f"{prefix}_{suffix}", start)
    with st.expander("Decoding: how the caption is chosen", expanded=expanded):
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", STRATEGIES, key=f"{prefix}_strategy",
                                format_func={"greedy": "greedy", "beam": "beam search", "sample": "sampling"}.get)
        beams = c2.number_input("Beams", 1, MAX_BEAMS, key=f"{prefix}_beams", disabled=strategy != "beam")
        length_penalty = c3.number_input("Length penalty", -10.0, 10.0, step=0.1, key=f"{prefix}_lp",
                                         disabled=strategy != "beam")
        max_tokens = c4.number_input("Max words", 1, 40, key=f"{prefix}_max")
        c5, c6, c7, c8 = st.columns(4)
        sampling = strategy == "sample"
        temperature = c5.number_input("Temperature", 0.05, 5.0, step=0.05, key=f"{prefix}_temp", disabled=not sampling)
        top_k = c6.number_input("Top-k (0 = off)", 0, 1000, key=f"{prefix}_topk", disabled=not sampling)
        top_p = c7.number_input("Top-p (1 = off)", 0.01, 1.0, step=0.05, key=f"{prefix}_topp", disabled=not sampling)
        seed = c8.number_input("Seed", 0, 2**31 - 1, key=f"{prefix}_seed", disabled=not sampling)
    values = {"strategy": strategy, "beams": int(beams) if strategy == "beam" else 1,
              "top_k": int(top_k) if sampling else 0, "top_p": float(top_p) if sampling else 1.0,
              "temperature": float(temperature) if sampling else 1.0,
              "length_penalty": float(length_penalty) if strategy == "beam" else 1.0,
              "seed": int(seed) if sampling else None, "max_tokens": int(max_tokens)}
    return params_or_error(**values)


def model_label(captioner, ckpt: str) -> str:
    """The model in a few words for exports and links' notes (never a path on this machine)."""
    if ckpt == shipped_path():
        return "the shipped ShapeScenes model"
    if is_photo_model(captioner):
        return f"Hugging Face {'BLIP' if captioner.kind == 'blip' else 'ViT+GPT-2'} “{Path(ckpt).name if Path(ckpt).exists() else ckpt}”"
    return f"checkpoint “{Path(ckpt).name}”"


# -- links: the address bar holds the view, and a link opens it again (vizcap.links) ---------------


def apply_link(prefix: str, display: dict | None = None) -> None:
    """Once per new address: set the image, the decoding widgets (`prefix`) and the display widgets
    (`display`: links.View field -> widget key) from the page's query parameters, and keep the word
    for the page (st.session_state["vz_link_word"], 1-based). Values a link cannot use are shown as
    one-line warnings; an address this app wrote itself (write_link) is not applied again."""
    from vizcap import links

    query = st.query_params.to_dict()
    if not query or query == st.session_state.get("vz_link_written"):
        return
    st.session_state["vz_link_written"] = query
    view, notes = links.parse(query)
    for note in notes:
        st.warning(note, icon=":material/link_off:")
    if "image" in query and view.image == query["image"]:
        set_link_image(view.image)
    for name, (suffix, _) in DECODING_WIDGETS.items():
        if name in query and getattr(view.decoding, name) is not None:
            st.session_state[f"{prefix}_{suffix}"] = getattr(view.decoding, name)
    for name, key in (display or {}).items():
        if name in query:
            value = getattr(view, name)
            if key.endswith(("_layer", "_head")) and value is None:
                value = "all"
            st.session_state[key] = st.session_state[_shadow(key)] = value
    if view.word is not None:
        st.session_state["vz_link_word"] = view.word


def set_link_image(image: str) -> None:
    """The picture a link names (links.image_problem already said it is valid)."""
    from vizcap.compose import compose_scene
    from vizcap.links import parse_compose

    kind, _, rest = image.partition(":")
    if kind == "scene":
        set_scene(int(rest))
    elif current_image()["id"] != image:
        placements, background = parse_compose(rest)
        scene = compose_scene(placements, background=background)
        set_image(image, scene.image, "a composed scene", scene.caption)


def write_link(view) -> str:
    """Put `view` (a vizcap.links.View) in the address bar, so that copying the address shares this
    view; an uploaded picture cannot travel in a link and is left out. Returns the query string."""
    from urllib.parse import urlencode

    from vizcap import links

    query = links.to_query(view)
    if links.image_problem(view.image):
        query.pop("image", None)
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    st.session_state["vz_link_written"] = query
    return urlencode(query)


def explanation(captioner, ckpt: str, img: dict, params: DecodingParams):
    """The explanation of the current image under `params`, from st.session_state when this exact
    (image, checkpoint, parameters) was explained before; the model runs only for a new combination."""
    store: OrderedDict = st.session_state.setdefault("vz_explanations", OrderedDict())
    key = (img["id"], ckpt, astuple(params))
    if key in store:
        store.move_to_end(key)
        return store[key]
    with st.spinner("The model is writing the caption…"):
        # every setting, explicitly: the stored key says exactly what produced the explanation (a model's
        # own defaults, e.g. a Hugging Face generation config, never slip in)
        exp = captioner.explain(img["image"], **{f.name: getattr(params, f.name) for f in fields(DecodingParams)})
    st.session_state["vz_model_calls"] = st.session_state.get("vz_model_calls", 0) + 1
    store[key] = exp
    while len(store) > MAX_EXPLANATIONS:
        store.popitem(last=False)
    return exp


def session_memo(name: str, key, compute):
    """A small per-session memo for other model-derived values (anatomy, full next-word logits)."""
    memo = st.session_state.setdefault(f"vz_memo_{name}", OrderedDict())
    if key not in memo:
        memo[key] = compute()
        while len(memo) > 8:
            memo.popitem(last=False)
    return memo[key]


def show(fig, key: str | None = None) -> None:
    """A figure from vizcap.figures with its plain-language description underneath (and as alt text)."""
    from vizcap.figures import description

    text = description(fig)
    st.plotly_chart(fig, key=key, alt=text or None, config={"displaylogo": False})
    if text:
        st.caption(md(text))
