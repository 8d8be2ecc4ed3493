"""The training run: the loss curve from a checkpoint's train_log.jsonl."""

from __future__ import annotations

import plotly.graph_objects as go

from .common import LEGEND_BELOW, OKABE_ITO, finish


def loss_curve(rows: list[dict]) -> go.Figure:
    """Training losses against the optimizer step, from a checkpoint's train_log.jsonl."""
    keys = [k for k in ("loss", "caption_loss", "aux_loss", "bind_loss", "attend_loss", "val_loss")
            if any(k in r for r in rows)]
    fig = go.Figure()
    for i, k in enumerate(keys):
        pts = [(r["step"], r[k]) for r in rows if "step" in r and isinstance(r.get(k), (int, float))]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=k.replace("_", " "),
                                 line={"color": OKABE_ITO[i % len(OKABE_ITO)], "width": 2}))
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="loss (cross-entropy, log scale)", type="log", dtick=1)
    fig.update_layout(legend=LEGEND_BELOW)
    steps = [r["step"] for r in rows if "step" in r]
    first = next((r.get("loss") for r in rows if "loss" in r), None)
    last = next((r.get("loss") for r in reversed(rows) if "loss" in r), None)
    text = (f"Lines (on a logarithmic scale) of the training losses over {max(steps) if steps else 0} optimizer steps "
            f"({', '.join(k.replace('_', ' ') for k in keys) or 'none logged'}). "
            + (f"The total loss fell from {first:.2f} to {last:.2f}. " if first is not None and last is not None else "")
            + "The caption loss is the cross-entropy of the next word; the aux loss that of the per-cell labels"
            + ("; the bind loss that of the bound prefix tokens' maps against their objects" if "bind_loss" in keys else "")
            + ("; the attend loss that of the decoder's attention at object words against the named object"
               if "attend_loss" in keys else "") + ".")
    return finish(fig, "Training loss", text, height=400, margin={"b": 90})

