"""Home: the caption of the current picture, and where to choose another (an example, an upload, a
composed scene)."""

from __future__ import annotations

import html
from pathlib import Path

import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import notices
from vizcap.compose import BACKGROUNDS, MAX_OBJECTS, MIN_VISIBLE, Placement, compose_scene, visibility
from vizcap.files import shipped_title
from vizcap.images import MAX_UPLOAD_MB, read_upload
from vizcap.links import compose_spec
from vizcap.scenes import COLOURS, SHAPES, SceneConfig

GALLERY = (7, 11, 23, 42, 101, 256, 1234, 2024)
EXAMPLE_OBJECTS = [("red", "star", 0.25, 0.5, 0.3), ("blue", "circle", 0.75, 0.5, 0.3),
                   ("green", "square", 0.5, 0.2, 0.2), ("yellow", "triangle", 0.5, 0.8, 0.2),
                   ("purple", "cross", 0.2, 0.2, 0.2), ("orange", "circle", 0.8, 0.8, 0.2)]


def model_line(captioner, ckpt: str) -> str:
    """The model in plain words: which one (never a filesystem path), and its grid, layers and heads."""
    if model_picker.is_photo_model(captioner):
        which = f"the {captioner.family_label} captioner “{widgets.md(Path(ckpt).name if Path(ckpt).exists() else ckpt)}”"
    else:
        title = shipped_title(ckpt)
        which = (f"the shipped captioner “{title}”" if title is not None
                 else f"the checkpoint in the folder “{widgets.md(Path(ckpt).name)}”")
    return (f"Model: {which} · it sees each picture as a grid of {captioner.grid[0]}×{captioner.grid[1]} cells "
            f"(the squares of every heatmap) · {captioner.decoder_layers} decoder layers × {captioner.decoder_heads} "
            "attention heads" + (f" · {widgets.md(captioner.crop)}" if captioner.crop else "")
            + (" · its generation settings " + widgets.md(", ".join(captioner.unsupported_settings)) + " are not applied "
               "here, so captions may differ from its generate()" if getattr(captioner, "unsupported_settings", None)
               else ""))


def gallery() -> None:
    st.write("ShapeScenes examples (each number always draws the same scene):")
    with st.container(key="vz_gallery"):  # its columns wrap below 5rem (widgets.STYLE): "#1234", never "#…"
        columns = st.columns(len(GALLERY))
    current = state.current_image()["id"]
    for col, seed in zip(columns, GALLERY):
        col.image(state.thumbnail(seed), width="stretch")
        chosen = current == f"scene:{seed}"
        col.button(f"#{seed}", key=f"vz_use_{seed}", icon=":material/check:" if chosen else None, on_click=state.set_scene, args=(seed,),
                   type="primary" if chosen else "secondary", width="stretch")
    row = st.container(horizontal=True, wrap=True, vertical_alignment="bottom")  # the button as wide as its words
    seed = row.number_input("Or any example number", min_value=0, max_value=2**31 - 1, value=5, step=1, key="vz_seed",
                            width=220)
    row.button("Use this example", key="vz_use_seed",  # the number as it is now, not when the button was drawn
               on_click=lambda: state.set_scene(int(st.session_state.get("vz_seed", seed))))


def upload(captioner) -> None:
    file = st.file_uploader(f"Upload an image (PNG, JPEG, WebP, BMP, GIF, TIFF; up to {MAX_UPLOAD_MB} MB)",
                            type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"], key="vz_upload")
    if file is None and not model_picker.is_photo_model(captioner):
        st.caption("The model was trained on coloured shapes: on photos its captions will be shapes too. "
                   "That is a lesson in itself.")
        return
    if file is None:
        return
    data = file.getvalue()
    image, image_id, error = read_upload(file.name, data, file.size)
    if error:
        st.error(f"Cannot use this file. {error}")
        return
    if state.current_image()["id"] != image_id:
        state.set_image(image_id, image, f"your upload “{file.name}” ({image.width}×{image.height})")


def compose() -> None:
    st.write("Place shapes to test a hypothesis — e.g. *does it still say “star” when the star is small and in a "
             "corner?* Positions are fractions of the width and height; ShapeScenes draws its objects "
             f"{SceneConfig().min_size:.2f}–{SceneConfig().max_size:.2f} of the shorter side, the sizes the "
             "shipped model was trained on.")
    # rows that wrap at narrow widths: every box keeps a width its words fit in
    top = st.container(horizontal=True, wrap=True, vertical_alignment="bottom")
    n = top.number_input("Objects", 1, MAX_OBJECTS, 2, key="vz_n_objects", width=130)
    background = top.selectbox("Background", list(BACKGROUNDS), key="vz_background", width=170)
    placements = []
    for i in range(int(n)):
        colour, shape, x, y, size = EXAMPLE_OBJECTS[i % len(EXAMPLE_OBJECTS)]
        row = st.container(horizontal=True, wrap=True, vertical_alignment="bottom")
        colour = row.selectbox(f"Colour {i + 1}", list(COLOURS), index=list(COLOURS).index(colour), key=f"vz_c{i}",
                               width=130)
        shape = row.selectbox(f"Shape {i + 1}", SHAPES, index=SHAPES.index(shape), key=f"vz_s{i}", width=130)
        x = row.slider(f"x {i + 1} (left → right)", 0.0, 1.0, x, 0.05, key=f"vz_x{i}", width=160)
        y = row.slider(f"y {i + 1} (top → bottom)", 0.0, 1.0, y, 0.05, key=f"vz_y{i}", width=160)
        size = row.slider(f"size {i + 1}", 0.05, 0.6, size, 0.05, key=f"vz_z{i}", width=160)
        angle = row.slider(f"rotation {i + 1} (°)", -180, 180, 0, 15, key=f"vz_a{i}", width=160)
        placements.append(Placement(colour, shape, x, y, size, float(angle)))
    try:
        scene = compose_scene(placements, background=background)
        seen = visibility(placements)
    except ValueError as e:
        st.error(f"Cannot draw this scene: {e}")
        return
    for i, share in enumerate(seen):
        if share < MIN_VISIBLE:
            st.warning(f"Object {i + 1} (the {placements[i].colour} {placements[i].shape}) is "
                       + ("completely hidden" if share == 0 else f"mostly hidden ({100 * share:.0f} % in view)")
                       + " behind the objects drawn after it, so the true caption leaves it out: the model is "
                         "only asked to describe what can be seen.", icon=":material/visibility_off:")
    image_id = compose_spec(placements, background)  # the scene's own description: it can travel in a link
    if state.current_image()["id"] != image_id:
        state.set_image(image_id, scene.image, "your composed scene", scene.captions)


def show_caption(captioner, ckpt: str) -> None:
    model_picker.unfamiliar_notice(captioner)  # drawn after the chooser, so it is about this run's picture
    img = state.current_image()
    left, right = st.columns([1, 2])
    left.image(img["image"], caption=img["label"], width="stretch")
    exp = state.explanation(captioner, ckpt, img, captioner.decoding_params())  # the model's own, as `vizcap caption`
    with right:
        st.subheader("The model's caption")
        st.markdown(f"<p style='font-size:1.6rem' id='vz-caption'>{html.escape(exp.caption) or '(empty caption)'}</p>",
                    unsafe_allow_html=True)
        if img.get("truth") and not model_picker.is_photo_model(captioner):  # a ShapeScenes truth says nothing of a photo model
            same = state.is_right(exp.caption, img)
            others = len(img["truths"]) - 1
            (st.success if same else st.warning)(
                f"True caption: *{widgets.md(img['truth'])}*"
                + (f" (or any of its {others} other right phrasing{'s' if others != 1 else ''})" if others else "")
                + " — " + ("the model's caption is right." if same else "the model's caption differs. Where did it look?"))
        if len(exp):
            st.caption("How sure the model was of each word (greedy decoding):")
            st.dataframe({"word": exp.tokens, "probability": [float(p) for p in exp.probs]}, hide_index=True,
                         height=min(35 * (len(exp) + 1) + 3, 320),
                         column_config={"probability": st.column_config.ProgressColumn(
                             "probability", min_value=0.0, max_value=1.0, format="%.3f")})
        st.markdown("**Explore:**")
        st.page_link("app_pages/explorer.py", label="Where it looked, word by word", icon=":material/visibility:")
        st.page_link("app_pages/decoding_lab.py", label="Greedy, beam and sampling compared",
                     icon=":material/casino:")
        st.page_link("app_pages/how_it_works.py", label="How the model works", icon=":material/settings:")
        st.page_link("app_pages/training_and_trust.py", label="Training, and can we trust the heatmaps?",
                     icon=":material/monitoring:")


st.title("vizcap — where does the captioner look?")
st.markdown(
    "An image captioner writes its caption **one word at a time**. For every word, vizcap shows **where in "
    "the image the model was looking** (its attention), how sure it was, and which other words it "
    "considered. The default model was trained on **ShapeScenes**: pictures of coloured shapes that vizcap "
    "draws itself, so the truth of every scene is known and the heatmaps can be *checked*, not just admired."
)
st.markdown(
    "**1.** Read the caption of the picture below · **2.** choose another one further down (an example, your "
    "own file, or a scene you compose to test an idea) · **3.** open a page from the sidebar to see how the "
    "caption was made."
)
captioner, ckpt = model_picker.require_captioner(notice=False)  # the notice goes with the caption, below
st.caption(model_line(captioner, ckpt))
if notices.attention_notice(captioner):  # where maps are read, say whether they were trained to look right
    st.caption(widgets.md(notices.attention_notice(captioner)) + " (Training & trust measures what the maps are worth).")
shown = st.container()  # the caption, drawn after the chooser below has set this run's image
st.divider()
st.subheader("Choose another image")
source = st.segmented_control("Image", ["Examples", "Upload", "Compose"], default="Examples", key="vz_source",
                              required=True, label_visibility="collapsed")
if source == "Examples":
    gallery()
elif source == "Upload":
    upload(captioner)
elif not model_picker.shapescenes_only(captioner, "Composing a scene to test an idea"):
    compose()
with shown:
    show_caption(captioner, ckpt)
