"""What every figure shares: the palette, the layout with its plain-language description (the alt text,
read back with `description(fig)`), text made safe for plotly, and percentages."""

from __future__ import annotations

import html
import math
import re
from decimal import ROUND_HALF_UP, Decimal

import plotly.graph_objects as go

COLORSCALES = ("viridis", "cividis")
# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GREY = "#9a9a9a"
# Chart text is at least this many pixels (tick labels, legends, labels in bars: plotly's default 12 px and
# the text it shrinks into narrow bars are too small on a projector) and a title is larger.
FONT_SIZE = 14
TITLE_SIZE = 18
TEXT_GREY = "#6b6b6b"  # grey text still readable on white: contrast 5.3:1 (WCAG AA asks 4.5:1)
# chart text (ticks, axis titles, panel titles): Streamlit's theme draws it in a 60 % grey, 3.7:1 on white
FONT_COLOUR = "#444444"  # 9.7:1
# a legend in its own band at the bottom of the figure (the container, not the plot area): never over the
# x-axis title, however tall the tick labels are
LEGEND_BELOW = {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0.0, "xanchor": "left"}
TITLE_CHARACTERS = 44  # a title line this long fits a chart 400 px wide: longer titles wrap (plotly never does)


def description(fig: go.Figure) -> str:
    """The figure's plain-language description (its alt text)."""
    meta = fig.layout.meta
    return meta.get("description", "") if isinstance(meta, dict) else ""



def title(fig: go.Figure) -> str:
    return fig.layout.title.text or ""



def wrap_title(text: str, width: int = TITLE_CHARACTERS) -> str:
    """`text` (plotly markup) broken into lines of about `width` visible characters at spaces, keeping
    the line breaks it has: plotly draws a title on one line and cuts what does not fit. A line keeps
    its last space, so the title's text still reads as one sentence (a search for it finds it)."""
    lines = []
    for part in text.split("<br>"):
        line, shown = "", 0
        for word in part.split(" "):
            n = len(html.unescape(word))
            if line and shown + 1 + n > width:
                lines.append(line + " ")
                line, shown = word, n
            else:
                line, shown = (f"{line} {word}", shown + 1 + n) if line else (word, n)
        lines.append(line)
    return "<br>".join(lines)



def figure_layout(title_text: str, text: str, height: int | None = None, **more) -> dict:
    """A figure's layout: its title (wrapped, the top margin as tall as its lines), its description (alt
    text) in `meta`, chart text at FONT_SIZE or larger, and `more`; the height grows by the title's
    extra lines, so that the plot keeps its size."""
    title_text = wrap_title(title_text)
    extra = 24 * title_text.count("<br>")
    margin = {"l": 10, "r": 10, "t": 60, "b": 10, **more.pop("margin", {})}
    margin["t"] += extra
    # the title hangs from the top: its extra lines take the margin's extra room, not the room of the
    # panel titles just above the plot (small multiples)
    layout = {"title": {"text": title_text, "x": 0.0, "xanchor": "left", "font": {"size": TITLE_SIZE},
                        "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 14}},
              "meta": {"description": text}, "font": {"size": FONT_SIZE, "color": FONT_COLOUR},
              # text inside bars: shown at FONT_SIZE or hidden (the hover and the description give the number)
              "uniformtext": {"minsize": FONT_SIZE, "mode": "hide"}, "margin": margin, **more}
    if height:
        layout["height"] = height + extra
    return readable(layout)



def _with_font(part, size: int = FONT_SIZE) -> dict:
    """A title or tick font setting (a dict, a string or absent) with its font size set."""
    part = {"text": part} if isinstance(part, str) else dict(part or {})
    part["font"] = {**part.get("font", {}), "size": size, "color": FONT_COLOUR}
    return part



def readable(layout: dict) -> dict:
    """Chart text at FONT_SIZE in FONT_COLOUR, set on every axis, colour bar and legend of `layout` (a
    dict) by name: Streamlit's chart theme gives ticks, legends and colour bars 12 px of 60 % grey through
    the layout's template, which wins over layout.font, so they are set where the theme sets them."""
    for name in {"xaxis", "yaxis", *(k for k in layout if re.fullmatch(r"[xy]axis\d*", k))}:
        axis = dict(layout.get(name) or {})
        axis["tickfont"] = {**axis.get("tickfont", {}), "size": FONT_SIZE, "color": FONT_COLOUR}
        axis["title"] = _with_font(axis.get("title"))
        layout[name] = axis
    if "coloraxis" in layout:
        colorbar = dict(layout["coloraxis"].get("colorbar", {}))
        colorbar["tickfont"] = {**colorbar.get("tickfont", {}), "size": FONT_SIZE, "color": FONT_COLOUR}
        colorbar["title"] = _with_font(colorbar.get("title"))
        layout["coloraxis"] = {**layout["coloraxis"], "colorbar": colorbar}
    legend = dict(layout.get("legend") or {})
    legend["font"] = {**legend.get("font", {}), "size": FONT_SIZE, "color": FONT_COLOUR}
    layout["legend"] = legend
    return layout



def finish(fig: go.Figure, title_text: str, text: str, height: int | None = None, **more) -> go.Figure:
    fig.update_layout(figure_layout(title_text, text, height, **more))
    for axes in (fig.update_xaxes, fig.update_yaxes):  # subplots' own axes too
        axes(tickfont={"size": FONT_SIZE, "color": FONT_COLOUR}, title_font={"size": FONT_SIZE, "color": FONT_COLOUR})
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
            "yanchor": "bottom", "showarrow": False, "font": {"size": FONT_SIZE, "color": FONT_COLOUR}}

