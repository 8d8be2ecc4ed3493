"""The words and their probabilities: the alternatives at one step, each strategy's word
probabilities, and how temperature, top-k and top-p reshape the next-word distribution."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .common import GREY, LEGEND_BELOW, OKABE_ITO, axis_span, figure_layout, panel_title, plain


def alternatives_bar(top_tokens: list[str], top_probs, chosen: str, step: int) -> go.Figure:
    """The model's most likely next words at one step; the one it wrote is highlighted."""
    probs = [float(p) for p in top_probs]
    colours = [OKABE_ITO[0] if t == chosen else GREY for t in top_tokens]
    p_chosen = probs[top_tokens.index(chosen)] if chosen in top_tokens else float("nan")
    runner = next(((t, p) for t, p in zip(top_tokens, probs) if t != chosen), (None, float("nan")))
    text = (f"Horizontal bars of the {len(probs)} most likely words at step {step + 1}. The written word "
            f"'{chosen}' (blue) had probability {p_chosen:.2f}; the runner-up "
            f"'{runner[0]}' had {runner[1]:.2f}.")
    bar = {"type": "bar", "x": probs[::-1], "y": [plain(t) for t in top_tokens][::-1], "orientation": "h",
           "marker": {"color": colours[::-1]}, "text": [f"{p:.2f}" for p in probs][::-1], "textposition": "auto",
           "hovertemplate": "%{y}: %{x:.3f}<extra></extra>"}
    return go.Figure(data=[bar], layout=figure_layout(f"Step {step + 1}: “{plain(chosen)}” vs others", text,
                                                90 + 26 * len(probs),
                                                xaxis={"range": [0, 1], "title": {"text": "probability"}}))



def step_probabilities(runs: dict[str, tuple[list[str], list[float]]]) -> go.Figure:
    """One row per decoding run: the probability the model gave each word it wrote."""
    names = list(runs)
    rows = max(1, len(names))
    gap = min(0.45 / rows, 1 / (rows - 1) - 0.01) if rows > 1 else 0.0
    height = (1 - gap * (rows - 1)) / rows
    traces, axes, titles, lowest = [], {}, [], []
    for i, name in enumerate(names):  # one row of axes per run, laid out here (make_subplots is slow)
        tokens, probs = runs[name]
        probs = [float(p) for p in probs]
        axis = "" if i == 0 else str(i + 1)
        y1 = 1 - i * (height + gap)
        axes[f"xaxis{axis}"] = {"anchor": f"y{axis}", "domain": [0.0, 1.0]}
        axes[f"yaxis{axis}"] = {"anchor": f"x{axis}", "domain": axis_span(y1 - height, y1), "range": [0, 1],
                                "title": {"text": "p"}}
        traces.append({"type": "bar", "x": [f"{j + 1}. {plain(t)}" for j, t in enumerate(tokens)], "y": probs,
                       "marker": {"color": OKABE_ITO[i % len(OKABE_ITO)]}, "name": name, "showlegend": False,
                       "text": [f"{p:.2f}" for p in probs], "textposition": "auto",
                       "hovertemplate": "%{x}: %{y:.3f}<extra>" + plain(name) + "</extra>",
                       "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
        titles.append(panel_title(plain(name), 0.5, y1))
        if probs:
            j = int(np.argmin(probs))
            lowest.append(f"{name}: least sure of '{tokens[j]}' ({probs[j]:.2f})")
    text = ("One bar chart per decoding strategy: each bar is a word the strategy wrote, its height the "
            "probability the model gave that word at that step. " + "; ".join(lowest) + ".")
    return go.Figure(data=traces, layout=figure_layout("How sure the model was of each word", text, 80 + 190 * rows,
                                                 annotations=titles, **axes))



def distribution_reshape(words: list[str], logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                         context: str = "", n_show: int = 12, log_scale: bool = False) -> go.Figure:
    """The next-word distribution before (grey) and after (blue) temperature, top-k and top-p, as
    `vizcap.decoding.filter_logits` applies them when sampling. logits [V] over `words` (-inf for
    tokens that can never be chosen)."""
    import torch

    from ..decoding import filter_logits

    logits = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    before = torch.softmax(logits, -1).numpy()
    after = torch.softmax(filter_logits(logits[None], temperature, top_k, top_p)[0], -1).numpy()
    order = np.argsort(-before, kind="stable")[: max(1, min(n_show, len(words)))]
    names = [plain(words[i]) for i in order]
    traces = [{"type": "bar", "x": names, "y": before[order], "name": "model (T = 1)", "marker": {"color": GREY},
               "hovertemplate": "%{x}: %{y:.3f}<extra>model</extra>"},
              {"type": "bar", "x": names, "y": after[order], "name": "what sampling draws from",
               "marker": {"color": OKABE_ITO[0]}, "hovertemplate": "%{x}: %{y:.3f}<extra>reshaped</extra>"}]
    if log_scale:  # the tail that top-k and top-p cut becomes visible
        ticks = [1, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6]
        yaxis = {"type": "log", "range": [-6, 0.05], "tickvals": ticks,
                 "ticktext": ["1", "0.1", "0.01", "0.001", "10⁻⁴", "10⁻⁵", "10⁻⁶"],
                 "title": {"text": "probability (log scale)"}}
    else:
        yaxis = {"range": [0, 1], "title": {"text": "probability"}}
    kept = int((after > 0).sum())
    settings = f"temperature {temperature:g}, top-k {top_k or 'off'}, top-p {top_p:g}"
    text = (f"Paired bars for the {len(order)} likeliest next words{' after ' + repr(context) if context else ''}: "
            f"grey is the model's own distribution, blue the one sampling draws from with {settings}. "
            f"{kept} of {len(words)} words keep a chance; the top word's share goes from "
            f"{before[order[0]]:.2f} to {after[order[0]]:.2f}. Temperature below 1 sharpens the distribution, above 1 "
            f"flattens it; top-k and top-p cut the tail.")
    heading = f"The next word after “{plain(context)}”" if context else "The next word"
    return go.Figure(data=traces, layout=figure_layout(heading + f"<br>({settings})", text, 420, yaxis=yaxis,
                                                 barmode="group", legend=LEGEND_BELOW,
                                                 margin={"l": 10, "r": 10, "t": 60, "b": 60}))

