"""The model: the checkpoint picker in the sidebar (the shipped model, a checkpoint directory or a
Hugging Face captioner), loading it once per process (st.cache_resource), naming it, and saying what it
knows when the picture is unlike its training data."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import vizcap
from vizcap import links, notices
from vizcap.families import SUGGESTED
from vizcap.files import SHIPPED, SHIPPED_TITLES, shipped_names, shipped_title
from vizcap.images import model_view

from . import state

CHECKPOINT_ENV = "VIZCAP_CHECKPOINT"  # a checkpoint directory the app opens by default (tests, demos)


@st.cache_resource(show_spinner=False, max_entries=4)
def load_captioner(path: str, fast: bool = False) -> vizcap.Captioner:
    """vizcap.load(path, fast=fast), once per (path, fast) for the whole app (st.cache_resource)."""
    return vizcap.load(path, fast=fast)


def is_photo_model(captioner) -> bool:
    """A Hugging Face captioner of photos (ViT+GPT-2, BLIP, GIT), not a model of ShapeScenes."""
    return bool(captioner.is_photo_model)


def shipped_path(name: str = "shapes") -> str:
    """The folder of the shipped checkpoint `name`, resolved (the default: the model that opens first)."""
    return str((SHIPPED / name).resolve())


def model_label(captioner, ckpt: str) -> str:
    """The model in a few words for exports and links' notes (never a path on this machine)."""
    title = shipped_title(ckpt)
    if title is not None:
        return f"the shipped model “{title}”"
    if is_photo_model(captioner):
        return f"{captioner.family_label} “{Path(ckpt).name if Path(ckpt).exists() else ckpt}”"
    return f"checkpoint “{Path(ckpt).name}”"


def checkpoint_picker() -> None:
    """The sidebar's model choice; streamlit_app.py draws it once per run, for every page."""
    env = os.environ.get(CHECKPOINT_ENV, "").strip()
    for key in ("vz_ckpt_choice", "vz_ckpt_dir", "vz_hf_source", "vz_shipped", "vz_fast"):
        state.restore(key)
    if "vz_ckpt_choice" not in st.session_state:
        st.session_state["vz_ckpt_choice"] = "directory" if env else "shipped"
        st.session_state["vz_ckpt_dir"] = env
    names = shipped_names()
    if st.session_state.get("vz_shipped") not in names:
        st.session_state["vz_shipped"] = names[0] if names else "shapes"
    model_link(names)
    with st.sidebar:
        st.radio("Model", ["shipped", "directory", "hub"], key="vz_ckpt_choice",
                 format_func={"shipped": "Shipped ShapeScenes models", "directory": "A checkpoint directory",
                              "hub": "A Hugging Face captioner"}.get,
                 help="The shipped models were trained on ShapeScenes. A directory written by `python -m train` "
                      "(config.json, model.safetensors, tokenizer.json) loads the same way. A Hugging Face "
                      "captioner is a ViT+GPT-2 (VisionEncoderDecoder), BLIP or GIT model: a hub id or a local folder.",
                 on_change=state.keep_on_change("vz_ckpt_choice"))
        if st.session_state["vz_ckpt_choice"] == "shipped" and len(names) > 1:
            st.selectbox("Which one", names, key="vz_shipped", format_func=SHIPPED_TITLES.get,
                         on_change=state.keep_on_change("vz_shipped"),
                         help="Two twins trained by the same recipe on the same scenes. *Attention trained to "
                              "point*: a loss pulled its cross-attention and prefix maps onto the objects it names, "
                              "so where they point is the training target. *Attention left free*: no loss on any map "
                              "the app shows, so its maps are evidence of what it learned, right or wrong.")
        if st.session_state["vz_ckpt_choice"] == "directory":
            st.text_input("Checkpoint directory", key="vz_ckpt_dir", placeholder="/path/to/checkpoint",
                          on_change=state.keep_on_change("vz_ckpt_dir"))
        elif st.session_state["vz_ckpt_choice"] == "hub":
            # starts empty: nothing is loaded (or refused) until a person has typed or picked an id
            st.text_input("Hub id or folder", key="vz_hf_source", placeholder=SUGGESTED[0],
                          on_change=state.keep_on_change("vz_hf_source"),
                          help="For example " + " or ".join(f"`{s}`" for s in SUGGESTED) + ". A hub id is read from "
                               "the Hugging Face cache (downloaded there first when this machine is online).")
            st.caption("Or pick one:")
            for i, source in enumerate(SUGGESTED):
                st.button(source, key=f"vz_hf_suggested_{i}", on_click=state.set_widget, args=("vz_hf_source", source),
                          type="tertiary")
            st.toggle("Fast mode (int8)", key="vz_fast", on_change=state.keep_on_change("vz_fast"),
                      help="For a big captioner on a CPU: its linear layers in int8, so each word costs less time. "
                           "Captions and maps can differ slightly from the float32 model; every page that shows a "
                           "map then says so, with the measured cost.")
    state.keep_first_value("vz_ckpt_choice")
    if st.session_state["vz_ckpt_choice"] == "shipped":
        state.keep_first_value("vz_shipped")
    elif st.session_state["vz_ckpt_choice"] == "directory":
        state.keep_first_value("vz_ckpt_dir")
    elif st.session_state["vz_ckpt_choice"] == "hub":
        state.keep_first_value("vz_hf_source")
        state.keep_first_value("vz_fast")


def model_link(names: list[str]) -> None:
    """A link's model=NAME (a shipped checkpoint) chooses that model, once per new address; an unknown
    name is a one-line warning and the current model stays."""
    asked = st.query_params.get("model")
    if asked is None or asked == st.session_state.get("vz_model_link"):
        return
    st.session_state["vz_model_link"] = asked
    view, notes = links.parse({"model": asked})
    for note in notes:
        st.warning(note, icon=":material/link_off:")
    if view.model is not None:
        state.set_widget("vz_ckpt_choice", "shipped")
        state.set_widget("vz_shipped", view.model)


def shipped_name() -> str | None:
    """The name of the chosen shipped checkpoint ("shapes", "shapes-free"), None for another model."""
    if st.session_state.get("vz_ckpt_choice", "shipped") != "shipped":
        return None
    return st.session_state.get("vz_shipped", "shapes")


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
    return shipped_path(st.session_state.get("vz_shipped", "shapes"))


def fast_chosen() -> bool:
    """The fast mode switch is on (it is offered for Hugging Face captioners only)."""
    return st.session_state.get("vz_ckpt_choice") == "hub" and bool(st.session_state.get("vz_fast"))


def require_captioner(notice: bool = True) -> tuple[vizcap.Captioner, str]:
    """The loaded captioner and its path (or a friendly st.error and a stopped page), with the notice
    for a current picture unlike the model's training data (unfamiliar_notice) unless notice=False
    (a page that shows pictures of its own). A fast model's notice is always shown: every page that
    calls this shows its maps or captions."""
    captioner, path = _load_chosen()
    fast_mode_notice(captioner)
    if notice:
        unfamiliar_notice(captioner)
    return captioner, path


def fast_mode_notice(captioner) -> None:
    """For a model in fast mode: that its maps come from int8 layers, and the measured cost."""
    said = notices.fast_notice(captioner)
    if said:
        st.info(said, icon=":material/speed:")


def _load_chosen() -> tuple[vizcap.Captioner, str]:
    """The loaded captioner and its path, or a friendly st.error and a stopped page."""
    path = checkpoint_path()
    hub = st.session_state.get("vz_ckpt_choice") == "hub"
    if not path:
        st.info("Type a Hugging Face hub id or a local folder in the sidebar, or pick one of its suggestions (or "
                "choose the shipped model)." if hub else
                "Type the path of a checkpoint directory in the sidebar (or choose the shipped model).")
        st.stop()
    try:
        shown = Path(path).name if Path(path).exists() else path
        with st.spinner(f"Loading {shown}… (a big model takes a while the first time: its weights are read into "
                        "memory once, then every page reuses them)"):
            return load_captioner(path, fast_chosen()), path
    except vizcap.CheckpointError as e:
        shipped = shipped_title(path) is not None
        st.error(("The shipped model is not available yet" if shipped else "This checkpoint cannot be loaded")
                 + f": {e}. " + ("Choose a checkpoint directory in the sidebar." if shipped else
                                 "Type another hub id or folder in the sidebar, or choose the shipped model." if hub
                                 else "Pick another directory in the sidebar, or the shipped model."))
    except Exception as e:  # never a traceback for a bad directory
        st.error(f"This checkpoint cannot be loaded: {type(e).__name__}: {e}. Pick another one in the sidebar.")
    st.stop()
    raise AssertionError  # st.stop() does not return


def shapescenes_only(captioner, what: str) -> bool:
    """For a photo model, say once that `what` needs ShapeScenes' known truth and return True (the
    caller then leaves it out); False for vizcap's own models."""
    if not is_photo_model(captioner):
        return False
    st.info(f"{what} needs ShapeScenes, whose truth vizcap knows; this is a photo captioner, so it is left out here.")
    return True


def unfamiliar_notice(captioner) -> None:
    """While the current picture is unlike what the model was trained on — an upload for the shipped
    ShapeScenes model (or any vizcap checkpoint), a drawn scene for a photo captioner — say on every
    page what the model knows, that a word's probability is confidence and not correctness, and show
    on request what the model actually saw."""
    img = state.current_image()
    upload = img["id"].startswith("upload:")
    if is_photo_model(captioner):
        if upload:
            return
        knows = notices.PHOTOS_ONLY
    else:
        if not upload:
            return
        knows = notices.SHAPESCENES_ONLY
    seen = model_view(captioner, img["image"])
    side = seen.size
    with st.container(border=True):
        st.markdown(f":material/info: **{knows}.** A word's probability is how *sure* the model is, not whether "
                    f"the word is right. It saw this picture squashed to {side[0]}×{side[1]} pixels.")
        if st.toggle("Show what the model saw", key="vz_show_input"):
            st.image(seen, caption=f"The model's input, {side[0]}×{side[1]}", width=min(256, 2 * side[0]))
