"""Caption & attention explorer: the caption word by word, and where the model looked for each word.

Only the decoding controls ask the model for a new explanation; every other widget here (word,
method, layer, head, normalisation, sinks, opacity, colour scale, play) redraws the stored one."""

from __future__ import annotations

import html
import os
import re
import time
from contextlib import nullcontext

import numpy as np
import streamlit as st

from app_pages.common import address_bar, model_picker, state, widgets
from vizcap import figures, links, notices, render
from vizcap.maps import METHODS, NORMALIZATIONS, available, colour_range, select
from vizcap.maps import normalize as normalize_maps

PLAY_SECONDS = float(os.environ.get("VIZCAP_PLAY_SECONDS", "0.7"))
NORM_HELP = ("none: raw values on the method's own scale (0 to 1 for attention shares), so a weak map stays weak; "
             "relevancy has no fixed scale, so its top is the caption's largest value · max: each word's map divided "
             "by its own maximum · sum: each map sums to 1 · global: divided by the maximum over all words · the "
             "colour bar names the unit")

st.title("Caption & attention explorer")
captioner, ckpt = model_picker.require_captioner()
# a link (/explorer?image=scene:42&word=3&method=rollout&normalize=max) sets the view before any widget
address_bar.apply_link("ex", {"method": "ex_method", "layer": "ex_layer", "head": "ex_head", "normalize": "ex_norm",
                         "sinks": "ex_sinks"}, model=captioner)
header = st.container()  # filled once the explanation is known: it names the decoding of the caption shown
img = state.current_image()
params = widgets.decoding_controls("ex", captioner, ckpt)
if params is None:
    st.stop()
exp = state.explanation(captioner, ckpt, img, params)
with header:
    widgets.image_header(captioner, ckpt, compact=True, exp=exp)
T = len(exp)
if T == 0:
    st.warning("The model wrote an empty caption for this image, so there is no word to explain. "
               "Try another image, or sampling in the decoding settings.")
    st.stop()


# -- display settings (never call the model) -----------------------------------------------------
# state.persistent(key, default) runs before each widget (an argument is evaluated first): the
# settings start at their defaults and come back as they were after a visit to another page.
methods = list(available(exp.mode))  # the registry (vizcap.maps.METHODS): a model's mode decides which it has
L, H = captioner.decoder_layers, captioner.decoder_heads
ALL = "all"  # the mean over layers / heads (a string: a None option would read as "nothing chosen")
layers, heads = [ALL, *range(L)], [ALL, *range(H)]
# The caption on top; the map on the left; on the right the word controls, the map settings and the word's
# probability: caption, controls and map fit one screen (1280×800) on a projector, and the map stays in
# view beside its settings while they are changed (issue 26, item 15). In a narrow main area the right
# column goes below the map (a column with a chart keeps 18rem, widgets.STYLE), so the map keeps its width.
notice_slot = st.container()
caption_slot = st.empty()
left, right = st.columns([3, 2])
map_slot = left.empty()
offer_slot = left.empty()  # a photo captioner's full relevancy, on request (full_relevancy_on_request)
controls_slot = right.empty()
with right.expander("Map settings: method, layer, head, normalisation, colours", expanded=False):
    method = st.selectbox("Map method", methods, key="ex_method", format_func=lambda m: METHODS[m].label,
                          help=" · ".join(f"{METHODS[m].label}: {METHODS[m].help}" for m in methods),
                          on_change=state.persistent("ex_method", methods[0], methods))
    per_head = METHODS[method].per_layer_head
    c = st.columns(2)  # two to a row: the column beside the map is ~320 px wide at 1280 px
    layer = c[0].selectbox("Layer", layers, key="ex_layer", disabled=not per_head,
                           format_func=lambda v: "all (mean)" if v == ALL else f"layer {v}",
                           on_change=state.persistent("ex_layer", ALL, layers))
    head = c[1].selectbox("Head", heads, key="ex_head", disabled=not per_head,
                          format_func=lambda v: "all (mean)" if v == ALL else f"head {v}",
                          on_change=state.persistent("ex_head", ALL, heads))
    c = st.columns(2)
    normalize = c[0].selectbox("Normalisation", NORMALIZATIONS, key="ex_norm", help=NORM_HELP,
                               on_change=state.persistent("ex_norm", "max", NORMALIZATIONS))
    cmap = c[1].selectbox("Colour scale", figures.COLORSCALES, key="ex_cmap", help="Both are colour-blind safe.",
                          on_change=state.persistent("ex_cmap", figures.COLORSCALES[0], figures.COLORSCALES))
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, step=0.05, key="ex_opacity",
                        on_change=state.persistent("ex_opacity", 0.55))
    sinks = st.toggle("Discount attention sinks", key="ex_sinks",
                      help="Transformers park spare attention on a few cells whatever the word. This subtracts "
                           "each cell's median over the caption, keeping what is specific to each word.",
                      on_change=state.persistent("ex_sinks", False))
layer = None if layer == ALL or not per_head else int(layer)
head = None if head == ALL or not per_head else int(head)
summary_slot = right.empty()  # "Map: …", once the method drawn is known (full_relevancy_on_request)
word_slot = right.empty()
if exp.crop:
    left.caption(widgets.md(exp.crop[0].upper() + exp.crop[1:]) + ".")


def seconds_per_word(name: str, seconds: float | None = None) -> float | None:
    """How long method `name` took per word the last time on this model (None: never); given `seconds`, the
    time per word just measured is kept for the next estimate."""
    kept = st.session_state.setdefault("ex_seconds_per_word", {})
    if seconds is not None:
        kept[(captioner.name, name)] = seconds
    return kept.get((captioner.name, name))


def on_request(name: str, words: int):
    """A spinner saying what is computed and how long it took last time on this model (per word), for
    the methods the registry marks on_demand (relevancy through the encoder, occlusion); else nothing."""
    if not METHODS[name].on_demand:
        return nullcontext()
    last = seconds_per_word(name)
    expect = f" — about {last * words:.0f} s, going by the last time" if last else " — the first time on this model"
    return st.spinner(f"Computing {METHODS[name].label} for {words} word{'s' if words != 1 else ''}{expect}…",
                      show_time=True)


def timed(name: str, words: int, compute):
    """compute() under on_request's spinner; the seconds per word are kept for the next estimate."""
    start = time.perf_counter()
    with on_request(name, words):
        out = compute()
    if METHODS[name].on_demand and time.perf_counter() - start > 0.05:  # a real computation, not the kept maps
        seconds_per_word(name, (time.perf_counter() - start) / max(words, 1))
    return out


def full_relevancy_on_request() -> str:
    """The method to draw. A photo captioner's full relevancy (Hugging Face's, or a vizcap model trained on
    photos with a pretrained ViT) is a backward pass through its whole ViT for every word: seconds to
    minutes on a laptop's CPU (BLIP's 577-token encoder the longest). Until it is asked for, its decoder
    relevancy is drawn (about one explain's time, issue 28) with a button that carries it through the ViT
    under a progress bar, the time it expects beside it. A ShapeScenes model's takes a blink: drawn at once."""
    if method != "relevancy" or not captioner.is_photo_model or exp.is_kept("relevancy"):
        return method
    last = seconds_per_word("relevancy")
    expect = (f"about {last * T:.0f} s, going by the last time on this model" if last else
              "the first time on this model: the bar shows how far it is")
    with offer_slot.container():
        st.info(f"Showing **decoder relevancy** (gradients stopped at the encoder's output), computed at once. "
                f"Full relevancy also follows the encoder's attention back to the patches: "
                f"{expect}.", icon=":material/hourglass_top:")
        if not st.button("Compute full relevancy", key="ex_full_relevancy", icon=":material/play_arrow:"):
            return "decoder_relevancy"
        bar, start = st.progress(0.0), time.perf_counter()

        def progress(done: int, words: int) -> None:
            left_s = (time.perf_counter() - start) / done * (words - done) if done else None
            bar.progress(done / words, text=f"{done} of {words} words" + (
                f" — about {left_s:.0f} s left" if left_s is not None else
                " — running the model once over the caption, keeping every attention map"))

        exp.relevancy_maps(True, progress=progress)
    seconds_per_word("relevancy", (time.perf_counter() - start) / max(T, 1))
    offer_slot.empty()
    return method


drawn = full_relevancy_on_request()
summary = " · ".join([
    METHODS[drawn].label,
    *([("all layers (mean)" if layer is None else f"layer {layer}"), ("all heads (mean)" if head is None else f"head {head}")]
      if per_head else ["every layer and head"]),
    {"none": "raw values", "max": "each word scaled to its own peak", "sum": "each map sums to 1",
     "global": "scaled to the caption's peak"}[normalize],
    *(["attention sinks discounted"] if sinks else [])])
summary_slot.caption("Map: " + summary + " (change in Map settings)")
# [T, gh, gw]; the model only for the gradient and occlusion methods, once per explanation
maps = timed(drawn, T, lambda: exp.maps(drawn, layer, head, normalize, sinks))
vmax, unit = colour_range(maps, drawn, normalize, sinks)  # one colour scale for every word and view


UPCOMING = "#6b6b6b"  # words still to come: grey, yet 5.3:1 on white (WCAG AA; #b8b8b8 was 2:1)


def caption_html(j: int) -> str:
    words = []
    for i, w in enumerate(exp.tokens):
        w = html.escape(w)
        if i == j:
            words.append(f"<span style='background:#0072B2;color:white;padding:0 .25em;border-radius:.25em'>{w}</span>")
        elif i < j:
            words.append(f"<span>{w}</span>")
        else:
            words.append(f"<span style='color:{UPCOMING}'>{w}</span>")
    return f"<p style='font-size:1.5rem;line-height:2.2rem' id='vz-caption'>{' '.join(words)}</p>"


# -- the word: step, play, choose ------------------------------------------------------------------
FUNCTION_WORDS = {"a", "an", "the", "two", "three", "and", "of", "left", "right", "above", "below", "is", "on", "in",
                  "with", "to", "at", "next"}
linked = st.session_state.pop("vz_link_word", None)  # a link names the word (1-based)
note = links.word_note(int(linked), T) if linked is not None else None
if note:  # a word this caption does not have: said, never quietly replaced by another
    notice_slot.warning(note, icon=":material/link_off:")
if linked is not None and not note:
    st.session_state["ex_for"] = id(exp)
    st.session_state["ex_tok"] = int(linked) - 1
elif note or st.session_state.get("ex_for") != id(exp) or st.session_state.get("ex_tok", 0) >= T:
    # a new caption: start on its first content word (the first "a" says little about where it looked)
    st.session_state["ex_for"] = id(exp)
    st.session_state["ex_tok"] = next((i for i, w in enumerate(exp.tokens) if w.lower() not in FUNCTION_WORDS), 0)


def _step(delta: int) -> None:
    st.session_state["ex_tok"] = int(np.clip(st.session_state.get("ex_tok", 0) + delta, 0, T - 1))


def _play() -> None:
    st.session_state["ex_play"] = True


def word_panel(j: int, key: str | None) -> None:
    """The word's probability and its alternatives (beside the map)."""
    st.metric(f"Probability of “{widgets.md(exp.tokens[j])}”", f"{float(exp.probs[j]):.2f}",
              help="The model's probability for the word it wrote, given the image and the words before: how "
                   "sure it was, not whether the word is right.")
    widgets.show(figures.alternatives_bar(exp.top_tokens[j], exp.top_probs[j], exp.tokens[j], j), key=key)
    if exp.n_extra and exp.extra_attention is not None:  # Hugging Face encoders: the class token's share, apart from the map
        chosen = per_head and (layer is not None or head is not None)
        share = float(exp.extra_share(layer if per_head else None, head if per_head else None)[j])
        where = "the chosen layer and head" if chosen else "mean of layers and heads"
        which = "cross-attention" if exp.cross is not None else "self-attention"
        st.caption(f"Class token: {figures.percent(share)} of this word's {which} ({where}) went to the "
                   "encoder's class token, not to a patch; the map shows the patches only.")


def overlay_figure(j: int):
    return figures.attention_overlay(exp.image, maps[j], exp.tokens[j], opacity, cmap, vmax, drawn, height=380,
                                     unit=unit)


CONTRAST_HELP = ("A contrastive map: where the image made the model prefer its word over this alternative. "
                 "Relevancy (or decoder relevancy) of the difference of the two logits at this step; with "
                 "occlusion as the method, the drop of the difference of the two probabilities when each cell is "
                 "greyed. Empty: the word's own map.")


def contrast_picker(j: int) -> int | None:
    """“Why this word and not…”: one of the step's other likely tokens, or None (the word's own map)."""
    others = [k for k, i in enumerate(exp.top_ids[j].tolist()) if i != exp.token_ids[j] and exp.top_probs[j][k] > 0]
    choice = st.selectbox(f"Why “{widgets.md(exp.tokens[j])}” and not…", [None, *others], key=f"ex_contrast_{j}",
                          format_func=lambda k: "— (the word's own map)" if k is None else
                          f"“{exp.top_tokens[j][k]}” (p = {float(exp.top_probs[j][k]):.2f})", help=CONTRAST_HELP)
    return None if choice is None else int(exp.top_ids[j][choice])


def contrast_figure(j: int, alternative: int):
    """The contrastive map of word j against `alternative`, drawn in the overlay's place, its label saying so."""
    how = drawn if drawn in exp.CONTRASTIVE_METHODS else "relevancy"
    raw = timed(how, 1, lambda: exp.contrastive(j, alternative, how))
    shown = normalize_maps(raw[None], normalize)
    top, label = colour_range(shown, how, normalize)
    other = exp.top_tokens[j][exp.top_ids[j].tolist().index(alternative)]
    st.caption(f"Contrastive {METHODS[how].label}: why “{widgets.md(exp.tokens[j])}” and not “{widgets.md(other)}” "
               f"({'the drop of p(word) − p(alternative) when each cell is greyed' if how == 'occlusion' else 'relevance of logit(word) − logit(alternative)'}; "
               f"{'' if how in (method, drawn) else 'the chosen method has no contrastive form, so relevancy; '}"
               "choose “—” to see the word's own map).")
    return figures.attention_overlay(exp.image, shown[0], f"{exp.tokens[j]}, not {other}", opacity, cmap, top, how,
                                     height=380, unit=label)


if st.session_state.pop("ex_play", False):
    for j in range(T):  # the caption appears word by word; the map, the controls and the probability follow
        caption_slot.markdown(caption_html(j), unsafe_allow_html=True)
        controls_slot.markdown(f"**Playing:** word {j + 1} of {T}, “{widgets.md(exp.tokens[j])}”")
        with map_slot.container():
            widgets.show(overlay_figure(j), key=f"ex_play_overlay_{j}")
        with word_slot.container():
            word_panel(j, key=f"ex_play_alternatives_{j}")
        time.sleep(PLAY_SECONDS)
    st.session_state["ex_tok"] = T - 1

with controls_slot.container():
    with st.container(horizontal=True, wrap=True):  # buttons as wide as their words: they wrap, never cut
        st.button("Back", key="ex_prev", on_click=_step, args=(-1,), icon=":material/arrow_back:")
        st.button("Next", key="ex_next", on_click=_step, args=(1,), icon=":material/arrow_forward:")
        st.button("Play", key="ex_play_btn", on_click=_play, icon=":material/play_arrow:",
                  help="Write the caption word by word, each word with its map")
    j = st.select_slider("Word", options=list(range(T)), key="ex_tok",
                         format_func=lambda i: f"{i + 1}. {exp.tokens[i]}")
caption_slot.markdown(caption_html(j), unsafe_allow_html=True)
if notices.piece_notice(exp.tokens):  # BLIP's "##op": say what a piece is where the pieces are read
    st.caption(widgets.md(notices.piece_notice(exp.tokens)))
word = exp.tokens[j]
link = address_bar.write_link(links.View(image=img["id"], word=j + 1, method=method, layer=layer, head=head,
                                    normalize=normalize, sinks=sinks, decoding=params,
                                    model=model_picker.shipped_name() if model_picker.shipped_name() != "shapes" else None))
with word_slot.container():  # first: the contrast chosen here decides what the map shows
    word_panel(j, key="ex_alternatives")
    contrast = contrast_picker(j)
with map_slot.container():
    widgets.show(overlay_figure(j) if contrast is None else contrast_figure(j, contrast), key="ex_overlay")
    if contrast is None and notices.map_status(captioner, drawn):  # beside the map: is it evidence? (issue 25)
        trained = drawn in (notices.trained_maps(captioner) or ())
        st.caption((":material/school: **Trained to point.** " + widgets.md(notices.attention_notice(captioner))
                    if trained else f"**{METHODS[drawn].label.capitalize()}**: nothing trained this map to point, so "
                    "where it points is evidence of what the model used (Training & trust measures how far).")
                   + " Other methods: the map settings.")
    if exp.fast:  # beside the map too: its numbers are the int8 model's (the cost: the notice above)
        st.caption(f":material/speed: This map comes from the fast ({exp.precision}) mode; its measured cost is "
                   "in the notice at the top of the page.")

# -- more views: only the open tab is drawn ---------------------------------------------------------
# (choosing a tab reruns the page), so a word or opacity change redraws one view, not every tab's figures.


def heads_view() -> None:
    head_method = method if per_head else next(m for m in methods if METHODS[m].per_layer_head)
    if not per_head:
        st.caption(f"{method} combines every head, so this grid shows the {head_method.replace('_', ' ')} heads.")
    grid_layer = st.selectbox("Layer", list(range(L)), key="ex_grid_layer", format_func=lambda v: f"layer {v}",
                              on_change=state.persistent("ex_grid_layer", layer if layer is not None else L - 1,
                                                          range(L)))
    shown = np.stack([exp.maps(head_method, grid_layer, h, normalize, sinks) for h in range(H)])  # [H, T, gh, gw]
    raw = np.stack([exp.maps(head_method, grid_layer, h, "none", sinks)[j] for h in range(H)])
    top, grid_unit = colour_range(shown, head_method, normalize, sinks)
    widgets.show(figures.heads_grid(exp.image, shown[:, j], word, grid_layer, head_method, opacity, cmap, raw=raw,
                                   vmax=top, unit=grid_unit, normalize=normalize), key="ex_heads")


def prefix_view() -> None:
    if exp.prefix_is_image:
        st.info(f"This model's prefix tokens are the image's own tokens: the encoder's class token and its "
                f"{exp.grid[0]}×{exp.grid[1]} patches, placed before the words. Each patch token is one cell of "
                "the grid, so the **prefix** map of a word already is its attention to them (the class token's "
                "share is given beside the word's probability).")
        return
    if exp.mapper is None or exp.self_prefix is None:
        st.info("This model has no prefix tokens (mode “cross”): it reads the image only through cross-attention.")
        return
    widgets.show(figures.prefix_maps(exp.image, exp.prefix_maps, exp.grid, opacity, cmap), key="ex_prefix_maps")
    widgets.show(figures.word_prefix_heatmap(exp.tokens, select(exp.self_prefix, layer, head), cmap),
                key="ex_word_prefix")


def vit_view() -> None:
    """Where one patch (or the class token) looks inside the vision transformer, layer by layer."""
    if exp.encoder is None:
        st.info("This model's encoder is a convolutional network, not a vision transformer: it has no "
                "self-attention between patches to show. The default ShapeScenes model and the Hugging Face "
                "ViT captioners have one.")
        return
    gh, gw = exp.grid
    n_layers, n_heads = exp.encoder.shape[0], exp.encoder.shape[1]
    cells = [(r, c) for r in range(gh) for c in range(gw)]
    if st.session_state.get("ex_vit_for") != (id(exp), j):  # a new word: start on the cell its map is hottest in
        st.session_state["ex_vit_for"] = (id(exp), j)
        st.session_state["ex_vit_cell"] = cells[int(np.argmax(maps[j]))]
    try:  # the picker's last click (Streamlit keeps a chart's selection in session state under its key)
        points = st.session_state["ex_vit_pick"]["selection"]["points"]
    except (KeyError, TypeError):
        points = []
    if points and isinstance(points[0].get("point_index"), int):  # the picker's points run row by row
        clicked = divmod(points[0]["point_index"], gw)
        if clicked != st.session_state.get("ex_vit_clicked"):  # a new click (a redraw keeps the old selection)
            st.session_state["ex_vit_clicked"] = clicked
            st.session_state["ex_vit_cell"] = clicked
    left_col, right_col = st.columns([2, 3])
    with left_col:
        query = st.radio("Look from", ["a patch", "the class token"], key="ex_vit_query", horizontal=True,
                         disabled=exp.encoder.shape[-1] == gh * gw,  # no class token in this encoder
                         help="A patch token: one cell of the grid. The class token belongs to no patch; "
                              "vizcap's decoder reads the patches, not it.",
                         on_change=state.persistent("ex_vit_query", "a patch"))
        cell = st.selectbox("Patch (or click one below)", cells, key="ex_vit_cell",
                            format_func=lambda rc: f"row {rc[0] + 1}, column {rc[1] + 1}",
                            disabled=query != "a patch")
        st.plotly_chart(figures.patch_picker(exp.image, exp.grid, cell if query == "a patch" else None),
                        key="ex_vit_pick", on_select="rerun", selection_mode="points",
                        config={"displaylogo": False, "displayModeBar": False})
    with right_col:
        c = st.columns(2)
        vit_method = c[0].radio("Show", ["attention", "rollout"], key="ex_vit_method", horizontal=True,
                                help="attention: that token's self-attention in each layer · rollout: where its "
                                     "representation came from, through all the layers up to each one",
                                on_change=state.persistent("ex_vit_method", "attention"))
        heads = [ALL, *range(n_heads)]
        vit_head = c[1].selectbox("Head", heads, key="ex_vit_head", disabled=vit_method == "rollout",
                                  format_func=lambda v: "all (mean)" if v == ALL else f"head {v}",
                                  on_change=state.persistent("ex_vit_head", ALL, heads))
        vit_head = None if vit_head == ALL or vit_method == "rollout" else int(vit_head)
        q = tuple(cell) if query == "a patch" else "cls"
        stack = np.stack([exp.encoder_maps(q, layer=i, head=vit_head, method=vit_method) for i in range(n_layers)])
        shares = [exp.encoder_extra_share(q, layer=i, head=vit_head, method=vit_method) for i in range(n_layers)]
        name = f"the patch at row {cell[0] + 1}, column {cell[1] + 1}" if query == "a patch" else "the class token"
        widgets.show(figures.encoder_layers(exp.image, stack, shares, name, vit_method, opacity, cmap,
                                           cell=tuple(cell) if query == "a patch" else None, head=vit_head),
                    key="ex_vit_layers")


def export_view() -> None:
    st.write("Download what you see, for a report or a slide.")
    stem = f"vizcap-{img['id'].replace(':', '-')}-{drawn}"  # what is drawn (relevancy not yet asked for: decoder)
    safe_word = re.sub(r"[^\w-]+", "_", word)  # a file name: no / < > … from a BPE word
    e = st.columns(3)

    status = notices.map_status(captioner, drawn)
    settings = f"{summary} · {model_picker.model_label(captioner, ckpt)}" + (f" · this map: {status}" if status else "")
    settings += f" · fast ({exp.precision}) mode" if exp.fast else ""

    def png() -> bytes:
        import io

        buf = io.BytesIO()
        render.labelled_overlay(exp.image, maps[j], word, unit, vmax, note=settings, alpha=opacity,
                                cmap=cmap).save(buf, "PNG")
        return buf.getvalue()

    e[0].download_button("PNG: this word's map, labelled", png, file_name=f"{stem}-{j + 1}-{safe_word}.png", mime="image/png",
                         key="ex_dl_png", on_click="ignore")
    e[1].download_button("GIF: the caption, word by word",
                         lambda: render.caption_gif(exp.image, exp.tokens, maps, alpha=opacity, cmap=cmap, vmax=vmax),
                         file_name=f"{stem}.gif", mime="image/gif", key="ex_dl_gif", on_click="ignore")
    e[2].download_button("JSON: caption, probabilities, maps, settings",
                         lambda: exp.to_json((drawn,), normalize, layer=layer if per_head else None,
                                             head=head if per_head else None, discount_sinks=sinks,
                                             model=model_picker.model_label(captioner, ckpt), image=img["label"]),
                         file_name=f"{stem}.json", mime="application/json", key="ex_dl_json", on_click="ignore")
    st.download_button("Download interactive page", lambda: exp.to_html(
                           model=model_picker.model_label(captioner, ckpt), image=img["label"], method=method,
                           layer=layer, head=head, normalize=normalize, discount_sinks=sinks, word=j, cmap=cmap,
                           opacity=opacity),
                       file_name=f"vizcap-{img['id'].replace(':', '-')}.html", mime="text/html", key="ex_dl_html",
                       on_click="ignore", icon=":material/download:",
                       help="One HTML file with everything inside: the picture, every word, every map method with "
                            "its layers, heads and normalisations, the probabilities and the notices. It opens "
                            "offline in any browser (nothing is loaded from the network); relevancy and occlusion "
                            "are computed for it if they were not yet.")


def link_view() -> None:
    st.write("The address bar always holds a link to exactly this view: the picture, the word, the map "
             "settings and the decoding settings. Copy it into your slides or notes; opening it brings this "
             "view back (uploaded pictures cannot travel in a link; examples and composed scenes can).")
    st.code(f"/explorer?{link}" if link else "/explorer", language=None)


TABS = {"All heads of a layer": heads_view, "Prefix tokens": prefix_view, "Inside the ViT": vit_view,
        "Export": export_view, "Link to this view": link_view}
for tab, view in zip(st.tabs(list(TABS), key="ex_view", on_change="rerun"), TABS.values()):
    if tab.open:
        with tab:
            view()
