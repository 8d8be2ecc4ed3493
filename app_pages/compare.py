"""Compare: the same picture, the same word, the same map method under two models, side by side
(issue 25, item 6). The natural pair is the two shipped twins — attention trained to point beside
attention left free — but either side may be the sidebar's model (a checkpoint folder or a Hugging
Face captioner). The word is matched by its text in the other caption (vizcap.compare). The address
keeps the view: /compare?image=scene:42&word=3&method=cross_attention&left=shapes&right=shapes-free."""

from __future__ import annotations

import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import figures, links, notices
from vizcap.compare import matching_word
from vizcap.files import SHIPPED_TITLES, shipped_names
from vizcap.lesson import focus_word
from vizcap.maps import METHODS, available, colour_range

SIDEBAR = "sidebar"  # the sidebar's model, whatever it is

st.title("Compare two models")
st.write("The same picture and the same word under two models, with the same map method. Put the twin whose "
         "attention was **trained to point** beside the one whose attention was **left free**: a map that was "
         "trained to look right shows its training, not what the model relies on.")
names = shipped_names()
options = [*names, SIDEBAR]
label = {**SHIPPED_TITLES, SIDEBAR: "the sidebar's model"}.get

query = st.query_params.to_dict()  # a link's left=/right= (shipped names), once per new address
if query and query != st.session_state.get("cp_link_applied"):
    st.session_state["cp_link_applied"] = query
    for side in ("left", "right"):
        if side in query:
            view, notes = links.parse({"model": query[side]})
            for note in notes:
                st.warning(note.replace("model=", f"{side}="), icon=":material/link_off:")
            if view.model is not None:
                state.set_widget(f"cp_{side}", view.model)
    view, notes = links.parse({k: v for k, v in query.items() if k in ("image", "word", "method")})
    for note in notes:
        st.warning(note, icon=":material/link_off:")
    if "image" in query and view.image == query["image"]:
        from app_pages.common.address_bar import set_link_image

        set_link_image(view.image)
    if "method" in query and view.method == query["method"]:
        state.set_widget("cp_method", view.method)
    if view.word is not None:
        st.session_state["cp_link_word"] = view.word

c = st.columns(2)
left_name = c[0].selectbox("Left", options, key="cp_left", format_func=label,
                           on_change=state.persistent("cp_left", names[0] if names else SIDEBAR, options))
right_name = c[1].selectbox("Right", options, key="cp_right", format_func=label,
                            on_change=state.persistent("cp_right", names[-1] if len(names) > 1 else SIDEBAR, options))


def opened(name: str):
    if name == SIDEBAR:
        return model_picker.require_captioner(notice=False)
    path = model_picker.shipped_path(name)
    return model_picker.load_captioner(path), path


(cap_a, ckpt_a), (cap_b, ckpt_b) = opened(left_name), opened(right_name)
img = state.current_image()
exp_a = state.explanation(cap_a, ckpt_a, img, cap_a.decoding_params())  # each model's own greedy caption
exp_b = state.explanation(cap_b, ckpt_b, img, cap_b.decoding_params())
st.markdown(f"**Image:** {widgets.md(img['label'])}" + (f" · true caption: *{widgets.md(img['truth'])}*"
                                                      if img.get("truth") else "") + " · greedy captions below.")
methods = [m for m in available(exp_a.mode) if m in available(exp_b.mode)]
if not len(exp_a) or not len(exp_b) or not methods:
    st.warning("One of the two models wrote an empty caption for this picture, or they share no map method: "
               "nothing to set side by side. Choose another picture on Home or another model.")
    st.stop()
c = st.columns(2)
method = c[0].selectbox("Map method", methods, key="cp_method", format_func=lambda m: METHODS[m].label,
                        on_change=state.persistent("cp_method", methods[0], methods))
words = list(range(len(exp_a)))
asked = st.session_state.pop("cp_link_word", None)
if asked is not None:
    note = links.word_note(asked, len(exp_a))
    if note:
        st.warning(note, icon=":material/link_off:")
    else:
        state.set_widget("cp_word", asked - 1)
first = focus_word(exp_a.tokens)  # the last shape word, as the lesson picks
j = c[1].selectbox("Word (of the left caption)", words, key="cp_word",
                   format_func=lambda k: f"{k + 1}. {exp_a.tokens[k]}",
                   on_change=state.persistent("cp_word", first, words))
k, same = matching_word(exp_a.tokens, j, exp_b.tokens)
if not same:
    st.info(f"The right caption has no “{widgets.md(exp_a.tokens[j])}”: it shows its word at the nearest position, "
            f"“{widgets.md(exp_b.tokens[k])}”.")

shown = []
for exp, w in ((exp_a, j), (exp_b, k)):
    with st.spinner(f"Computing {METHODS[method].label}…"):
        shown.append(exp.maps(method, normalize="max")[w])
top, unit = colour_range(shown[0][None], method, "max")
cols = st.columns(2)
sides = zip(cols, ("a", "b"), (left_name, right_name), (cap_a, cap_b), (ckpt_a, ckpt_b), (exp_a, exp_b), (j, k), shown)
for col, side, name, captioner, ckpt, exp, w, heat in sides:
    with col:
        st.markdown(f"**{widgets.md(label(name) if name != SIDEBAR else model_picker.model_label(captioner, ckpt))}**")
        st.markdown(f"<span class='vz-lesson-caption'>{widgets.md(exp.caption)}</span>", unsafe_allow_html=True)
        widgets.show(figures.attention_overlay(exp.image, heat, exp.tokens[w], 0.55, "viridis", top, method, height=340,
                                               unit=unit), key=f"cp_overlay_{name}_{side}")
        status = notices.map_status(captioner, method)
        st.caption(f"“{widgets.md(exp.tokens[w])}”, p = {float(exp.probs[w]):.2f} · this map: "
                   + (status or "whether a loss trained it is not recorded") + ".")
link = links.to_query(links.View(image=img["id"], word=j + 1, method=method))
link.update({"left": left_name, "right": right_name} if SIDEBAR not in (left_name, right_name) else {})
if links.image_problem(img["id"]):
    link.pop("image", None)
if st.query_params.to_dict() != link:
    st.query_params.from_dict(link)
st.session_state["cp_link_applied"] = link
