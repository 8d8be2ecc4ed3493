"""What the app keeps in st.session_state, and the only code that writes it (all keys "vz_…", except
each page's own widget keys):

  vz_image        {"id", "label", "image", "truth", "truths"}: the picture every page explains (a ShapeScenes
                  scene's canonical caption and every right caption, vizcap.scenes.Scene.captions)
  vz_explanations {(image id, checkpoint, decoding params, precision): Explanation}, the newest 16
  vz_model_calls  how many times this session asked the model to explain an image
  vz_memo_<name>  other model-derived values (anatomy, next-word logits), the newest 8 each
  _keep_<key>     the kept value of a widget that must survive a visit to another page (persistent)

The model itself is not here: it is one object per process (model_picker.load_captioner)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import astuple

import streamlit as st

from vizcap.links import DEFAULT_SCENE
from vizcap.strategies import DecodingParams
from vizcap.scenes import render_scene

MAX_EXPLANATIONS = 16
MAX_MEMO = 8

# -- widgets that keep their values across pages ---------------------------------------------------
# Streamlit forgets a widget's value when a run does not draw it, and treats the same key drawn by
# another page as a new widget. One mechanism bridges it: a shadow copy of the value in
# st.session_state under shadow(key), written by the widget's on_change callback and read back
# before the widget is drawn again. Pages use persistent(); the checkpoint picker, whose defaults
# depend on each other, uses its three steps directly.


def shadow(key: str) -> str:
    return f"_keep_{key}"


def restore(key: str) -> None:
    """Before drawing the widget `key`: it gets back the value it had on another page."""
    if shadow(key) in st.session_state:
        st.session_state[key] = st.session_state[shadow(key)]


def keep_on_change(key: str):
    """The widget's on_change callback: runs before the script, so restore() sees the new value."""
    return lambda: st.session_state.__setitem__(shadow(key), st.session_state.get(key))


def keep_first_value(key: str):
    """After drawing the widget `key`: its first value becomes the shadow copy."""
    st.session_state.setdefault(shadow(key), st.session_state.get(key))
    return st.session_state.get(key)


def persistent(key: str, default, options=None):
    """Call right before drawing the widget `key`, drawn with on_change=<the returned callback> and
    without a default of its own (value=/index=): it starts at `default`, and keeps its value across
    visits to other pages and tabs. A kept value that is no longer among `options` (another model)
    goes back to `default`."""
    restore(key)
    if key not in st.session_state or (options is not None and st.session_state[key] not in options):
        st.session_state[key] = default
        st.session_state[shadow(key)] = default
    return keep_on_change(key)


def set_widget(key: str, value) -> None:
    """Set a persistent widget's value from outside it (a link), kept across pages like a user's choice."""
    st.session_state[key] = st.session_state[shadow(key)] = value


# -- the current image ---------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def scene_image(seed: int):
    scene = render_scene(int(seed))
    return scene.image, scene.captions


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnail(seed: int, side: int = 160):
    """The example scene letter-boxed to a square, so that a gallery row lines up."""
    from PIL import ImageOps

    return ImageOps.pad(scene_image(int(seed))[0], (side, side), color=(255, 255, 255))


def set_image(image_id: str, image, label: str, truths: list[str] | None = None) -> None:
    """The current picture; `truths`: every right caption of a ShapeScenes picture, canonical first."""
    st.session_state["vz_image"] = {"id": image_id, "image": image, "label": label,
                                    "truth": truths[0] if truths else None, "truths": list(truths or [])}


def is_right(caption: str, img: dict) -> bool:
    """The caption is one of the picture's right captions (a scene has several phrasings)."""
    return caption in (img.get("truths") or [])


def set_scene(seed: int) -> None:
    image, captions = scene_image(int(seed))
    set_image(f"scene:{int(seed)}", image, f"ShapeScenes example {int(seed)}", captions)


def current_image() -> dict:
    if "vz_image" not in st.session_state:
        set_scene(DEFAULT_SCENE)
    return st.session_state["vz_image"]


# -- explanations and other model results -----------------------------------------------------------


def explanation(captioner, ckpt: str, img: dict, params: DecodingParams):
    """The explanation of the current image under `params`, from st.session_state when this exact
    (image, checkpoint, parameters) was explained before; the model runs only for a new combination."""
    store: OrderedDict = st.session_state.setdefault("vz_explanations", OrderedDict())
    key = (img["id"], ckpt, astuple(params), captioner.precision)  # a fast model's maps are its own
    if key in store:
        store.move_to_end(key)
        return store[key]
    with st.spinner("The model is writing the caption…"):
        # every setting, explicitly: the stored key says exactly what produced the explanation (a model's
        # own defaults, e.g. a Hugging Face generation config, never slip in)
        exp = captioner.explain(img["image"], params=params)
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
        while len(memo) > MAX_MEMO:
            memo.popitem(last=False)
    return memo[key]
