"""How it works: the captioner's parts with the live tensor shapes of the loaded model, and how
training (teacher forcing, the loss mask on the prefix, the auxiliary dense loss) differs from
writing a caption."""

from __future__ import annotations

import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import anatomy, figures, records

st.title("How it works")
captioner, ckpt = model_picker.require_captioner()
img = widgets.image_header(captioner, ckpt)
if model_picker.is_photo_model(captioner):  # this page traces vizcap's own architecture, not a Hugging Face model's
    reads = ("each decoder layer's cross-attention reads that grid" if captioner.has_cross else
             "each decoder layer's self-attention reads those tokens, placed before the words")
    st.markdown(f"**This model.** {widgets.md(captioner.describe())}. The encoder turns the picture, resized by the "
                f"model's own processor, into a **{captioner.grid[0]}×{captioner.grid[1]} grid** of patches plus "
                f"{captioner.n_extra_keys} class token; for every word, {reads} — the heatmaps of the explorer. "
                "The share that goes to the class token is shown apart.")
    widgets.show(figures.patch_tokens(img["image"], captioner.grid), key="how_patches")
    st.info("The rest of this page traces vizcap's own ShapeScenes model (its prefix mapper and how it was trained); "
            "it does not apply to this photo captioner.")
    st.stop()
cfg = captioner.cfg
greedy = state.explanation(captioner, ckpt, img, captioner.decoding_params())
caption = img.get("truth") or greedy.caption or "a"
info = state.session_memo("anatomy", (img["id"], ckpt, caption), lambda: anatomy.trace(captioner, img["image"], caption))
shapes = info["shapes"]
gh, gw = shapes["grid"]
P = info["n_prefix"]

st.header("1 · The parts, and the shape of every tensor")
widgets.show(figures.architecture(shapes), key="how_arch")
a, b, c = st.columns(3)
a.markdown(f"**Encoder.** `{cfg.encoder}` turns the image, squashed (never cropped) to {cfg.image_size}×"
           f"{cfg.image_size} pixels, into a **{gh}×{gw} grid** of {gh * gw} feature vectors. Each grid cell "
           f"covers the same share of the picture: these cells are the squares of every heatmap.")
facts = records.training_facts(ckpt)  # from this checkpoint's metrics.json: never a number of our own
bound = cfg.mode != "cross" and facts.get("bind_weight", 0) > 0
supervised = facts.get("attend_weight", 0) > 0
named = facts.get("named_weight", 0) > 0  # train shapes --named-weight: a head that plays no part in captioning
repeats = facts.get("repeat_weight", 0) > 0  # train shapes --repeat-weight: a loss on the words, not on a map
if bound:
    b.markdown(f"**Mapper and prefix.** {P} learned *queries* each read the grid with attention and become "
               f"**{P} prefix tokens**, placed before the words. While training, a *binding loss* pulled the "
               + (f"first three queries' attention onto the first, second and third object of the scene's "
                  f"canonical caption (left to right; a stacked pair top to bottom), so each of them carries one "
                  f"object and its map looks like that object's outline"
                  if facts.get("bind_to") == "place" or facts.get("captions") != "all" else
                  "first three queries' attention onto the first, second and third object the training caption "
                  "names. But this model learned every right phrasing, so which object a training caption named "
                  "first was drawn at random, and the prefix, made from the picture alone, could not know it: "
                  "the target was out of reach, and its bound tokens mix the objects (its prefix maps miss "
                  "often: Training & trust measures how often)")
               + f"; the other {P - 3} are free and read the scene as a whole. "
               + ("A *supervised-attention loss* (Liu et al. 2017) also taught the decoder, at every colour and "
                  "shape word, to read the prefix token of the object it names and to cross-attend to that "
                  "object's cells"
                  + (" (and at a pair's relation word, those of the object the relation is read from)"
                     if facts.get("attend_relations") else "")
                  + ". So this model's *prefix* and *cross-attention* heatmaps were **trained to "
                  "point**: that they hit the object is expected, not a discovery. Whether the model really *uses* "
                  "what it looks at is checked by methods that were never trained — gradient relevancy and the "
                  "deletion test on the Training & trust page."
                  if supervised else
                  "Which prefix token the decoder reads for a word was never supervised: that is what the "
                  "*prefix* heatmaps measure."))
elif cfg.mode != "cross":
    b.markdown(f"**Mapper and prefix.** {P} learned *queries* each read the whole grid with attention and become "
               f"**{P} prefix tokens**: a summary of the image written in the decoder's own language, placed "
               f"before the words. Each prefix token has its own map over the image (see the explorer).")
else:
    b.markdown("**No prefix.** This model (mode “cross”) has no prefix tokens: the decoder reads the image only "
               "through cross-attention.")
c.markdown(f"**Decoder.** A GPT-2 with {cfg.decoder_layers} layers × {cfg.decoder_heads} heads reads "
           + ("the prefix and the words so far" if cfg.mode != "cross" else "the words so far")
           + (", and looks at the grid directly through **cross-attention**" if cfg.mode != "prefix" else "")
           + f". It outputs a score (logit) for each of the {cfg.vocab_size} words of its vocabulary.")

if cfg.feature_index is None and captioner.model.encoder.num_prefix_tokens:  # a vision transformer
    st.subheader("The image becomes a sequence of tokens")
    widgets.show(figures.patch_tokens(img["image"], (gh, gw)), key="how_patches")
    st.markdown(f"The encoder is a **vision transformer**: a small convolutional stem turns each "
                f"{cfg.image_size // gw}×{cfg.image_size // gh}-pixel patch into one vector, and {len(captioner.model.encoder.model.blocks)} "
                "layers of self-attention let every patch token look at every other (and at a class token that "
                "belongs to no patch). The explorer's **Inside the ViT** tab shows where each patch looks, layer by layer.")

st.header("2 · Training vs writing a caption")
left, right = st.columns(2)
with left:
    st.markdown(
        "**Training: teacher forcing.** The model reads the *true* caption in one pass, and at every position it "
        "must predict the *next* word. Because of the causal mask, no position can peek ahead, so a whole caption "
        "trains every step at once. The prefix positions have nothing to predict: their label is **-100**, which "
        "the loss ignores (`model.labels()`), and so is the position after `<eos>`.")
with right:
    st.markdown(
        "**Writing a caption: one word at a time.** There is no true caption. The model starts from `<bos>`, "
        "picks a word from its prediction (greedy, beam search or sampling — see the Decoding lab), appends it "
        "and runs again, keeping earlier work in a *KV cache*, until it writes `<eos>` or reaches the word limit. "
        "Its own mistakes become its input: the gap between training and inference called *exposure bias*.")
source = "the true caption of this scene" if img.get("truth") else "the model's own caption (this image has no known truth)"
st.markdown(f"Teacher forcing on this image with {source}: **“{widgets.md(info['caption'])}”** — caption loss "
            f"**{info['loss']:.3f}** (mean cross-entropy over the positions whose label is not -100).")
rows = [{"position": r["position"], "reads": r["input"], "label": r["label"], "must predict": r["target"],
         "model's top guess": "—" if r["label"] == -100 else r["predicted"],
         "p(label)": r["p_target"]} for r in info["positions"]]
st.dataframe(rows, hide_index=True, height=min(36 * (len(rows) + 1) + 3, 420))
st.caption(f"Positions 0–{P - 1} are the prefix (label -100: ignored by the loss). Position {P} reads `<bos>` and "
           f"must predict the first word; the last position reads `<eos>` and is ignored too." if P else
           "This model has no prefix; position 0 reads `<bos>` and must predict the first word.")

st.header("3 · The auxiliary dense loss (ShapeScenes)")


def _what_heads(aux: dict) -> str:
    named = {"shape": "the shape", "colour": "the colour",
             "order": "the place (first, second, third from the left; a stacked pair top to bottom)",
             "relation": "where it is from its partner (left of, right of, above, below)"}
    parts = [named.get(name, name) for name in aux] or ["the shape and the colour"]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


seen = (f" (this checkpoint's encoder saw {facts['samples']:,} pictures"
        + (f": {facts['steps']:,} steps × {facts['batch_size']} per batch" if "steps" in facts and "batch_size" in facts
           else "") + ", as its metrics.json records)") if "samples" in facts else ""
st.markdown(
    f"A small encoder trained from scratch{seen} has no reason to keep *where* things are: the caption loss "
    "only asks it to name them. So the ShapeScenes model gets extra help while training: **auxiliary heads** read "
    f"the memory grid and predict, for every cell, {_what_heads(info['aux'])} of the object under it (or "
    "background). Their cross-entropy is added to the caption loss"
    + (f" with weight {facts['aux_weight']}" if "aux_weight" in facts else "")
    + ": `loss = caption loss + weight × aux loss"
    + (f" + {facts['bind_weight']} × binding loss" if bound else "")
    + (f" + {facts['attend_weight']} × supervised-attention loss" if supervised else "")
    + (f" + {facts['named_weight']} × named-so-far loss" if named else "")
    + (f" + {facts['repeat_weight']} × repeat loss" if repeats else "")
    + "`" + (" (both described above)" if bound and supervised else " (described above)" if bound or supervised else "")
    + ". This dense supervision stands in for a pretrained encoder; "
    "the heads play no part in writing captions, but they make each cell of the grid *about* its own patch of "
    "the image — which is what makes the heatmaps meaningful."
    + (" The *named-so-far loss* comes from one more training-only head, on the decoder's last hidden state: at "
       "every word it predicts which of the scene's objects the caption has named so far, so that the model "
       "keeps count of what it has said. It is a label on what the decoder carries, not on where any map points, "
       "and it is not saved with the model." if named else "")
    + (" The *repeat loss* lowers the probability of a shape word that would name a phrase the caption has "
       "already named (after \"a pink cross and a pink\", the word \"cross\"): a loss on the words the decoder "
       "writes, not on where any map points." if repeats else ""))
if info["aux"]:
    cols = st.columns(len(info["aux"]))
    for col, (name, aux) in zip(cols, info["aux"].items()):
        with col:
            widgets.show(figures.aux_predictions(img["image"], aux["classes"], aux["names"], name), key=f"how_aux_{name}")
else:
    st.info("This checkpoint has no auxiliary heads (photo models start from a pretrained encoder instead).")
