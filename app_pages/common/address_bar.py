"""The address bar holds the view, and a link opens it again. Reading and writing the query itself is
vizcap.links (pure); this module applies a link to the app's state and widgets, and writes the view
back to the address bar."""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from vizcap import links
from vizcap.compose import compose_scene

from . import state
from .widgets import DECODING_WIDGETS


def apply_link(prefix: str, display: dict | None = None, model=None) -> None:
    """Once per new address: set the image, the decoding widgets (`prefix`) and the display widgets
    (`display`: links.View field -> widget key) from the page's query parameters, and keep the word
    for the page (st.session_state["vz_link_word"], 1-based). Values a link cannot use — for `model`,
    a layer or head it does not have — are shown as one-line warnings; an address this app wrote itself
    (write_link) is not applied again."""
    query = st.query_params.to_dict()
    if not query or query == st.session_state.get("vz_link_written"):
        return
    st.session_state["vz_link_written"] = query
    view, notes = links.parse(query)
    if model is not None:
        view, more = links.fit(view, model.decoder_layers, model.decoder_heads)
        notes += more
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
            state.set_widget(key, value)
    if view.word is not None:
        st.session_state["vz_link_word"] = view.word


def set_link_image(image: str) -> None:
    """The picture a link names (links.image_problem already said it is valid)."""
    kind, _, rest = image.partition(":")
    if kind == "scene":
        state.set_scene(int(rest))
    elif state.current_image()["id"] != image:
        placements, background = links.parse_compose(rest)
        scene = compose_scene(placements, background=background)
        state.set_image(image, scene.image, "a composed scene", scene.captions)


def write_link(view: links.View) -> str:
    """Put `view` in the address bar, so that copying the address shares this view; an uploaded picture
    cannot travel in a link and is left out. Returns the query string."""
    query = links.to_query(view)
    if links.image_problem(view.image):
        query.pop("image", None)
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    st.session_state["vz_link_written"] = query
    return urlencode(query)
