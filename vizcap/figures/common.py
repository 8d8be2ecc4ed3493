"""What every figure shares: the palette, the layout with its plain-language description (the alt text,
read back with `description(fig)`), text made safe for plotly, and percentages."""

from __future__ import annotations

import html
import math
from decimal import ROUND_HALF_UP, Decimal

import plotly.graph_objects as go

COLORSCALES = ("viridis", "cividis")
# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GREY = "#9a9a9a"


def description(fig: go.Figure) -> str:
    """The figure's plain-language description (its alt text)."""
    meta = fig.layout.meta
    return meta.get("description", "") if isinstance(meta, dict) else ""



def title(fig: go.Figure) -> str:
    return fig.layout.title.text or ""



def figure_layout(title_text: str, text: str, height: int | None = None, **more) -> dict:
    """A figure's layout: its title, its description (alt text) in `meta`, and `more`."""
    layout = {"title": {"text": title_text, "x": 0.0, "xanchor": "left"}, "meta": {"description": text},
              "margin": {"l": 10, "r": 10, "t": 60, "b": 10}, **more}
    if height:
        layout["height"] = height
    return layout



def finish(fig: go.Figure, title_text: str, text: str, height: int | None = None) -> go.Figure:
    fig.update_layout(figure_layout(title_text, text, height))
    return fig



def clean_floats(values) -> list:
    """Floats for plotly, NaN -> None (a gap, never a fake zero)."""
    out = []
    for v in values:
        v = None if v is None else float(v)
        out.append(None if v is None or math.isnan(v) else v)
    return out



def percent(v) -> str:
    """A share as a percentage; decimals where rounding would claim all or nothing (0.997 is 99.7%, not 100%)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    pct = Decimal(repr(float(v))) * 100  # from the decimal the share prints as: 0.945 is 94.5, not 94.4999…
    for places in range(4):  # as many decimals as it takes not to print a share between 0 and 1 as 0 % or 100 %
        shown = pct.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        if not (0 < v < 1 and shown in (0, 100)):
            break
    return f"{shown}%"



def plain(text) -> str:
    """Text for plotly (titles, labels, hover): plotly reads <b>, <br>… as markup and turns &lt;,
    &gt;, &amp; back into characters, so a word such as "<b>" or "a&b" must be escaped to be shown."""
    return html.escape(str(text), quote=False)



def axis_span(lo: float, hi: float) -> list[float]:
    """An axis domain inside [0, 1] (sums of fractions can land a hair outside it)."""
    return [min(1.0, max(0.0, round(lo, 9))), min(1.0, max(0.0, round(hi, 9)))]



def panel_title(text: str, x: float, y: float) -> dict:
    """A small multiple's title, centred above its panel (x, y in figure fractions)."""
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": "center",
            "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}

