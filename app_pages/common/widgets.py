"""Pieces every page draws the same way: the page style, text shown literally, a figure with its
description, the strip naming the current image, and the decoding controls."""

from __future__ import annotations

import html

import streamlit as st

from vizcap.strategies import MAX_BEAMS, STRATEGIES, DecodingParams, describe, validate
from vizcap.figures import description

from . import state
from .model_picker import is_photo_model

# Less empty space above the title, a smaller title and no word broken mid-word in labels: the
# explorer's caption, controls and map fit one 1280×800 screen (a projector), and 800-px-wide windows
# keep their labels whole. Then (issue 26, items 13 and 14):
# - windows up to 1000 px: the sidebar 232 px wide instead of 300, so the main area keeps ~70 px more.
#   Streamlit's own "auto" hides the sidebar only up to 768 px, and an initial_sidebar_state width would
#   narrow it on every screen; users can still hide it with its arrow.
# - a column holding a chart is at least 18rem wide: in a narrow main area it goes on its own row
#   (st.columns wrap) instead of squeezing its chart; columns of cards (the decoding lab's runs, Home's
#   examples) have their own minimum through their container's key (st-key-… class).
# - the lesson's view and its sentence stack in a main area under 40rem, the sentence first.
# - words are broken inside a card or label only when one word is wider than the whole box.
# - explanations (st.caption) are read from a projector too: 15 px, and dark enough for WCAG AA
#   (Streamlit draws them at 60 % opacity: 3.7:1 on white; #555 at full opacity is 7.5:1).
STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; }
h1 { font-size: 2.1rem !important; padding-top: 0.5rem !important; }
[data-testid="stWidgetLabel"] p, button p { word-break: normal !important; overflow-wrap: normal !important; }
@media (max-width: 1000px) {
  section[data-testid="stSidebar"] { width: 232px !important; min-width: 232px !important; }
  [data-testid="stSidebarNavLink"], [data-testid="stSidebarNavLink"] > span { height: auto !important; min-height: 2rem; }
  [data-testid="stSidebarNavLink"] > span[label] { white-space: normal !important; }
  [data-testid="stSidebarNavLink"] .stMarkdownEllipsis {  /* a long page title on two lines, not cut */
    height: auto !important; white-space: normal !important; line-height: 1.4 !important; }
  [data-testid="stSidebarNavLink"] .stMarkdownEllipsis p { white-space: normal !important; }
}
[data-testid="stColumn"]:has([data-testid="stPlotlyChart"]) { min-width: min(100%, 18rem); }
.st-key-dl_cards [data-testid="stColumn"] { min-width: min(100%, 9rem); }
.st-key-vz_gallery [data-testid="stColumn"] { min-width: 5rem; max-width: 8rem; }
.st-key-ls_row { container-type: inline-size; }
@container (max-width: 40rem) {
  .st-key-ls_row [data-testid="stColumn"] { min-width: 100%; }
  .st-key-ls_row [data-testid="stColumn"]:last-child { order: -1; }
}
[data-testid="stMain"] [data-testid="stMarkdownContainer"] { word-break: normal; overflow-wrap: break-word; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p {
  font-size: 0.95rem !important; color: #555 !important; opacity: 1 !important; }
</style>"""

_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|$~:&")


def md(text) -> str:
    """`text` shown literally inside st.markdown / st.caption: every character markdown (or
    Streamlit's :colour[...] and $math$) could read as syntax is backslash-escaped. Captions,
    words and file names go through this (or html.escape inside HTML)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))


def show(fig, key: str | None = None) -> None:
    """A figure from vizcap.figures with its plain-language description underneath (and as alt text)."""
    text = description(fig)
    st.plotly_chart(fig, key=key, alt=text or None, config={"displaylogo": False})
    if text:
        st.caption(md(text))


def image_header(captioner, ckpt: str, compact: bool = False, exp=None) -> dict:
    """A strip naming the current image and the model's caption: every page explains the same one. The
    caption is `exp`'s when given (the explorer's, decoded as chosen there), else the greedy one; its
    label names how it was decoded. compact: one line without the thumbnail (the explorer, whose map
    shows the picture)."""
    img = state.current_image()
    exp = exp if exp is not None else state.explanation(captioner, ckpt, img, captioner.decoding_params())
    truth = img.get("truth") if not is_photo_model(captioner) else None  # ShapeScenes' truth, not a photo model's
    about = f"**Image:** {md(img['label'])}" + (f" · true caption: *{md(truth)}*" if truth else "")
    greedy = (f"**Model's caption ({md(describe(exp.params))}):** "
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


# -- decoding parameters ---------------------------------------------------------------------------


def params_or_error(captioner, **values) -> DecodingParams | None:
    """DecodingParams from widget values, built once by the model's decoding_params (vizcap.decoding.params_for:
    the knobs the strategy does not use set to neutral, those no widget sets, such as a Hugging Face model's
    early stopping and length limit, its own); every problem vizcap.decoding.validate finds is shown instead."""
    problems = validate({k: v for k, v in values.items() if v is not None})
    if problems:
        for p in problems:
            st.error(p)
        return None
    return captioner.decoding_params(**values)


# decoding widgets: DecodingParams field -> (widget key suffix, the widget's starting value; None: the model's own)
DECODING_WIDGETS = {"strategy": ("strategy", "greedy"), "beams": ("beams", 3), "length_penalty": ("lp", 1.0),
                    "max_tokens": ("max", None), "temperature": ("temp", 1.0), "top_k": ("topk", 0),
                    "top_p": ("topp", 1.0), "seed": ("seed", 0)}
MAX_WORDS = 40  # the "Max words" widget's top, unless a model's own limit is higher


def start_max_words(prefix: str, captioner, model: str) -> None:
    """"Max words" starts at the model's own length limit (`captioner.max_tokens`: its generation
    config's, what Home and `vizcap caption` use, so the caption here is the same), and goes back to it
    when another model is chosen; a link's value is kept on the page it opens."""
    key, owner = f"{prefix}_max", f"{prefix}_max_model"
    if st.session_state.get(owner) != model:
        if owner in st.session_state or key not in st.session_state:
            st.session_state[key] = int(captioner.max_tokens)
        st.session_state[owner] = model


def decoding_controls(prefix: str, captioner, model: str, expanded: bool = False) -> DecodingParams | None:
    """Strategy and its knobs for `captioner` (loaded from `model`). Changing them asks the model again
    (once per new combination). The widgets start from st.session_state (set here, or by a link:
    address_bar.apply_link), never from value=."""
    start_max_words(prefix, captioner, model)
    for name, (suffix, start) in DECODING_WIDGETS.items():
        if start is not None:
            st.session_state.setdefault(f"{prefix}_{suffix}", start)
    with st.expander("Decoding: how the caption is chosen", expanded=expanded):
        c1, c2, c3, c4 = st.columns(4)
        strategy = c1.selectbox("Strategy", list(STRATEGIES), key=f"{prefix}_strategy",
                                format_func=lambda s: STRATEGIES[s].label or s,
                                help=" · ".join(f"{s.label or s.name}: {s.help}" for s in STRATEGIES.values()))
        uses = STRATEGIES[strategy].knobs  # the table says which knobs this strategy reads; the others are off
        beams = c2.number_input("Beams", 1, MAX_BEAMS, key=f"{prefix}_beams", disabled="beams" not in uses)
        length_penalty = c3.number_input("Length penalty", -10.0, 10.0, step=0.1, key=f"{prefix}_lp",
                                         disabled="length_penalty" not in uses)
        max_tokens = c4.number_input("Max words", 1, max(MAX_WORDS, int(captioner.max_tokens)), key=f"{prefix}_max",
                                     help=f"The model's own limit is {captioner.max_tokens} (its generation settings).")
        c5, c6, c7, c8 = st.columns(4)
        temperature = c5.number_input("Temperature", 0.05, 5.0, step=0.05, key=f"{prefix}_temp",
                                      disabled="temperature" not in uses)
        top_k = c6.number_input("Top-k (0 = off)", 0, 1000, key=f"{prefix}_topk", disabled="top_k" not in uses)
        top_p = c7.number_input("Top-p (1 = off)", 0.01, 1.0, step=0.05, key=f"{prefix}_topp", disabled="top_p" not in uses)
        seed = c8.number_input("Seed", 0, 2**31 - 1, key=f"{prefix}_seed", disabled="seed" not in uses)
    return params_or_error(captioner, strategy=strategy, beams=int(beams), top_k=int(top_k), top_p=float(top_p),
                           temperature=float(temperature), length_penalty=float(length_penalty), seed=int(seed),
                           max_tokens=int(max_tokens))
