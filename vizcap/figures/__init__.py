"""Every figure of the app, as pure functions: data in, a plotly figure out. One module per view:

  overlay   maps over the image (one word, every head of a layer, the prefix tokens) and their colour range
  encoder   inside the vision transformer: patch tokens, the patch picker, one token's look layer by layer
  caption   the words and their probabilities, and the next-word distribution reshaped
  beam      the search tree of a decoding run
  anatomy   the captioner's parts with live tensor shapes, and its auxiliary heads
  training  the loss curve
  trust     the trust measurements as figures (the top-k test too), one line per measure, and the verdict in words
  common, images   what every view shares: palette, layout and alt text; images sent as data URIs

Each figure has a title and a plain-language description of what it shows (an alt text, read with
`description(fig)`; the app shows it under the chart and passes it to the browser as `alt`). Nothing
here calls the model or imports streamlit, so the figures are tested without a browser.

Colour scales are colour-blind safe and perceptually uniform (viridis, cividis); categorical
colours come from the Okabe–Ito palette. `from vizcap.figures import X` works for every name below.
"""

from __future__ import annotations

from .anatomy import architecture, aux_predictions
from .beam import BEAM_TREE_HELP, beam_tree
from .caption import alternatives_bar, distribution_reshape, step_probabilities
from .common import (COLORSCALES, FONT_SIZE, GREY, OKABE_ITO, TEXT_GREY, TITLE_CHARACTERS, description, percent, title,
                     wrap_title)
from .encoder import encoder_layers, patch_picker, patch_tokens
from .images import DISPLAY_SIDE, image_pixels, image_source, plotly_colorscale, shown_image
from .overlay import (GRID_SIDE, attention_overlay, heads_grid, map_grid, prefix_maps,
                      word_prefix_heatmap)
from .training import loss_curve
from .trust import (MEASURES, deletion_insertion, mass_in_box, pointing_game, photo_trust_verdict, sanity_check,
                    RANK_WORDS, top_k_deletion, trust_verdict)

__all__ = ["BEAM_TREE_HELP", "COLORSCALES", "DISPLAY_SIDE", "FONT_SIZE", "GREY", "GRID_SIDE", "MEASURES", "OKABE_ITO", "RANK_WORDS",
           "alternatives_bar", "architecture", "attention_overlay", "aux_predictions", "beam_tree", "deletion_insertion",
           "description", "distribution_reshape", "encoder_layers", "heads_grid", "image_pixels", "image_source",
           "loss_curve", "map_grid", "mass_in_box", "patch_picker", "patch_tokens",
           "percent", "plotly_colorscale", "pointing_game", "prefix_maps", "sanity_check", "shown_image",
           "photo_trust_verdict", "step_probabilities", "TEXT_GREY", "TITLE_CHARACTERS", "title", "top_k_deletion", "trust_verdict",
           "word_prefix_heatmap", "wrap_title"]
