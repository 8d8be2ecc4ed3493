"""Can the heatmaps be trusted: the measured numbers as figures (pointing game, mass in box, sanity
check, deletion/insertion), one plain line per measure, and the verdict in words, never stronger than
the numbers."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import GREY, LEGEND_BELOW, OKABE_ITO, clean_floats, finish, percent


def _methods(result: dict, key: str) -> list[str]:
    return list(result.get(key, {}))



def pointing_game(result: dict) -> go.Figure:
    """Pointing-game hit rate per method (shape words and colour words) against chance."""
    methods = _methods(result, "pointing")
    shape = clean_floats(result["pointing"][m]["hit"] for m in methods)
    colour = clean_floats(result.get("pointing_colour_word", {}).get(m, {}).get("hit", float("nan")) for m in methods)
    chance = clean_floats([result["pointing"][m]["chance"] for m in methods][:1] or [float("nan")])[0]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=methods, y=shape, name="shape word", marker_color=OKABE_ITO[0],
                         text=[percent(v) for v in shape], textposition="auto"))
    fig.add_trace(go.Bar(x=methods, y=colour, name="colour word", marker_color=OKABE_ITO[2],
                         text=[percent(v) for v in colour], textposition="auto"))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color=OKABE_ITO[5])
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"chance ({percent(chance)})",
                                 line={"dash": "dash", "color": OKABE_ITO[5]}))
    fig.update_layout(barmode="group", legend=LEGEND_BELOW)
    fig.update_yaxes(range=[0, 1], title_text="hottest cell on the object", tickformat=".0%")
    pairs = ", ".join(f"{m} {percent(v)}" for m, v in zip(methods, shape))
    text = (f"Bars per map method: how often the hottest cell of a word's map lies on the object the word names "
            f"(pointing game, {result.get('n_words', 0)} words in {result.get('n_scenes', 0)} held-out scenes). "
            f"Shape words: {pairs}. The dashed line is chance ({percent(chance)}): a map pointing at a random cell.")
    return finish(fig, "Pointing game: hottest cell on the object?", text, height=400, margin={"b": 80})



def mass_in_box(result: dict) -> go.Figure:
    methods = _methods(result, "mass_in_box")
    mass = clean_floats(result["mass_in_box"][m]["mass"] for m in methods)
    chance = clean_floats(result["mass_in_box"][m]["chance"] for m in methods)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=methods, y=mass, name="map mass on the object", marker_color=OKABE_ITO[0],
                         text=[percent(v) for v in mass], textposition="auto"))
    fig.add_trace(go.Bar(x=methods, y=chance, name="object's share of the image (chance)", marker_color=GREY,
                         text=[percent(v) for v in chance], textposition="auto"))
    fig.update_layout(barmode="group", legend=LEGEND_BELOW)
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    text = ("Bars per map method: the share of the map's total weight that falls on the named object (blue) "
            "against the object's share of the image (grey), which a flat map would score. "
            + ", ".join(f"{m} {percent(v)} vs {percent(c)}" for m, v, c in zip(methods, mass, chance)) + ".")
    return finish(fig, "Mass in box: map weight on the object", text, height=380, margin={"b": 80})



def sanity_check(result: dict) -> go.Figure:
    methods = _methods(result, "sanity_spearman")
    values = clean_floats(result["sanity_spearman"][m] for m in methods)
    colours = [OKABE_ITO[2] if v is not None and v < 0.5 else OKABE_ITO[5] for v in values]
    fig = go.Figure(go.Bar(x=methods, y=values, marker_color=colours, text=[_fmt(v) for v in values], textposition="auto"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#777", annotation_text="0.5", annotation_position="top left")
    fig.update_yaxes(range=[-1, 1], title_text="rank correlation with a scrambled model")
    text = ("Bars per map method: the rank correlation between the map of the trained model and the map of a copy "
            "whose mapper and decoder were re-initialised (same image, same caption). Low (green) means the map "
            "depends on what the model learned; high (orange) means it mostly reflects the image or the "
            "architecture. " + ", ".join(f"{m} {_fmt(v)}" for m, v in zip(methods, values)) + ".")
    return finish(fig, "Sanity check: a scrambled model's map", text, height=340)



def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"



def deletion_insertion(result: dict, method: str) -> go.Figure:
    """Deletion and insertion curves of one method against a random order of the cells."""
    curves = result.get("curves", {})
    fractions = curves.get("fractions", [])
    c = curves.get(method, {})
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,  # short titles: they fit a half of 300 px
                        subplot_titles=("Deletion", "Insertion"))
    for col, kind in ((1, "deletion"), (2, "insertion")):
        for suffix, colour, dash, name in (("map", OKABE_ITO[0], "solid", "map order"),
                                           ("random", GREY, "dash", "random order")):
            y = c.get(f"{kind}_{suffix}", [])
            auc = c.get(f"{kind}_{suffix}_auc", float("nan"))
            fig.add_trace(go.Scatter(x=fractions[: len(y)], y=clean_floats(y), mode="lines+markers",
                                     name=f"{kind}, {name} (area {_fmt(clean_floats([auc])[0])})", legendgroup=kind,
                                     line={"color": colour, "dash": dash}), row=1, col=col)
        fig.update_xaxes(title_text="cells, hottest first", tickformat=".0%", dtick=0.5, row=1, col=col)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="probability of the word", row=1, col=1)
    fig.update_annotations(font_size=16)  # the subplot titles
    fig.update_layout(legend=LEGEND_BELOW)
    d_map, d_rand = c.get("deletion_map_auc", float("nan")), c.get("deletion_random_auc", float("nan"))
    i_map, i_rand = c.get("insertion_map_auc", float("nan")), c.get("insertion_random_auc", float("nan"))
    text = (f"Two line charts for the {method.replace('_', ' ')} maps. Left: the word's probability as more and more "
            f"cells are greyed out, hottest first (solid) or in random order (dashed); a faithful map makes it fall "
            f"faster than random (area {_fmt(clean_floats([d_map])[0])} vs {_fmt(clean_floats([d_rand])[0])}, lower is better). "
            f"Right: cells revealed on a grey image; faithful maps make it rise faster (area "
            f"{_fmt(clean_floats([i_map])[0])} vs {_fmt(clean_floats([i_rand])[0])}, higher is better).")
    return finish(fig, f"Deletion and insertion ({method.replace('_', ' ')})", text, height=430, margin={"b": 120})



RANK_WORDS = {"all": "colour and shape words", "colour": "colour words", "shape": "shape words"}


def top_k_deletion(result: dict, words: str = "all") -> go.Figure:
    """The top-k test (vizcap.trust.rank_summary) per method, the box baseline and random order: left, the
    drop of the word's probability when the k = 1, 2, 4, 8 hottest cells are greyed; right, the probability
    with only those cells visible; means over scenes with their 95 % intervals as error bars. A result
    without the measurement gives an empty figure that says so."""
    r = result.get("ranking") or {}
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("Deletion: drop", "Insertion: probability"))
    title = "Top-k deletion: maps vs the box and random cells"
    if not r:
        return finish(fig, title, "Not measured: this result has no top-k deletion test (run `vizcap eval --rank-n N`).",
                      height=430)
    ks = [str(k) for k in r["ks"]]
    names = list(r["deletion"][words])
    methods = [n for n in names if n not in ("box", "random")]
    style = {m: {"color": OKABE_ITO[i % len(OKABE_ITO)], "dash": "solid"} for i, m in enumerate(methods)}
    style.update(box={"color": "#000000", "dash": "dash"}, random={"color": GREY, "dash": "dot"})
    label = {"box": "box (the object's own cells)", "random": f"random ({r.get('orders', '?')} orders)"}
    for col, kind in ((1, "deletion"), (2, "insertion")):
        for name in names:
            s = r[kind][words][name]
            mean, low, high = (clean_floats(s[key]) for key in ("mean", "low", "high"))
            up = [None if None in (m, h) else h - m for m, h in zip(mean, high)]
            down = [None if None in (m, lo) else m - lo for m, lo in zip(mean, low)]
            fig.add_trace(go.Scatter(x=ks, y=mean, mode="lines+markers", name=label.get(name, name.replace("_", " ")),
                                     legendgroup=name, showlegend=col == 1, line=style[name],
                                     error_y={"type": "data", "array": up, "arrayminus": down, "visible": True}),
                          row=1, col=col)
        fig.update_xaxes(title_text="k: hottest cells greyed" if kind == "deletion" else "k: hottest cells kept",
                         type="category", row=1, col=col)
    fig.update_yaxes(title_text="drop of the word's probability", row=1, col=1)
    fig.update_yaxes(title_text="probability of the word", row=1, col=2)
    fig.update_annotations(font_size=16)
    fig.update_layout(legend=LEGEND_BELOW)
    k, at = r["k"], r["ks"].index(r["k"])
    drops = ", ".join(f"{label.get(n, n.replace('_', ' '))} {_fmt(clean_floats([r['deletion'][words][n]['mean'][at]])[0])}"
                      for n in names)
    text = (f"Two line charts, {RANK_WORDS.get(words, words)} of {r.get('n_words', '?')} named objects in "
            f"{r.get('n_scenes', '?')} scenes. Left: how much the word's probability drops when the k hottest cells "
            "of each method's map are greyed (k = " + ", ".join(ks) + "), against greying the object's own most-covered "
            f"cells (the box, dashed) and random cells (dotted); higher is better. Right: the probability with only "
            f"those k cells visible. Error bars: 95 % intervals over scenes. Drops at k = {k}: {drops}.")
    return finish(fig, title, text, height=460, margin={"b": 140})


# One plain line per measure, shown beside the numbers (the trust page and its figures).
MEASURES = {
    "pointing game": "how often the hottest cell of a word's map lies on the object the word names",
    "chance": "what a map pointing at a random cell would score: the share of cells the object touches",
    "mass in box": "the share of the map's total weight that falls on the named object",
    "rank correlation (sanity check)": "how alike the cell rankings of the trained model's map and a scrambled "
                                       "model's map are, from -1 to 1 (Spearman); near 1 = the map barely depends "
                                       "on training",
    "deletion / insertion area": "the area under the word's probability as the hottest cells are greyed out "
                                 "(deletion: lower is better) or revealed on grey (insertion: higher is better), "
                                 "against a random order",
    "top-k deletion": "the drop of the word's probability when the map's k = 1, 2, 4, 8 hottest cells are greyed, "
                      "against greying the object's own most-covered cells (the box) and random cells; "
                      "insertion keeps only those k cells visible",
    "exact": "the share of captions exactly equal to the true caption",
    "object recall": "the share of objects named with the right colour and shape",
    "BLEU-1…4": "how many of the caption's single words (1) up to four-word runs (4) also occur in the true "
                "caption, 0 to 1",
    "ROUGE-L": "the longest run of words shared with the true caption, in order, as a share, 0 to 1",
    "CIDEr": "agreement of the caption's word groups with the true caption's, rare words weighing more; "
             "0 to 10 here, higher is better",
}



SANITY_LINE = 0.5  # rank correlation with the randomised copy's map at or above which a method fails the check


def trust_verdict(result: dict, trained: tuple[str, ...] = ()) -> list[str]:
    """Plain-language sentences, driven by the measured numbers and never stronger than them, on how far
    the heatmaps can be trusted. `trained`: the methods whose maps the model's training pulled onto the
    objects (vizcap.notices.trained_maps): their pointing is reported as the training target, and the
    method the verdict follows is chosen among the others."""
    out = []
    n_words = result.get("n_words", 0)
    n_scenes = result.get("n_scenes", 0)
    caption = result.get("caption", {})
    recall = caption.get("object_recall")
    if recall is not None:
        out.append(f"**Captions.** On these {n_scenes} scenes the model named {percent(recall)} of the objects "
                   f"correctly" + (f" and wrote {percent(caption.get('exact'))} of the captions exactly right."
                                   if caption.get("exact") is not None else "."))
    if not n_words:
        out.append("**Too little to measure.** The model named no object correctly in these scenes, so there is no "
                   "word whose map can be checked against the truth. Treat every heatmap of this model as unverified.")
        return out
    pointing = result.get("pointing", {})
    targets = [m for m in pointing if m in trained]
    if targets:
        names = " and ".join(f"*{m.replace('_', ' ')}*" for m in targets)
        hits = ", ".join(f"{percent(pointing[m]['hit'])}" for m in targets)
        out.append(f"**Trained to point.** {names} put their hottest cell on the named object {hits} of the time — but "
                   "this model was trained to make them do that, so it is their training target, not evidence of "
                   "what the model uses. The methods below were not trained.")
    free = [m for m in pointing if m not in trained] or list(pointing)
    best = result.get("best_method")  # the measurement's own choice, unless training made it a target
    if best not in free:
        best = max(free, key=lambda m: pointing[m]["hit"])
    hit, chance = pointing[best]["hit"], pointing[best]["chance"]
    margin = hit - chance
    if margin >= 0.3:
        level = "its brightest spot usually sits on the object the word names"
    elif margin >= 0.1:
        level = "its brightest spot is on the right object more often than chance, but often misses: read it as a hint"
    else:
        level = "its brightest spot is no better than a random cell: do not read it as “where the model looked”"
    out.append(f"**Pointing.** The best {'untrained ' if targets else ''}method, *{best.replace('_', ' ')}*, puts its "
               "hottest cell on the named object "
               f"{percent(hit)} of the time against {percent(chance)} by chance ({n_words} words): {level}.")
    mass = result.get("mass_in_box", {}).get(best, {})
    m, m_chance = mass.get("mass"), mass.get("chance")
    if m is not None and m_chance is not None and not (math.isnan(m) or math.isnan(m_chance)):
        spread = ("most of the map's weight is on the object" if m >= 0.5 else
                  "the rest of the map is spread over other cells: read the brightest spot, not the whole map")
        out.append(f"**Mass.** {percent(m)} of the *{best.replace('_', ' ')}* map's weight falls on the named object, "
                   f"where a flat map would put {percent(m_chance)}: {spread}.")
    weak = [w for w in pointing if w != best and pointing[w]["hit"] - pointing[w]["chance"] < 0.1]
    if weak:
        out.append(f"The maps of {', '.join(w.replace('_', ' ') for w in weak)} do little better than chance here.")
    rho = {m: v for m, v in result.get("sanity_spearman", {}).items() if v is not None and not math.isnan(v)}
    if rho:  # every method's result, plainly: a map a scrambled model also draws shows little of what was learned
        passed = [f"*{m.replace('_', ' ')}* ({v:.2f}{', only just' if v > SANITY_LINE - 0.1 else ''})"
                  for m, v in rho.items() if v < SANITY_LINE]
        failed = [f"*{m.replace('_', ' ')}* ({v:.2f})" for m, v in rho.items() if v >= SANITY_LINE]
        out.append("**Sanity check** (rank correlation with the map of a copy whose decoder and mapper are scrambled; "
                   f"{SANITY_LINE} or more fails). "
                   + (f"Passed: {', '.join(passed)}. " if passed else "")
                   + (f"Failed: {', '.join(failed)} — a scrambled model draws much the same map, so it shows the image "
                      "and the architecture more than what the model learned." if failed else ""))
    c = result.get("curves", {}).get(best, {})
    d_map, d_rand = c.get("deletion_map_auc"), c.get("deletion_random_auc")
    if d_map is not None and d_rand is not None and not (math.isnan(d_map) or math.isnan(d_rand)):
        if d_map < d_rand - 0.02:
            out.append(f"**Faithfulness.** Greying out the map's hottest cells lowers the word's probability faster than "
                       f"greying out random cells (area {d_map:.2f} vs {d_rand:.2f}): the marked cells matter to the "
                       f"model's choice of the word.")
        else:
            out.append(f"**Faithfulness not shown.** Greying out the map's hottest cells hurts the word no more than random "
                       f"cells (area {d_map:.2f} vs {d_rand:.2f}): the map does not show what the model needs.")
    out.append("These numbers hold for scenes like these, where the truth is known; on other images a heatmap is a "
               "hint about the model, not a proof.")
    return out



# A difference of areas smaller than this is read as "no difference": the curves of one picture move
# by a few hundredths between random orders.
AREA_MARGIN = 0.02


def photo_trust_verdict(result: dict) -> list[str]:
    """Plain-language sentences for `vizcap.photo_trust.photo_trust`'s measurements on one picture (no
    truth: the sanity check and deletion/insertion only), one per method, never stronger than the numbers."""
    words = result.get("words") or []
    if not words:
        return ["**Nothing to measure.** The caption is empty, so there is no word whose map can be checked."]
    out = []
    for method, v in result.get("methods", {}).items():
        name = method.replace("_", " ")
        said = []
        rho = v.get("sanity")
        if rho is not None and not math.isnan(rho):
            said.append(f"a scrambled model draws a different map (rank correlation {rho:.2f}): it depends on what the "
                        "model learned" if rho < 0.5 else
                        f"a scrambled model draws a similar map (rank correlation {rho:.2f}): much of it comes from the "
                        "picture and the architecture, not from what the model learned")
        d_map, d_rand = v.get("deletion_map_auc"), v.get("deletion_random_auc")
        if d_map is not None and d_rand is not None:
            said.append(f"greying its hottest cells first lowers the words' probability faster than random cells "
                        f"(area {d_map:.3f} vs {d_rand:.3f}): those cells matter to the words" if d_map < d_rand - AREA_MARGIN
                        else f"greying its hottest cells first hurts the words no more than random cells (area {d_map:.3f} "
                             f"vs {d_rand:.3f}): this test does not show that the map marks what the words need")
        i_map, i_rand = v.get("insertion_map_auc"), v.get("insertion_random_auc")
        if i_map is not None and i_rand is not None:
            said.append(f"revealing its hottest cells first brings the words back sooner than random cells (area "
                        f"{i_map:.3f} vs {i_rand:.3f})" if i_map > i_rand + AREA_MARGIN else
                        f"revealing its hottest cells first brings the words back no sooner than random cells (area "
                        f"{i_map:.3f} vs {i_rand:.3f})")
        out.append(f"**{name[0].upper() + name[1:]}:** " + "; ".join(said) + ".")
    out.append(f"Measured on this one picture and {len(words)} word{'s' if len(words) != 1 else ''}: a hint about "
               "these maps, not a measurement of the model (ShapeScenes models are measured on hundreds of scenes "
               "whose truth is known).")
    return out
