"""The search tree of a decoding run: every hypothesis beam search kept, step by step."""

from __future__ import annotations

import plotly.graph_objects as go

from .common import FONT_SIZE, LEGEND_BELOW, OKABE_ITO, TEXT_GREY, figure_layout, plain


BEAM_TREE_HELP = ("<bos> marks the start of the caption and <eos> the model's choice to stop. log p is the sum of "
                  "the log-probabilities of the words so far (0 would be certain; the more negative, the less "
                  "likely). A finished caption's score is its log p divided by its length to the power of the "
                  "length penalty, so that long captions are not punished for every extra word; the best score wins.")



ROW_PX = 48  # pixels per row of hypotheses: two lines of 14-px words (19 px boxes) fit between rows
END_STEP = 0.3  # rows between two ended hypotheses of one step (diamonds, unlabelled)



def _tree_layout(tree: list[dict]) -> list[list[float]]:
    """y position of every live hypothesis, step by step: each step's hypotheses ordered by their
    parent's position (then by score), so that children sit next to their parent and no two edges cross."""
    ys: list[list[float]] = []
    for t, step in enumerate(tree):
        parent_y = [ys[t - 1][p] if t and p < len(ys[t - 1]) else 0.0 for p in step["parents"]]
        order = sorted(range(len(step["tokens"])), key=lambda i: (parent_y[i], i))
        y = [0.0] * len(order)
        for rank, i in enumerate(order):
            y[i] = float(rank)
        ys.append(y)
    return ys



def beam_tree(tree: list[dict], chosen_ids: list[int] | None = None, ended: bool = False) -> go.Figure:
    """The search tree, read left to right: one column per step, one dot per hypothesis kept at that
    step, next to the hypothesis it extends (edges never cross). Hypotheses dropped at the next step are
    faded; hypotheses that ended (<eos>) sit in their own lane below the live ones (diamonds), those cut
    at the word limit are squares; the chosen caption is the orange line. Words sit above their dot at
    even steps and below it at odd ones, so that a word as wide as two steps never runs into its neighbour's."""
    ys = _tree_layout(tree)
    width = max((len(s["tokens"]) for s in tree), default=1)
    lane = width + 0.4  # the ended hypotheses' own lane, below every live one (and the last row's words)
    xs, yv, labels, hovers, colours, text_colours = [0], [0.0], [plain("<bos>")], ["start of the caption (<bos>)"], \
        [OKABE_ITO[0]], ["#222"]
    edge_x, edge_y, faded_x, faded_y = [], [], [], []
    end_x, end_y, end_hover, cut_x, cut_y = [], [], [], [], []
    n_dropped = 0
    last = len(tree) - 1
    for t, step in enumerate(tree):
        nxt = tree[t + 1] if t < last else None
        for i, (tok, parent, score) in enumerate(zip(step["tokens"], step["parents"], step["scores"])):
            has_child = nxt is not None and (i in nxt["parents"] or any(f["parent"] == i for f in nxt.get("finished", [])))
            cut = t == last and step.get("truncated", False)
            kept = has_child or cut
            n_dropped += not kept
            py = ys[t - 1][parent] if t else 0.0
            xs.append(t + 1)
            yv.append(ys[t][i])
            labels.append(plain(tok))
            state = ("cut at the word limit" if cut else "kept" if kept else "dropped: not among the best at the next step")
            hovers.append(f"step {t + 1}: '{plain(tok)}'<br>log p so far = {score:.3f}<br>{state}")
            colours.append(OKABE_ITO[0] if kept else "#c9c9c9")
            text_colours.append("#222" if kept else TEXT_GREY)  # dropped: greyer, still readable
            (edge_x if kept else faded_x).extend([t, t + 1, None])
            (edge_y if kept else faded_y).extend([py, ys[t][i], None])
            if cut:
                cut_x.append(t + 1)
                cut_y.append(ys[t][i])
        for k, fin in enumerate(step.get("finished", [])):
            py = ys[t - 1][fin["parent"]] if t and fin["parent"] < len(ys[t - 1]) else 0.0
            y = lane + END_STEP * k
            end_x.append(t + 1)
            end_y.append(y)
            end_hover.append(f"step {t + 1}: ended (<eos>)<br>log p {fin['logp']:.3f}, score {fin['score']:.3f}"
                             .replace("<eos>", plain("<eos>")))
            edge_x += [t, t + 1, None]
            edge_y += [py, y, None]
    path_x, path_y = _chosen_path(tree, ys, chosen_ids or [], ended, lane)
    traces = [{"type": "scatter", "x": faded_x, "y": faded_y, "mode": "lines", "line": {"color": "#ececec", "width": 1},
               "hoverinfo": "skip", "showlegend": False},
              {"type": "scatter", "x": edge_x, "y": edge_y, "mode": "lines", "line": {"color": "#b9b9b9", "width": 1},
               "hoverinfo": "skip", "showlegend": False}]
    if path_x:
        traces.append({"type": "scatter", "x": path_x, "y": path_y, "mode": "lines",
                       "line": {"color": OKABE_ITO[1], "width": 4}, "name": "chosen caption", "hoverinfo": "skip"})
    positions = ["top center" if x % 2 == 0 else "bottom center" for x in xs]
    traces.append({"type": "scatter", "x": xs, "y": yv, "mode": "markers+text", "text": labels,
                   "textposition": positions, "textfont": {"color": text_colours, "size": FONT_SIZE},
                   "marker": {"size": 9, "color": colours}, "hovertext": hovers, "hoverinfo": "text",
                   "name": "live hypothesis (grey: dropped)"})
    if cut_x:
        traces.append({"type": "scatter", "x": cut_x, "y": cut_y, "mode": "markers", "hoverinfo": "skip",
                       "marker": {"size": 12, "symbol": "square-open", "color": OKABE_ITO[3]},
                       "name": "cut at the word limit"})
    if end_x:
        traces.append({"type": "scatter", "x": end_x, "y": end_y, "mode": "markers",
                       "marker": {"size": 10, "symbol": "diamond", "color": OKABE_ITO[5]},
                       "hovertext": end_hover, "hoverinfo": "text", "name": plain("ended (<eos>)")})
    text = (f"A tree read left to right: each column is a decoding step, each dot a hypothesis kept at that step "
            f"(up to {width}), labelled with its newest word and drawn next to the hypothesis it extends. "
            f"{n_dropped} hypotheses were dropped at the next step (faded). Diamonds in the bottom lane are "
            f"hypotheses that ended, {sum(len(s.get('finished', [])) for s in tree)} in all (hover for their "
            f"score); the orange line is the caption that was chosen. " + BEAM_TREE_HELP)
    bottom = max(end_y, default=lane) + 0.5
    top = -0.75  # room for the first row's words above it
    layout = figure_layout("How the search grew, step by step", text,  # one line: the lesson fits 1280×800
                     # ROW_PX a row: a word below one dot and a word above the next row's never meet
                     156 + round(ROW_PX * (bottom - top)),
                     yaxis={"visible": False, "range": [bottom, top]},  # reversed: the best at the top
                     # standoff: Streamlit's theme sets ~30 px, which the margin below has no room for
                     xaxis={"title": {"text": "step (words written)", "standoff": 6}, "dtick": 1,
                            "range": [-0.5, len(tree) + 0.7], "fixedrange": True},
                     legend=LEGEND_BELOW, margin={"l": 10, "r": 10, "t": 46, "b": 110},  # b: step numbers, axis title, a legend on 2 rows
                     annotations=[{"x": 0, "y": lane, "xref": "x", "yref": "y", "text": plain("ended (<eos>) →"),
                                   "showarrow": False, "xanchor": "left",
                                   "font": {"size": FONT_SIZE, "color": OKABE_ITO[5]}}]
                     if end_x else [])
    return go.Figure(data=traces, layout=layout)



def _chosen_path(tree: list[dict], ys: list[list[float]], ids: list[int], ended: bool,
                 lane: float) -> tuple[list, list]:
    xs, yv, prev = [0], [0.0], 0
    for t, tok in enumerate(ids):
        if t >= len(tree):
            return [], []
        step = tree[t]
        match = [i for i, (tid, par) in enumerate(zip(step["token_ids"], step["parents"]))
                 if tid == tok and (t == 0 or par == prev)]
        if not match:
            return [], []
        prev = match[0]
        xs.append(t + 1)
        yv.append(ys[t][prev])
    if ended and len(ids) < len(tree):
        for k, fin in enumerate(tree[len(ids)].get("finished", [])):
            if fin["parent"] == prev or not ids:
                xs.append(len(ids) + 1)
                yv.append(lane + END_STEP * k)
                break
    return xs, yv

