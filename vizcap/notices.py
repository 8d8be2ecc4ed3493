"""What vizcap says plainly next to a caption, in one place for the CLI, exports and the app: a picture
unlike what the model learned from, a caption the model ended at once, and maps from the fast mode.

Whether a picture looks like ShapeScenes is read from its pixels, three facts of that world: nearly
every pixel is either low in saturation (the background) or near one of the seven object colours; the
background is smooth (solid, a linear gradient, or mild noise: a plane fitted to its brightness leaves a
median residual of at most 3.5 grey levels on 300 scenes of each renderer, normal and hard); and at
least one coloured object covers a visible part (0.7 % of the picture or more on those scenes).
Measured once (scikit-image's sample pictures, README's photo.jpg): every photograph, greyscale ones
included, fails at least one of the three; every ShapeScenes scene passes all three."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from . import records
from .scenes import COLOURS, VOCABULARY

_PALETTE = np.array(list(COLOURS.values()), dtype=float)
GREY_SPREAD = 50  # max − min channel below this: a background (low saturation) pixel
MIN_KNOWN_SHARE = 0.95  # pixels that are background or near an object colour
MAX_BACKGROUND_RESIDUAL = 6.0  # grey levels: median |brightness − fitted plane| over the background
MIN_OBJECT_SHARE = 0.003  # coloured pixels

SHAPESCENES_ONLY = ("This model has only ever seen ShapeScenes — up to three coloured shapes (7 colours, 5 shapes) "
                    "on a plain background — so it describes every picture, this one too, as coloured shapes")
PHOTOS_ONLY = ("This captioner learned from photos with human captions; these drawn shapes are far from anything "
               "it saw, so its words can be wrong")
ENDED_AT_ONCE = ("The model ended the caption at once: the most likely first word was the end of the caption, so "
                 "there is no word to explain")


def looks_like_shapescenes(image: Image.Image) -> bool:
    """True when `image` has the three marks of a ShapeScenes picture (module docstring)."""
    a = np.asarray(image.convert("RGB").resize((96, 96)), dtype=float)
    spread = a.max(2) - a.min(2)
    grey = spread < GREY_SPREAD
    flat = a.reshape(-1, 3)
    near = np.sqrt(((flat[:, None, :] - _PALETTE[None]) ** 2).sum(-1)).min(1) < 60
    unit = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1.0)  # a darker or JPEG'd object colour
    aligned = (unit @ (_PALETTE / np.linalg.norm(_PALETTE, axis=1, keepdims=True)).T).max(1) > 0.985
    known = float((grey.ravel() | near | aligned).mean())
    coloured = float((~grey).mean())
    if known < MIN_KNOWN_SHARE or coloured < MIN_OBJECT_SHARE or grey.sum() < 50:
        return False
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    design = np.stack([np.ones_like(xx), xx, yy], -1)[grey]
    brightness = a.mean(2)[grey]
    coef, *_ = np.linalg.lstsq(design, brightness, rcond=None)
    return float(np.median(np.abs(brightness - design @ coef))) <= MAX_BACKGROUND_RESIDUAL


def knows_only_shapescenes(captioner) -> bool:
    """A vizcap checkpoint trained on ShapeScenes: its word-level vocabulary is the world's few words
    (a photo preset's checkpoint has GPT-2's 50,257 BPE pieces)."""
    return not captioner.is_photo_model and captioner.vocab_size <= len(VOCABULARY) + 8


def picture_notice(captioner, image: Image.Image) -> str | None:
    """A sentence when `image` is unlike what the model learned from, else None."""
    if knows_only_shapescenes(captioner):
        return None if looks_like_shapescenes(image) else SHAPESCENES_ONLY + "."
    if captioner.is_photo_model and looks_like_shapescenes(image):
        return PHOTOS_ONLY + "."
    return None


WORD_PIECES = ("Some words are written in pieces: the tokenizer splits a word it does not know whole, and a piece "
               "written “##…” continues the word before it (“sc” + “##op” reads “scop”); each piece has its own map")


def piece_notice(tokens: list[str]) -> str | None:
    """A sentence when the caption has WordPiece continuation pieces (BLIP's tokenizer), else None."""
    return WORD_PIECES + "." if any(t.startswith("##") and len(t) > 2 for t in tokens) else None


def caption_notices(captioner, exp) -> list[str]:
    """Every notice for one explanation: fast mode's, the picture's, an empty caption's, and word pieces'."""
    out = [n for n in [fast_notice(exp), picture_notice(captioner, exp.image)] if n]
    if not len(exp) and exp.ended:
        out.append(ENDED_AT_ONCE + ".")
    pieces = piece_notice(exp.tokens)
    if pieces:
        out.append(pieces)
    return out


# -- which maps were trained to look right ---------------------------------------------------------
# A map is evidence of what the model uses only where nothing trained it to look right. vizcap's
# ShapeScenes preset can add a supervised-attention loss (attend_weight: cross-attention at object words
# pulled onto the object) and a binding loss (bind_weight: prefix tokens tied to the named objects); the
# checkpoint's metrics.json records both. Hugging Face captioners were trained on captions alone.

TRAINED_TO_POINT = ("This model was trained to look at the objects it names: its {maps} maps show that training, so "
                    "where they point is the training target, not evidence of what the model uses")
NOTHING_TRAINED = "Nothing trained this model's maps to look right: what they show was learned from captions alone"


def trained_maps(captioner) -> tuple[str, ...] | None:
    """The map methods whose maps a loss pulled onto the objects during training ("cross_attention"
    with a supervised-attention loss, "prefix" with that loss or a binding loss); () when nothing
    trained any; None when the training is not recorded (a vizcap checkpoint without metrics.json)."""
    if captioner.is_photo_model:
        return ()  # trained on captions alone (their published recipes have no attention loss)
    facts = _loss_weights(str(captioner.name))
    if "attend_weight" not in facts and "bind_weight" not in facts:
        return None
    attend, bind = facts.get("attend_weight", 0) > 0, facts.get("bind_weight", 0) > 0
    out = []
    if attend and captioner.mode != "prefix":
        out.append("cross_attention")
    if (attend or bind) and captioner.mode != "cross":
        out.append("prefix")
    return tuple(out)


def _loss_weights(folder: str) -> dict:
    """The checkpoint's attention and binding loss weights (records.training_facts), read once per version
    of its metrics.json: the app asks on every re-render, which must not read the file each time."""
    try:
        stamp = (Path(folder) / records.METRICS).stat().st_mtime_ns
    except OSError:
        stamp = None
    return _read_loss_weights(folder, stamp)


@functools.lru_cache(maxsize=32)
def _read_loss_weights(folder: str, stamp) -> dict:
    facts = records.training_facts(folder) if stamp is not None else {}
    return {k: facts[k] for k in ("attend_weight", "bind_weight") if k in facts}


def attention_notice(captioner) -> str | None:
    """The sentence for where a map is read: which maps were trained to point (None when unknown)."""
    trained = trained_maps(captioner)
    if trained is None:
        return None
    if not trained:
        return NOTHING_TRAINED + "."
    names = " and ".join(m.replace("_", "-") for m in trained)
    return TRAINED_TO_POINT.format(maps=names) + "."


def map_status(captioner, method: str) -> str | None:
    """A few words for one map's label: "trained to point" or "nothing trained it" (None: unknown)."""
    trained = trained_maps(captioner)
    if trained is None:
        return None
    return "trained to point: its training target, not evidence" if method in trained else "nothing trained it to point"


# -- maps from the fast mode -----------------------------------------------------------------------
# A fast model (vizcap/fast.py) computes its maps through int8 layers: say so wherever a map is read,
# with the cost measured by the command that wrote vizcap/fast_cost.json.

FAST_MODE = "This map comes from the fast ({precision}) mode, not the float32 model"


def fast_notice(model_or_explanation) -> str | None:
    """The sentence for maps of a fast model (a backend or an Explanation with precision != float32):
    that they come from the fast mode and what it measurably costs; None for a float32 model."""
    precision = getattr(model_or_explanation, "precision", "float32")
    if precision == "float32":
        return None
    from .fast import COST_COMMAND, measured_cost

    said = FAST_MODE.format(precision=precision)
    cost = measured_cost()
    summary = fast_cost_summary(cost) if cost else None
    if summary is None:
        return f"{said}; its cost has not been measured here ({COST_COMMAND} measures it)."
    return f"{said}. Measured cost: {summary} ({cost.get('command', COST_COMMAND)})."


def fast_cost_summary(cost: dict) -> str | None:
    """The measured cost of the fast mode in one clause, from vizcap/fast_cost.json's "agreement" on
    a trained model (the figures that mean something) and its "speed" (None if they are missing)."""
    try:
        agree = cost["agreement"]["trained"]
        methods = agree["methods"]
        worst = min(methods, key=lambda m: methods[m]["top_cell"])
        best = max(methods, key=lambda m: methods[m]["top_cell"])
        mae = [v["mae"] for v in methods.values()]
        speed = cost["speed"]
        return (f"on {agree['n_pictures']} {agree['pictures']} with {agree['model']}, the only trained captioner "
                f"measured here (a photo captioner's figures may differ): the caption equals the float32 one on "
                f"{agree['captions_agree']:.0%} of them; word by word, a map's hottest cell is the float32 map's for "
                f"{methods[worst]['top_cell']:.0%} ({worst.replace('_', ' ')}) to {methods[best]['top_cell']:.0%} "
                f"({best.replace('_', ' ')}) of words, and the mean absolute map error is {min(mae):.3f}–{max(mae):.3f} "
                f"of the map's peak; explain takes {speed['explain_ratio']:.2f}× the float32 time at "
                f"{speed['model']} size")
    except (KeyError, TypeError, ValueError):
        return None
