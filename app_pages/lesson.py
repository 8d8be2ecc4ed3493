"""Lesson: a guided ten-minute tour for a projector (vizcap.lesson has the steps: one sentence and one
existing view each). Back/Next move through the steps; every step links to the same view in the
explorer (a vizcap.links address), and /lesson?step=3 opens the third step."""

from __future__ import annotations

import html
from urllib.parse import urlencode

import numpy as np
import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import figures, links, notices
from vizcap.compose import compose_scene
from vizcap.files import SHIPPED_TITLES, shipped_names
from vizcap.strategies import DecodingParams
from vizcap.lesson import PHOTO, STEPS, attention_evidence, focus_word, photo_like
from vizcap.scenes import render_scene

st.title("Lesson: where does a captioner look?")
captioner, ckpt = model_picker.require_captioner(notice=False)  # the lesson shows its own pictures
if model_picker.is_photo_model(captioner):
    st.info("This lesson is written for the shipped ShapeScenes model, whose pictures vizcap can draw and check. "
            "Choose “Shipped ShapeScenes models” in the sidebar to give it.")
    st.stop()

N = len(STEPS)
asked = st.query_params.get("step")
if asked is not None and asked != st.session_state.get("ls_step_written"):  # a link to a step
    note = links.step_note(asked, N)
    st.session_state["ls_step"] = 0 if note else int(asked) - 1
    if note:
        st.warning(note, icon=":material/link_off:")
st.session_state.setdefault("ls_step", 0)


def _move(delta: int) -> None:
    st.session_state["ls_step"] = min(max(st.session_state["ls_step"] + delta, 0), N - 1)
    st.session_state.pop("ls_reveal", None)


i = st.session_state["ls_step"]
step = STEPS[i]
st.session_state["ls_step_written"] = str(i + 1)
st.query_params.from_dict({"step": str(i + 1)})

with st.container(horizontal=True, vertical_alignment="center"):
    st.button("Back", key="ls_back", on_click=_move, args=(-1,), disabled=i == 0, icon=":material/arrow_back:")
    st.button("Next", key="ls_next", on_click=_move, args=(1,), disabled=i == N - 1, icon=":material/arrow_forward:")
    st.markdown(f"Step **{i + 1}** of {N}")
st.subheader(step.title)


@st.cache_data(show_spinner=False, max_entries=8)
def scene_of(image: str):
    """The step's scene (None for the photo)."""
    if image == PHOTO:
        return None
    kind, _, rest = image.partition(":")
    if kind == "scene":
        return render_scene(int(rest))
    placements, background = links.parse_compose(rest)
    return compose_scene(placements, background=background)


uses = None  # said beside the step's sentence (above the view it would push a projector's view off the screen)
if step.model is not None and step.model in shipped_names():  # the step needs that twin, whatever is chosen
    ckpt = model_picker.shipped_path(step.model)
    captioner = model_picker.load_captioner(ckpt)
    uses = (f"This step uses the shipped model “{SHIPPED_TITLES[step.model]}”, whichever model the sidebar has "
            "chosen.")
elif step.model is not None:
    st.warning(f"This step is written for the shipped model “{SHIPPED_TITLES[step.model]}”, which this "
               "installation lacks; it shows the chosen model instead, which may not tell the same story.")
scene = scene_of(step.image)
image, truths = (photo_like(), None) if scene is None else (scene.image, scene.captions)
truth = truths[0] if truths else None
img = {"id": f"lesson:{step.image}", "image": image, "label": step.title, "truth": truth, "truths": truths or []}
greedy = state.explanation(captioner, ckpt, img, captioner.decoding_params())
beam = state.explanation(captioner, ckpt, img, captioner.decoding_params("beam", beams=5)) if step.view == "decoding" else None
j = focus_word(greedy.tokens, truths if step.view == "failure" else None) if len(greedy) else 0
evidence = attention_evidence(captioner, greedy, scene) if step.view == "evidence" and scene is not None else None
if evidence is not None:
    j = evidence.word
maps = greedy.maps(step.method, normalize="max") if len(greedy) else None


def caption_line(exp, label: str) -> None:
    st.markdown(f"**{label}:** <span class='vz-lesson-caption'>{html.escape(exp.caption) or '(empty)'}</span>",
                unsafe_allow_html=True)


def overlay(word: int) -> None:
    widgets.show(figures.attention_overlay(image, maps[word], greedy.tokens[word], 0.55, "viridis", 1.0, step.method,
                                          height=360, unit="÷ this word's maximum"), key=f"ls_overlay_{i}")


# The step's sentence beside its view, not above it: on a 1280×800 projector the view (a map, the heads,
# the beam tree) fits the screen under the title. In a narrow main area the two columns stack, the
# sentence first (widgets.STYLE, .st-key-ls_row).
with st.container(key="ls_row"):
    left, right = st.columns([3, 2])
with right:
    st.markdown(f"<p style='font-size:1.25rem' id='vz-lesson-say'>{html.escape(step.say)}</p>", unsafe_allow_html=True)
    if uses:
        st.caption(uses)
with left:
    if step.view in ("predict", "failure"):
        if st.session_state.get("ls_reveal"):
            overlay(j)
        else:
            st.image(image, caption="Where will it look?", width=420)
    elif step.view == "heads":
        L, H = captioner.decoder_layers, captioner.decoder_heads
        per_head = [greedy.maps("cross_attention", L - 1, h, "max")[j] for h in range(H)]
        raw = [greedy.maps("cross_attention", L - 1, h, "none")[j] for h in range(H)]
        widgets.show(figures.heads_grid(image, np.stack(per_head), greedy.tokens[j], L - 1, "cross_attention", 0.55,
                                       "viridis", raw=np.stack(raw), vmax=1.0, unit="÷ each head's maximum",
                                       normalize="max", columns=2),  # 2×2: panels ~180 px in this column
                     key=f"ls_heads_{i}")
    elif step.view == "evidence" and evidence is not None:
        methods = ("cross_attention", "relevancy", "occlusion")
        panels = np.stack([greedy.maps(m, normalize="max")[j] for m in methods])
        widgets.show(figures.map_grid(
            image, panels, ["attention", "relevancy", "occlusion"],
            f"Three maps of “{greedy.tokens[j]}”",
            f"Three maps of the word '{greedy.tokens[j]}', each divided by its own peak: the decoder's "
            "cross-attention (what it attended to; its hottest cell is off the object), gradient relevancy and "
            "occlusion (what the word's probability depends on).", 0.55, "viridis", columns=3, vmax=1.0,
            unit="÷ each map's maximum"), key=f"ls_evidence_{i}")
    elif step.view == "evidence":
        st.image(image, width=420)
        st.info("On this model every object word's attention points at its object here, so this step has nothing "
                "to show.")
    elif step.view == "decoding":
        widgets.show(figures.beam_tree(beam.beam_tree, beam.token_ids, beam.ended), key=f"ls_tree_{i}")
    else:  # photo
        st.image(image, caption="A picture drawn to look like a street with a red car", width=420)
with right:
    if truth is not None:
        st.markdown(f"**True caption:** *{widgets.md(truth)}*")
    caption_line(greedy, "Greedy caption")
    if step.view == "decoding":
        caption_line(beam, "Beam search (5 beams)")
        st.caption(("Here they agree" if greedy.caption == beam.caption else "Here they disagree")
                   + f". Scores (log-probability ÷ length): greedy {greedy.score:.3f} · beam {beam.score:.3f} — "
                   "higher is better for the model, which is not the same as right.")
    if step.view in ("predict", "failure"):
        st.toggle("Reveal where it looked", key="ls_reveal")
        st.caption(f"The word: “{widgets.md(greedy.tokens[j])}” (cross-attention, each map scaled to its peak).")
    if step.view == "heads":
        st.caption(f"The word “{widgets.md(greedy.tokens[j])}”, each head's map scaled to its own peak.")
    if evidence is not None:
        word = widgets.md(evidence.text)
        kept, kept_p = evidence.without_top[0], evidence.without_top[1]
        changed, changed_p = evidence.without_object[0], evidence.without_object[1]
        st.markdown(f"- The word: **“{word}”**, probability {evidence.p_word:.2f}.\n"
                    f"- Grey the cell its attention likes best (off the object): it writes "
                    f"“{widgets.md(kept)}” ({kept_p:.2f}).\n"
                    f"- Grey the object's {len(evidence.object_cells)} cells: it writes “{widgets.md(changed)}” "
                    f"({changed_p:.2f}); “{word}” falls to {evidence.without_object[2]:.2f}.\n"
                    + "".join(f"- {m.capitalize()}'s hottest cell: {'on' if hit else 'off'} the object.\n"
                              for m, hit in evidence.found_by.items()))
        st.caption("Attention says where the decoder read from, not what its words depend on; on a model "
                   "trained to point, its maps would be the training target.")
    if step.view in ("predict", "failure", "heads", "evidence") and notices.map_status(captioner, "cross_attention"):
        st.caption("This cross-attention map: " + notices.map_status(captioner, "cross_attention") + ".")  # issue 25
    if step.view == "photo" and len(greedy):
        st.dataframe({"word": greedy.tokens, "probability": [float(p) for p in greedy.probs]}, hide_index=True,
                     height=min(35 * (len(greedy) + 1) + 3, 300),
                     column_config={"probability": st.column_config.ProgressColumn(
                         "probability", min_value=0.0, max_value=1.0, format="%.2f")})
    if step.image != PHOTO:
        query = links.to_query(links.View(image=step.image, word=j + 1, method=step.method, normalize="max",
                                          decoding=DecodingParams(strategy="beam", beams=5)
                                          if step.view == "decoding" else DecodingParams(),
                                          model=step.model if step.model in shipped_names() else None))
        st.markdown(f"[Open this in the explorer](/explorer?{urlencode(query)})")
