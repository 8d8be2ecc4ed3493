"""Training & trust: the loss curve and the evaluation of the loaded checkpoint, and measurements of
how far its heatmaps can be trusted (pointing game, sanity check, deletion/insertion, the top-k test), read from the
checkpoint's trust.json or measured here on a few held-out scenes."""

from __future__ import annotations

import json
import math

import streamlit as st

from app_pages.common import model_picker, state, widgets
from vizcap import figures, notices, records
from vizcap.trust import evaluate_trust, ranking_verdict

METRIC_NOTES = {
    "exact": "captions exactly equal to the truth",
    "object_recall": "objects named with the right colour and shape",
    "colour_acc": "colour words right", "shape_acc": "shape words right", "count_acc": "object counts right",
    "bleu1": "share of the caption's words found in the truth", "bleu2": "the same for word pairs",
    "bleu3": "the same for three-word runs", "bleu4": "the same for four-word runs",
    "rouge_l": "longest run of words shared with the truth, in order, as a share",
    "cider": "agreement of word groups with the truth, rare words weighing more (0–10, higher is better)",
    "n_scenes": "held-out scenes evaluated",
}
SETS = {"heldout": "held-out ShapeScenes", "independent": "scenes drawn by an independent renderer",
        "hard": "hard held-out ShapeScenes (three small objects, large JPEG pictures)",
        "independent_hard": "hard scenes drawn by the independent renderer"}

st.title("Training & trust")
captioner, ckpt = model_picker.require_captioner()
widgets.image_header(captioner, ckpt)
if model_picker.is_photo_model(captioner):  # no ShapeScenes verdict on a photo model
    st.info("This is a Hugging Face photo captioner: vizcap did not train it, and the pointing game and mass in the "
            "box need ShapeScenes, whose objects vizcap knows. On photos nothing says where an object really is, so "
            "treat its heatmaps as *where the model looked*, not as proof of why it wrote a word.")
    st.header("What can be measured without the truth")
    st.markdown("On the current picture, for the first words of the model's caption: the **randomisation sanity "
                "check** (rank correlation with the maps of the same caption read by the model with its decoder "
                "re-initialised; near 0 = the map comes from what the decoder learned) and **deletion / insertion** "
                "(the word's probability as the map's hottest cells are greyed out first, or revealed first, against "
                "a random order; lower deletion and higher insertion areas than random = the map points at what the "
                "word depends on).")
    img_now = state.current_image()
    key = (img_now["id"], ckpt, captioner.precision)  # a fast model's figures are its own
    measured = st.session_state.setdefault("vz_photo_trust", {})
    if st.button("Measure on this picture", key="tt_photo_measure", icon=":material/science:"):
        from vizcap.photo_trust import photo_trust

        with st.spinner("Re-reading the caption with a randomised decoder and on masked pictures…"):
            measured[key] = photo_trust(captioner, img_now["image"])
    result = measured.get(key)
    if result is None:
        st.caption("A big model takes a minute or two (one pass per masked picture).")
    elif not result["words"]:
        st.info("The caption is empty: there is no word to measure.")
    else:
        st.caption("Words measured: " + ", ".join(widgets.md(w) for w in result["words"]))
        st.dataframe([{"method": m, "sanity ρ": round(v["sanity"], 3),
                       "deletion AUC map / random": f"{v['deletion_map_auc']:.3f} / {v['deletion_random_auc']:.3f}",
                       "insertion AUC map / random": f"{v['insertion_map_auc']:.3f} / {v['insertion_random_auc']:.3f}"}
                      for m, v in result["methods"].items()], hide_index=True)
        for sentence in figures.photo_trust_verdict(result):  # the table in words, never stronger than it
            st.markdown(sentence)
    st.stop()

st.header("Training")
rows = records.training_log(ckpt)
if rows:
    widgets.show(figures.loss_curve(rows), key="tt_loss")
else:
    st.info(f"No training log in this checkpoint ({records.TRAIN_LOG} is missing or empty).")

metrics = records.metrics(ckpt)
if metrics:
    heldout = metrics.get("heldout") or {}
    table = [{"metric": k, "value": v, "what it means": METRIC_NOTES.get(k, "")} for k, v in heldout.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    facts = records.training_facts(ckpt)
    n = heldout.get("n_scenes")
    st.subheader("Evaluation at the end of training" + (f" ({n} held-out scenes)" if n else ""))
    st.dataframe(table, hide_index=True, height=35 * (len(table) + 1) + 3)  # every row, no inner scrolling
    st.caption("From this checkpoint's metrics.json" + (f", written by `{facts['command']}`" if "command" in facts else "")
               + ": " + " · ".join(s for s in (
                   f"{n} held-out scenes" if n else "",
                   f"{facts['steps']:,} steps" if "steps" in facts else "",
                   f"batch {facts['batch_size']}" if "batch_size" in facts else "",
                   f"{facts['samples']:,} training pictures" if "samples" in facts else "",
                   f"{facts['minutes']:.1f} min of training" if "minutes" in facts else "") if s))
else:
    st.info("No metrics.json in this checkpoint.")

st.header("Can the heatmaps be trusted?")
st.markdown(
    "On ShapeScenes we know where every object is, so a heatmap can be **tested**: for each object the model "
    "names correctly, does the map of its word point at it? Would a scrambled model draw the same map? Does "
    "hiding the hot cells make the word less likely?")
training = records.training_facts(ckpt)
attend_weight = training.get("attend_weight", 0)
if attend_weight > 0:
    st.info("**This model's cross-attention and prefix maps were trained to point.** While it learned, a "
            f"supervised-attention loss (weight {attend_weight}) pulled the decoder's attention, at "
            "every colour and shape word, onto the object it names"
            + (" (and at a pair's relation word, onto the object the relation is read from)"
               if training.get("attend_relations") else "")
            + " (see How it works). So for those two methods a "
            "high pointing score confirms the training rather than discovers something. The checks that nothing "
            "trained are gradient **relevancy**, the **sanity check** and the **deletion/insertion** curves: they "
            "tell whether the model really uses what it looks at."
            + (" A trained map can still miss: this model learned every right phrasing, so the prefix binding "
               "aimed at whichever object a randomly drawn caption named first, which the picture cannot tell, "
               "and its prefix maps miss often (How it works says more)."
               if training.get("captions") == "all" and training.get("bind_weight", 0) > 0
               and training.get("bind_to") == "named" else ""))


@st.cache_data(show_spinner=False, max_entries=8)
def measure(path: str, n: int) -> dict:
    """evaluate_trust on n held-out scenes, cached per checkpoint path and n."""
    return evaluate_trust(model_picker.load_captioner(path), n=n, curves_n=min(n, 6), rank_n=min(n, 6), progress=False)


saved = records.saved_trust(ckpt)
result = saved
if saved:
    command = saved.get("command")
    sets = {"heldout": {k: v for k, v in saved.items() if k not in SETS}}
    sets.update({k: saved[k] for k in SETS if k != "heldout" and isinstance(saved.get(k), dict)})
    chosen = "heldout"
    if len(sets) > 1:
        chosen = st.segmented_control(
            "Scenes", list(sets), default="heldout", key="tt_set", required=True,
            format_func=lambda k: f"{SETS[k]} ({sets[k].get('n_scenes', '?')})")
    result = sets[chosen]
    st.caption(f"From this checkpoint's trust.json, written by `{command}`" if command else
               "From this checkpoint's trust.json (it does not record the command that wrote it)")
    st.caption(f"These figures: {result.get('n_scenes', '?')} {SETS[chosen]}."
               + (f" The evaluation table above is over {metrics['heldout']['n_scenes']} held-out scenes, so its "
                  "caption numbers differ a little from these." if (metrics or {}).get("heldout", {}).get("n_scenes")
                  else ""))
else:
    measured = st.session_state.setdefault("vz_trust", {})
    c = st.columns([2, 1, 3], vertical_alignment="bottom")
    n = c[0].slider("Held-out scenes to measure on", 4, 60, 12, 4, key="tt_n",
                    help="More scenes, steadier numbers; roughly a second or two per scene on a laptop CPU.")
    if c[1].button("Measure now", key="tt_measure", type="primary"):
        with st.spinner(f"Measuring on {n} held-out scenes…"):
            measured[ckpt] = measure(ckpt, int(n))
    result = measured.get(ckpt)
    if result is None:
        st.info("This checkpoint has no trust.json (`vizcap eval` writes one). Press **Measure now** to measure its "
                "maps on a few held-out scenes.")
    else:
        st.caption(f"Measured here on {result.get('n_scenes', '?')} held-out scenes (vizcap.trust.evaluate_trust): "
                   "few scenes, so the numbers are rough.")
if result:
    st.subheader("In plain words")
    for sentence in figures.trust_verdict(result, notices.trained_maps(captioner) or ()):
        st.markdown(sentence)
    if result.get("n_words"):
        a, b = st.columns(2)
        with a:
            widgets.show(figures.pointing_game(result), key="tt_pointing")
        with b:
            widgets.show(figures.mass_in_box(result), key="tt_mass")
        if result.get("curves_n", 1):
            a, b = st.columns(2)
            with a:
                widgets.show(figures.sanity_check(result), key="tt_sanity")
            with b:
                methods = [m for m in result.get("curves", {}) if m != "fractions"]
                best = result.get("best_method")
                method = st.selectbox("Curves for", methods, index=methods.index(best) if best in methods else 0,
                                      key="tt_curve_method", format_func=lambda m: m.replace("_", " "))
                widgets.show(figures.deletion_insertion(result, method), key="tt_curves")
            st.subheader("Can the maps be ranked? Top-k deletion")
            st.markdown("For the colour word and the shape word of every correctly named object: grey the map's "
                        "1, 2, 4 or 8 hottest cells and see how far the word's probability drops, against greying the "
                        "object's own most-covered cells (**the box**, the ground truth) and random cells.")
            for sentence in ranking_verdict(result):  # "not measured: run vizcap eval …" without the measurement
                st.markdown(sentence)
            if result.get("ranking"):
                words = st.segmented_control("Words", list(figures.RANK_WORDS), default="all", key="tt_rank_words",
                                             required=True, format_func=figures.RANK_WORDS.get)
                widgets.show(figures.top_k_deletion(result, words), key="tt_rank")
        else:
            st.caption("The sanity check and the deletion/insertion curves were not measured on these scenes "
                       "(`vizcap eval --hard` measures pointing, mass and captions only on hard scenes).")
    chance = [v.get("chance") for v in result.get("pointing", {}).values()]
    if chance and all(isinstance(v, float) and math.isnan(v) for v in chance):
        st.caption("No object was named correctly, so no map could be scored.")
    with st.expander("What each number means", expanded=True):
        st.markdown("\n".join(f"- **{name}**: {line}" for name, line in figures.MEASURES.items()))
    st.download_button("Download these numbers (JSON)", json.dumps(result, indent=2), file_name="trust.json",
                       mime="application/json", key="tt_download", on_click="ignore")
