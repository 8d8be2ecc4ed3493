"""Decoding lab: the same model, five ways of choosing words, side by side.

Each strategy's caption is explained once per setting (kept in st.session_state). The live plot at
the bottom redraws the next-word distribution from stored logits with vizcap.decoding.filter_logits:
moving its sliders never runs the model."""

from __future__ import annotations

import html

import numpy as np
import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import figures, records
from vizcap.files import SHIPPED_TITLES, shipped_names
from vizcap.strategies import MAX_BEAMS, STRATEGIES
from vizcap.explain import teacher_forced

st.title("Decoding lab")
st.write("At every step the model gives a probability to every word of its vocabulary. **How** the next word is "
         "picked from that distribution is a separate choice — and it changes the caption.")
captioner, ckpt = model_picker.require_captioner()
img = widgets.image_header(captioner, ckpt)


@st.cache_data(show_spinner=False, max_entries=8)
def measured_spread(folder: str, stamp) -> dict | None:
    """decoding.json's figures, read once per version of the file (not on every re-render)."""
    spread = records.decoding_spread(folder) if stamp is not None else None
    return None if spread is None else {k: v for k, v in spread.items() if k != "records"}


def _new_seed() -> None:
    st.session_state["dl_seed"] = int(st.session_state.get("dl_seed", 0)) + 1


with st.container(border=True):
    # a row that wraps at narrow widths (each knob keeps a readable width) instead of seven squeezed columns
    with st.container(horizontal=True, wrap=True, vertical_alignment="bottom"):
        beams = st.number_input("Beams", 2, MAX_BEAMS, 4, key="dl_beams", width=150,
                                help="How many hypotheses beam search keeps at every step (beam-search column).")
        length_penalty = st.number_input("Length penalty", -2.0, 3.0, 1.0, 0.1, key="dl_lp", width=150,
                                         help="Beam score = log p / length^penalty: higher favours longer captions "
                                              "(beam-search column).")
        top_k = st.number_input("Top-k", 1, 1000, 3, key="dl_topk", width=150,
                                help="Sample only from the k likeliest words (top-k column).")
        top_p = st.number_input("Top-p", 0.05, 1.0, 0.8, 0.05, key="dl_topp", width=150,
                                help="Sample only from the likeliest words that together hold probability p "
                                     "(top-p column).")
        temperature = st.number_input("Temperature", 0.05, 5.0, 1.5, 0.05, key="dl_temp", width=150,
                                      help="Below 1 sharpens the distribution, above 1 flattens it (temperature column).")
        # the seed starts from session state, never from value=: "New seed" sets it there, and a widget given
        # both a value and a session-state value makes Streamlit print a warning with a traceback
        st.session_state.setdefault("dl_seed", 0)
        seed = st.number_input("Seed", 0, 2**31 - 1, key="dl_seed", width=150,
                               help="Same seed, same sampled caption (all three sampling columns).")
        st.button("New seed", key="dl_reseed", on_click=_new_seed, icon=":material/casino:")
    st.caption("Which knob drives which column: **Beams** and **Length penalty** the beam-search column; **Top-k**, "
               "**Top-p** and **Temperature** each their own sampling column; **Seed** all three sampling columns. "
               "Greedy has no knob: it always takes the likeliest word.")

settings = {
    "greedy": dict(strategy="greedy"),
    f"beam search ({beams} beams)": dict(strategy="beam", beams=int(beams), length_penalty=float(length_penalty)),
    f"top-k sampling (k = {top_k})": dict(strategy="sample", top_k=int(top_k), seed=int(seed)),
    f"top-p sampling (p = {top_p:g})": dict(strategy="sample", top_p=float(top_p), seed=int(seed)),
    f"temperature sampling (T = {temperature:g})": dict(strategy="sample", temperature=float(temperature), seed=int(seed)),
}
params = {name: widgets.params_or_error(captioner, **kw) for name, kw in settings.items()}  # the model's own max words
if any(p is None for p in params.values()):
    st.stop()
runs = {name: state.explanation(captioner, ckpt, img, p) for name, p in params.items()}

with st.container(key="dl_cards"):  # cards at least 9rem wide (widgets.STYLE): they wrap, words stay whole
    columns = st.columns(len(runs))
for col, (name, exp) in zip(columns, runs.items()):
    with col.container(border=True):
        st.markdown(f"**{name}**")
        st.markdown(f"<p style='font-size:1.15rem' class='vz-run-caption'>{html.escape(exp.caption) or '(empty)'}</p>",
                    unsafe_allow_html=True)
        detail = f"log p = {exp.logprob:.3g}"
        if STRATEGIES[exp.params.strategy].search == "beam":
            detail += f" · score {exp.score:.3g}"
        if exp.seed is not None:
            detail += f" · seed {exp.seed}"
        if not exp.ended:
            detail += " · cut at max words"
        st.caption(detail)
        if img.get("truth") and not model_picker.is_photo_model(captioner):
            st.caption("✓ a right caption" if state.is_right(exp.caption, img) else "✗ not a right caption")

st.caption("**log p**: the sum of the log-probabilities of the caption's words and its end (0 would be certain; the "
           "more negative, the less likely) · **score** (beam search): log p ÷ length^penalty, how finished captions "
           "are ranked · **seed**: the random draw of a sampled caption · “cut at max words”: it never chose to end.")
one_caption = records.training_facts(ckpt).get("captions") == "canonical"
if len({e.caption for e in runs.values()}) == 1:
    st.info("Every strategy wrote the same caption: the model is very sure about this picture. "
            + (f"It was trained on one caption per scene, so it rarely doubts; the shipped twin "
               f"“{SHIPPED_TITLES['shapes-free']}” learned every right phrasing (which object first, “left of” or "
               "“right of”), and there the strategies part. " if one_caption and "shapes-free" in shipped_names()
               else "") + "Raise the temperature, lower top-p, or try an uploaded photo (far from what it was "
            "trained on) to see them part.")
spread = measured_spread(ckpt, records.stamp(ckpt, records.DECODING))
if spread and all(k in spread for k in ("n_scenes", "two_distinct_samples", "greedy_beam_differ", "samples_right")):
    command = str(spread.get("command", "vizcap decoding")).replace("`", "'")  # a code span: shown as written
    st.caption(f"Measured on this model (`{command}`): on "
               f"{spread['n_scenes']} held-out scenes of two or three objects, {spread.get('draws', 5)} samples at "
               f"temperature 1 hold at least two different captions on {spread['two_distinct_samples']:.0%} of the "
               f"scenes, {spread['samples_right']:.0%} of the sampled captions are right, and greedy and beam search "
               f"({spread.get('beams', 5)} beams) differ on {spread['greedy_beam_differ']:.0%}.")

st.subheader("Search tree")
tree_run = st.selectbox("Tree of", list(runs), index=1, key="dl_tree_run",
                        help="Greedy and sampling keep one hypothesis, so their tree is a single chain.")
chosen = runs[tree_run]
widgets.show(figures.beam_tree(chosen.beam_tree, chosen.token_ids, chosen.ended), key="dl_tree")
if chosen.candidates and STRATEGIES[chosen.params.strategy].search == "beam":
    st.caption("Finished candidates, best first:")
    st.dataframe([{"caption": c["caption"], "score": c["score"], "log p": c["logprob"], "ended": c["ended"]}
                  for c in chosen.candidates], hide_index=True,
                 column_config={"score": st.column_config.NumberColumn(
                                    "score", help="log p ÷ length^penalty: how finished captions are ranked"),
                                "log p": st.column_config.NumberColumn(
                                    "log p", help="sum of the words' log-probabilities (0 = certain)"),
                                "ended": st.column_config.CheckboxColumn(
                                    "ended", help="ended with <eos>, the model's choice to stop (not cut at the limit)")})

st.subheader("Per-step probabilities")
widgets.show(figures.step_probabilities({name: (e.tokens, list(e.probs)) for name, e in runs.items()}), key="dl_steps")

st.subheader("Live: how temperature, top-k and top-p reshape the next word")
greedy = runs["greedy"]
ids = greedy.token_ids + ([captioner.eos_id] if greedy.ended else [])
if not ids:
    st.info("The greedy caption is empty, so there is no step to look at.")
    st.stop()


def _logits() -> np.ndarray:
    logits, _ = teacher_forced(captioner, img["image"], ids)  # one pass, kept in session_state
    P = captioner.n_prefix
    out = logits[P : P + len(ids)].float().numpy().astype(np.float64)
    out[:, list(captioner.banned)] = -np.inf  # never valid outputs, as in decoding (Hugging Face bans none)
    return out


step_logits = state.session_memo("logits", (img["id"], ckpt, captioner.precision, tuple(ids)), _logits)


def _words() -> list[str]:  # 50,257 of them for a GPT-2 tokenizer: listed once per checkpoint
    shown = [captioner.tokenizer.token_text(i) for i in range(captioner.vocab_size)]
    shown[captioner.eos_id] = "<end>"
    return shown


words = state.session_memo("words", ckpt, _words)
context = ["<start>", *greedy.tokens]
live_for = (img["id"], ckpt, captioner.precision, tuple(ids))
if st.session_state.get("dl_live_for") != live_for:
    # a new caption: start at its least certain step, where the knobs visibly matter
    st.session_state["dl_live_for"] = live_for
    p = np.exp(step_logits - step_logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(-1)
    st.session_state["dl_live_step"] = int(np.argmax(entropy))


@st.fragment
def live() -> None:
    """Moving these knobs re-runs only this function in the browser (a fragment), not the page."""
    row = st.container(horizontal=True, wrap=True, vertical_alignment="bottom")  # wraps, never squeezes
    step = row.select_slider("Next word after", options=list(range(len(ids))), key="dl_live_step", width=300,
                             format_func=lambda i: " ".join(context[: i + 1][-4:]))
    live_t = row.slider("Temperature", 0.1, 3.0, 1.5, 0.05, key="dl_live_temp", width=170)
    live_k = row.slider("Top-k (0 = off)", 0, min(50, len(words)), 0, key="dl_live_topk", width=170)
    live_p = row.slider("Top-p (1 = off)", 0.05, 1.0, 1.0, 0.05, key="dl_live_topp", width=170)
    log_scale = row.toggle("Log y", value=True, key="dl_live_log", help="Show the tail of unlikely words too")
    widgets.show(figures.distribution_reshape(words, step_logits[step], live_t, live_k, live_p,
                                             context=" ".join(context[: step + 1]), log_scale=log_scale), key="dl_live")


live()
