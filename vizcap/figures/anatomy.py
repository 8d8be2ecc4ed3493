"""How it works: the captioner's parts with live tensor shapes, and what its auxiliary heads predict."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from .common import OKABE_ITO, finish
from .images import image_axes, image_source


def architecture(shapes: dict) -> go.Figure:
    """The captioner as boxes and arrows, labelled with the live tensor shapes of the loaded model.
    `shapes` comes from `vizcap.anatomy.trace` (keys: encoder, pixels, features, grid, memory, prefix,
    mapper_attention, decoder_input, logits, decoder_layers, decoder_heads, mode)."""
    mode = shapes["mode"]
    has_prefix = mode != "cross"
    has_cross = mode != "prefix"
    fmt = lambda s: "×".join(str(v) for v in s)  # noqa: E731
    gh, gw = shapes["grid"]
    boxes = [
        ("image", 0.0, 0.5, f"<b>Image</b><br>{fmt(shapes['pixels'])}<br>squashed to {shapes['pixels'][-1]} px"),
        ("encoder", 1.0, 0.5, f"<b>Encoder</b><br>{shapes['encoder']}<br>{fmt(shapes['features'])}<br>{gh}×{gw} grid"),
        ("memory", 2.0, 0.5, f"<b>Memory</b><br>{fmt(shapes['memory'])}<br>project + position"),
    ]
    if has_prefix:
        boxes.append(("mapper", 3.0, 0.85, f"<b>Mapper</b><br>{shapes['prefix'][1]} queries<br>attn {fmt(shapes['mapper_attention'])}"))
        boxes.append(("prefix", 4.0, 0.85, f"<b>Prefix</b><br>{fmt(shapes['prefix'])}"))
    boxes.append(("decoder", 5.0, 0.5, f"<b>GPT-2 decoder</b><br>{shapes['decoder_layers']} layers × "
                                        f"{shapes['decoder_heads']} heads<br>input {fmt(shapes['decoder_input'])}"))
    boxes.append(("words", 5.0, 0.05, "<b>Words so far</b><br>&lt;bos&gt; w1 w2 …"))
    boxes.append(("logits", 6.0, 0.5, f"<b>Next-word logits</b><br>{fmt(shapes['logits'])}"))
    pos = {name: (x, y) for name, x, y, _ in boxes}
    arrows = [("image", "encoder"), ("encoder", "memory"), ("words", "decoder"), ("decoder", "logits")]
    if has_prefix:
        arrows += [("memory", "mapper"), ("mapper", "prefix"), ("prefix", "decoder")]
    if has_cross:
        arrows.append(("memory", "decoder"))
    fig = go.Figure()
    for a, b in arrows:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if x1 == x0:  # vertical: from the edge of one box to the edge of the other
            sign = 1 if y1 > y0 else -1
            head, tail = (x1, y1 - sign * 0.15), (x0, y0 + sign * 0.15)
        else:
            head, tail = (x1 - 0.43, y1), (x0 + 0.43, y0)
        fig.add_annotation(x=head[0], y=head[1], ax=tail[0], ay=tail[1], xref="x", yref="y", axref="x", ayref="y",
                           showarrow=True, arrowhead=3, arrowwidth=1.6, arrowcolor="#555", text="")
        if (a, b) == ("memory", "decoder"):
            fig.add_annotation(x=3.5, y=0.45, text="<i>cross-attention</i>", showarrow=False,
                               font={"size": 12, "color": "#555"})
    for name, x, y, label in boxes:
        colour = OKABE_ITO[{"image": 4, "encoder": 0, "memory": 4, "mapper": 2, "prefix": 2, "decoder": 1,
                            "words": 6, "logits": 3}[name]]
        fig.add_shape(type="rect", x0=x - 0.42, x1=x + 0.42, y0=y - 0.14, y1=y + 0.14, line={"color": colour, "width": 2},
                      fillcolor=colour, opacity=0.18, layer="below")
        fig.add_annotation(x=x, y=y, text=label, showarrow=False, font={"size": 12, "color": "#222"})
    fig.update_xaxes(visible=False, range=[-0.5, 6.5])
    fig.update_yaxes(visible=False, range=[-0.15, 1.05])
    fig.update_layout(plot_bgcolor="white")
    N = gh * gw
    text = (f"A block diagram, left to right. The image ({fmt(shapes['pixels'])}) goes through the encoder "
            f"{shapes['encoder']}, which cuts it into a {gh}×{gw} grid of {N} feature vectors "
            f"({fmt(shapes['features'])}); they are projected to the memory {fmt(shapes['memory'])}. "
            + (f"The mapper's {shapes['prefix'][1]} learned queries read the memory and become the prefix "
               f"{fmt(shapes['prefix'])}, placed before the words. " if has_prefix else "")
            + ("The decoder also reads the memory directly through cross-attention. " if has_cross else "")
            + f"The GPT-2 decoder ({shapes['decoder_layers']} layers, {shapes['decoder_heads']} heads) turns its "
            f"input {fmt(shapes['decoder_input'])} into next-word logits {fmt(shapes['logits'])}.")
    return finish(fig, "The captioner, with the shapes of its tensors for this image", text, height=440)



def aux_predictions(image: Image.Image, classes: np.ndarray, names: list[str], head: str) -> go.Figure:
    """What an auxiliary dense head predicts for each grid cell (classes [gh, gw] of indices into names)."""
    from ..scenes import COLOURS

    classes = np.asarray(classes)
    gh, gw = classes.shape
    n = len(names)
    if all(name in COLOURS for name in names[1:]):  # the colour head: each class in its own colour
        palette = ["#ffffff"] + ["#%02x%02x%02x" % COLOURS[name] for name in names[1:]]
    else:
        palette = ["#ffffff"] + [OKABE_ITO[k % len(OKABE_ITO)] for k in range(n - 1)]
    scale = []
    for k in range(n):
        scale += [[k / n, palette[k]], [(k + 1) / n, palette[k]]]
    source, W, H = image_source(image)
    fig = go.Figure(layout=image_axes())
    fig.add_trace(go.Image(source=source, hoverinfo="skip"))
    z = np.where(classes > 0, classes + 0.5, np.nan)  # background cells stay transparent
    fig.add_trace(go.Heatmap(z=z, x0=W / gw / 2 - 0.5, dx=W / gw, y0=H / gh / 2 - 0.5, dy=H / gh,
                             zmin=0, zmax=n, colorscale=scale, opacity=0.6, hoverongaps=False,
                             customdata=np.array(names, dtype=object)[classes],
                             hovertemplate="%{customdata}<extra></extra>",
                             colorbar={"tickvals": [k + 0.5 for k in range(n)], "ticktext": names, "thickness": 12}))
    found = sorted({names[k] for k in classes.ravel() if k})
    text = (f"The image with each of its {gh}×{gw} cells coloured by the {head} that the auxiliary head "
            f"predicts for it (cells it calls background are left clear). Found: {', '.join(found) or 'nothing but background'}.")
    return finish(fig, f"Auxiliary head “{head}”: one label per cell", text, height=380)

