"""Caption quality: standard n-gram metrics (pycocoevalcap) and ShapeScenes' own exact scores.

pycocoevalcap's BLEU, ROUGE-L and CIDEr scorers are pure Python and take already tokenised,
lower-cased text; we tokenise by whitespace (the PTB tokenizer needs Java and changes nothing on
ShapeScenes' vocabulary). CIDEr's document frequencies come from the references being scored, so a
CIDEr on a few hundred images is not comparable with one on a full COCO test split.
"""

from __future__ import annotations

import re

from .scenes import COLOURS, NUMBERS, PLURALS, SHAPES, SceneObject

_SINGULAR = {plural: shape for shape, plural in PLURALS.items()}
_COUNT_WORDS = {word: n for n, word in NUMBERS.items()} | {"an": 1}


def normalise_caption(text: str) -> str:
    """Lower case, words only: how ShapeScenes compares a caption with the right ones."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def caption_metrics(predictions: dict, references: dict) -> dict[str, float]:
    """BLEU-1…4, ROUGE-L and CIDEr of {id: caption} against {id: [reference captions]}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {k: [normalise_caption(v) or "<empty>"] for k, v in predictions.items()}
    gts = {k: [normalise_caption(r) for r in refs] for k, refs in references.items()}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out.update(rouge_l=float(rouge), cider=float(cider), tokenizer="whitespace")
    return out


def parse_objects(caption: str) -> list[tuple[str, str]]:
    """The (colour, shape) of every object a ShapeScenes caption names, in order; counts expand
    ("two red circles" -> two entries). Words outside the grammar are skipped."""
    words = normalise_caption(caption).split()
    objects: list[tuple[str, str]] = []
    count, colour = 1, None
    for w in words:
        if w in _COUNT_WORDS:
            count, colour = _COUNT_WORDS[w], None
        elif w in COLOURS:
            colour = w
        elif w in SHAPES or w in _SINGULAR:
            objects.extend([(colour or "?", _SINGULAR.get(w, w))] * count)
            count, colour = 1, None
    return objects


def scene_scores(predictions: list[str], truths: list[list[SceneObject]],
                 references: list[list[str] | str]) -> dict[str, float]:
    """ShapeScenes' own scores of `predictions` against each scene's right captions (`references`:
    per scene, all its phrasings, the canonical one first; a lone string is the only right one).

    exact          the prediction is one of the right captions;
    colour_acc /   per true object, the prediction's object at the same place in the one right
    shape_acc      caption whose object order fits the prediction best (most objects right in both
                   colour and shape, then most colours + shapes; ties go to the earlier caption);
    count_acc      the caption names as many objects as the scene has;
    object_recall  order-free: the share of true objects the caption names (counts expanded)."""
    n_obj = colour_ok = shape_ok = exact = count_ok = recalled = 0
    for pred, objs, refs in zip(predictions, truths, references):
        refs = [refs] if isinstance(refs, str) else refs
        exact += normalise_caption(pred) in {normalise_caption(r) for r in refs}
        named = parse_objects(pred)
        count_ok += len(named) == len(objs)
        colours, shapes = _best_alignment(named, [parse_objects(r) for r in refs])
        colour_ok += colours
        shape_ok += shapes
        truth = parse_objects(refs[0])  # every right caption names the same objects
        n_obj += len(truth)
        remaining = list(named)
        for pair in truth:
            if pair in remaining:
                remaining.remove(pair)
                recalled += 1
    n = max(len(predictions), 1)
    n_obj = max(n_obj, 1)
    return {
        "exact": exact / n,
        "colour_acc": colour_ok / n_obj,
        "shape_acc": shape_ok / n_obj,
        "count_acc": count_ok / n,
        "object_recall": recalled / n_obj,
        "n_scenes": len(predictions),
    }


def _best_alignment(named: list[tuple[str, str]], orders: list[list[tuple[str, str]]]) -> tuple[int, int]:
    """(right colours, right shapes) of `named` against the object order in `orders` it fits best,
    place by place."""
    best, best_key = (0, 0), None
    for truth in orders:
        pairs = list(zip(named, truth))
        colours = sum(n[0] == t[0] for n, t in pairs)
        shapes = sum(n[1] == t[1] for n, t in pairs)
        key = (sum(n == t for n, t in pairs), colours + shapes)
        if best_key is None or key > best_key:
            best, best_key = (colours, shapes), key
    return best
