"""vizcap home page: pick an example scene or upload an image, and read its caption.

Thin page: everything it shows comes from `vizcap` functions. The model is loaded once per process
(st.cache_resource) and shared read-only by all sessions; results live in st.session_state."""

from __future__ import annotations

import streamlit as st

import vizcap
from vizcap.scenes import render_scene

MAX_UPLOAD_MB = 20

st.set_page_config(page_title="vizcap", page_icon="🔍", layout="wide")


@st.cache_resource(show_spinner="Loading the captioner…")
def get_captioner(path: str | None) -> vizcap.Captioner:
    return vizcap.load(path)


def example_image(seed: int):
    return render_scene(seed).image


st.title("vizcap — where does the captioner look?")
st.write(
    "vizcap captions an image word by word. The default model was trained on **ShapeScenes**, a world of "
    "coloured shapes that vizcap draws itself, so it works offline and we know the truth of every scene."
)

with st.sidebar:
    checkpoint = st.text_input("Checkpoint directory", value="", placeholder="shipped default",
                               help="Leave empty for the shipped ShapeScenes model, or give a directory trained by train/.")

try:
    captioner = get_captioner(checkpoint.strip() or None)
except vizcap.CheckpointError as e:
    st.error(f"Cannot load the checkpoint: {e}")
    st.stop()

source = st.radio("Image", ["Example scene", "Upload"], horizontal=True)
image = None
if source == "Example scene":
    seed = st.number_input("Example number", min_value=0, max_value=10_000, value=7, step=1)
    image = example_image(int(seed))
else:
    upload = st.file_uploader("Upload an image", type=None, help=f"Up to {MAX_UPLOAD_MB} MB")
    if upload is not None:
        if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            st.error(f"{upload.name}: {upload.size / 1e6:.1f} MB is over the {MAX_UPLOAD_MB} MB limit.")
        else:
            try:
                image = vizcap.open_image(upload.getvalue(), name=upload.name)
            except vizcap.ImageError as e:
                st.error(str(e))

if image is not None:
    left, right = st.columns([1, 1])
    with left:
        st.image(image, caption="Input image", width="stretch")
    with right:
        details = captioner.caption_details(image)
        st.subheader("Caption")
        st.markdown(f"### {details['caption'] or '(empty)'}")
        st.caption(f"Greedy decoding · map grid {details['grid'][0]}×{details['grid'][1]}")
        st.dataframe(
            {"token": details["tokens"], "probability": [round(p, 3) for p in details["token_probs"]]},
            hide_index=True,
        )
