"""What can be measured about a model's heatmaps on any picture, without knowing where its objects are.

ShapeScenes' trust metrics (vizcap.trust: the pointing game, mass in the box) need each object's true
box. On a photo there is none, but two checks still apply to every word of the model's own caption:

* **Randomisation sanity check** (Adebayo et al. 2018): the same caption read by a copy of the model
  whose decoder is re-initialised (the encoder kept). A map that comes from what the decoder learned
  should change: the Spearman rank correlation between the two maps is reported (near 0: the map
  depends on the trained decoder; near 1: it mostly reflects the image or the encoder).
* **Deletion / insertion** (Petsiuk et al. 2018): the word's probability as grid cells are greyed out
  (deletion) or revealed on a grey picture (insertion) in the map's order, from the hottest cell, and
  in a random order. Areas under the curves: deletion lower and insertion higher than random mean the
  cells the map points at are the ones the word depends on. Grey is 0 after the model's own
  normalisation (the normalisation's mean colour).

`photo_trust(captioner, image)` works for every backend (vizcap's own models and Hugging Face ones).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .explain import explain
from .fast import Int8Linear
from .images import open_image
from .trust import FRACTIONS, _masked_batch, spearman

METHODS = ("cross_attention", "rollout")  # a prefix model (GIT) has "prefix" in place of cross_attention


def default_methods(captioner) -> tuple[str, ...]:
    """METHODS, each replaced by "prefix" where this model has no such map (a prefix decoder: GIT)."""
    from .maps import available

    own = available(captioner.mode)
    return tuple(m if m in own else "prefix" for m in METHODS)


def randomized(captioner, seed: int = 1234):
    """The captioner with what reads the image (its `decoder_module_prefixes`: the decoder, and vizcap's
    mapper) re-initialised, the encoder kept."""
    model = copy.deepcopy(captioner.model)  # the hooks come along: they hold no data
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(captioner.decoder_module_prefixes):
                continue
            if p.dim() >= 2 or name.endswith("queries"):  # weights, and the mapper's learned queries
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            elif name.endswith("weight") and ("ln" in name or "norm" in name.lower()):  # layer norms: identity
                p.fill_(1.0)
            else:
                p.zero_()
        for name, module in model.named_modules():  # fast mode's int8 layers keep their weights outside parameters
            if name.startswith(captioner.decoder_module_prefixes) and isinstance(module, Int8Linear):
                module.set_weight(torch.randn(module.out_features, module.in_features, generator=gen) * 0.02)
    return captioner.with_model(model, name=f"{captioner.name} (randomised decoder)")


def _masked(pixels: torch.Tensor, order: np.ndarray, grid: tuple[int, int], insertion: bool) -> torch.Tensor:
    """One copy of pixels [1, 3, H, W] per fraction in FRACTIONS, the first k cells of `order` greyed
    out (deletion) or the only ones visible (insertion): the ShapeScenes test's own greying."""
    return _masked_batch(pixels, order, grid, insertion)


def _probabilities(captioner, batch: torch.Tensor, token_ids: list[int], j: int) -> np.ndarray:
    logits, _ = captioner.teacher_forced(batch, token_ids[: j + 1])
    if logits.dim() == 2:
        logits = logits[None]
    return torch.softmax(logits[:, captioner.n_prefix + j].float(), -1)[:, token_ids[j]].numpy()


def photo_trust(captioner, image, methods: tuple[str, ...] | None = None, max_words: int = 8, seed: int = 0) -> dict:
    """The sanity check and deletion/insertion curves for the model's greedy caption of `image`
    (its first `max_words` words), for `methods` (default: default_methods(captioner)). Returns {"caption", "words", "fractions", "methods": {method:
    {"sanity", "deletion_map_auc", "deletion_random_auc", "insertion_map_auc", "insertion_random_auc",
    "curves": {...}}}} with per-word values and their means."""
    methods = default_methods(captioner) if methods is None else methods
    img = open_image(image)
    exp = captioner.explain(img)  # greedy, with the model's own defaults (its caption length)
    words = list(range(min(len(exp.tokens), max_words)))
    result = {"caption": exp.caption, "words": [exp.tokens[j] for j in words], "fractions": FRACTIONS.tolist(),
              "methods": {}}
    if not words:
        return result
    forced = exp.token_ids + ([captioner.eos_id] if exp.ended else [])
    rand = explain(randomized(captioner), img, forced=forced)
    pixels = exp._pixels
    rng = np.random.default_rng(seed)
    for method in methods:
        maps, rand_maps = exp.maps(method), rand.maps(method)
        per = {"sanity": [], "deletion_map": [], "deletion_random": [], "insertion_map": [], "insertion_random": []}
        for j in words:
            per["sanity"].append(spearman(maps[j], rand_maps[j]))
            order = np.argsort(-maps[j].ravel(), kind="stable")
            shuffled = rng.permutation(len(order))
            for kind, insertion in (("deletion", False), ("insertion", True)):
                batch = torch.cat([_masked(pixels, order, exp.grid, insertion), _masked(pixels, shuffled, exp.grid, insertion)])
                p = _probabilities(captioner, batch, exp.token_ids, j)
                per[f"{kind}_map"].append(p[: len(FRACTIONS)])
                per[f"{kind}_random"].append(p[len(FRACTIONS) :])
        out = {"sanity": float(np.mean(per["sanity"])), "sanity_per_word": [round(float(x), 6) for x in per["sanity"]],
               "curves": {}}
        for key in ("deletion_map", "deletion_random", "insertion_map", "insertion_random"):
            curve = np.mean(per[key], axis=0)
            out["curves"][key] = [round(float(x), 6) for x in curve]
            out[f"{key}_auc"] = float(np.trapezoid(curve, FRACTIONS))
        result["methods"][method] = out
    return result
