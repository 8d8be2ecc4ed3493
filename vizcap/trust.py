"""How far can each heatmap be trusted? Measured on ShapeScenes, where every object's box is known.

For every correctly named object in a generated caption we take the map of its shape word (and,
separately, its colour word), at the step that produced that word, and ask:

pointing game   does the map's hottest cell touch the object's box? Chance = the share of cells
                that touch it (what a map pointing at a random cell would score).
mass in box     the share of the map's mass on the object (cells weighted by how much of them the
                box covers) vs chance = the object's share of the image.
sanity check    (Adebayo et al. 2018) the same maps from a model whose mapper and decoder are
                re-initialised, reading the same caption: a method whose maps barely change
                (high rank correlation) shows the image, not what the model learned.
deletion /      (Petsiuk et al. 2018) grey out cells in the map's order (or reveal them, starting
insertion       from a grey image) and follow the word's probability; compare with a random order.
                A faithful map makes the probability fall fast on deletion and rise fast on insertion.

Every figure is a mean over per-scene measurements (`scene_record`, one per scene; `summarise` turns
them into the figures). `vizcap eval` stores both: trust.json (the figures, which the app's "Training
& trust" page reads) and trust_scenes.jsonl (the records), so any scene can be measured again alone
(each scene draws its own random order) and every figure recomputed. Scene sources: held-out
ShapeScenes (seed HELDOUT_FIRST_SEED + i) and the independent renderer (`independent_scene`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm.auto import tqdm

from .evaluate import caption_metrics, parse_objects, scene_scores
from .explain import explain
from .images import grey_cells
from . import maps as mapping
from .scenes import COLOURS, HARD, SHAPE_WORDS, Scene, SceneObject, _caption_order, describe, name_groups, render_scene

HELDOUT_FIRST_SEED = 2_000_000_000  # the same held-out range as train/shapes.py
INDEPENDENT_FIRST_SEED = 10_000  # scene i of the independent renderer is render_independent(10_000 + i)
FRACTIONS = np.linspace(0, 1, 9)


def word_targets(tokens: list[str], scene: Scene) -> list[tuple[int, int, list[int]]]:
    """(shape-token index, colour-token index, object indices) for every object phrase of the
    generated caption that names one of the scene's object groups correctly (colour and shape), in
    the caption's order. A right caption may name the groups in any order, so a phrase is matched to
    the group it names, not to the group at its place; each group at most once."""
    groups = {(scene.objects[g[0]].colour, scene.objects[g[0]].shape): g for g in name_groups(scene.objects)}
    out, colour_at = [], None
    for j, word in enumerate(tokens):
        if word in COLOURS:
            colour_at = j
        elif word in SHAPE_WORDS:
            if colour_at is not None:
                named = parse_objects(f"{tokens[colour_at]} {word}")
                if named and named[0] in groups:
                    out.append((j, colour_at, groups.pop(named[0])))
            colour_at = None
    return out


def _coverage(scene: Scene, members: list[int], grid: tuple[int, int]) -> np.ndarray:
    """[gh, gw]: the fraction of each cell covered by the members' boxes."""
    gh, gw = grid
    W, H = scene.image.size
    cov = np.zeros(grid)
    for m in members:
        x0, y0, x1, y1 = scene.objects[m].box
        for r in range(gh):
            top, bottom = r * H / gh, (r + 1) * H / gh
            dy = max(0.0, min(bottom, y1) - max(top, y0))
            for c in range(gw):
                left, right = c * W / gw, (c + 1) * W / gw
                dx = max(0.0, min(right, x1) - max(left, x0))
                cov[r, c] = max(cov[r, c], dx * dy / ((bottom - top) * (right - left)))
    return cov


def pointing(heatmap: np.ndarray, coverage: np.ndarray) -> tuple[bool, float]:
    """(hit, chance) of the pointing game for one map."""
    touch = coverage > 0
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return bool(touch[r, c]), float(touch.mean())


def mass_in_box(heatmap: np.ndarray, coverage: np.ndarray) -> tuple[float, float]:
    """(share of the map's positive mass on the object, the object's share of the image). A signed map's
    negative cells (occlusion: greying them raised the word's probability) count as 0."""
    heatmap = np.clip(heatmap, 0, None)
    total = float(heatmap.sum())
    mass = float((heatmap * coverage).sum() / total) if total > 0 else 0.0
    return mass, float(coverage.mean())


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (as Spearman's rho requires)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks; 0.0 when either map is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def randomized_copy(captioner, seed: int = 1234):
    """The captioner with its mapper and decoder re-initialised (encoder kept): for the sanity check."""
    clone = copy.copy(captioner)
    clone.model = copy.deepcopy(captioner.model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in clone.model.named_parameters():
            if name.startswith(("mapper.", "decoder.")):
                if p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                elif name.endswith("weight") and ("ln" in name or "norm" in name):
                    p.fill_(1.0)
                elif name.endswith("queries"):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                else:
                    p.zero_()
    return clone


@torch.inference_mode()
def _word_probability(captioner, pixels: torch.Tensor, token_ids: list[int], j: int) -> np.ndarray:
    """Probability of token j (given tokens < j) for a batch of images [B, 3, S, S]."""
    model, cfg = captioner.model, captioner.cfg
    ids = torch.tensor([[cfg.bos_id, *token_ids[:j]]] * len(pixels), dtype=torch.long)
    memory = model.encode(pixels)
    prefix, _ = model.prefix(memory)
    logits = model.decode(memory, prefix, ids, use_cache=False).logits[:, cfg.n_prefix + j]
    return torch.softmax(logits.float(), -1)[:, token_ids[j]].numpy()


def _masked_batch(pixels: torch.Tensor, order: np.ndarray, grid: tuple[int, int], insertion: bool) -> torch.Tensor:
    """For each fraction in FRACTIONS, a copy of `pixels` with the first k cells of `order` greyed out
    (deletion) or with only those cells visible (insertion). Grey = 0 after normalisation = the mean
    (vizcap.images.grey_cells, which occlusion maps use too)."""
    hidden = np.zeros((len(FRACTIONS), grid[0] * grid[1]), bool)
    for row, f in zip(hidden, FRACTIONS):
        row[order[: int(round(f * len(order)))]] = True
        if insertion:
            row[:] = ~row
    return grey_cells(pixels, hidden, grid)


def independent_scene(i: int, hard: bool = False) -> Scene:
    """Scene i of the independent renderer (vizcap/independent_renderer.py, seed INDEPENDENT_FIRST_SEED + i;
    its hard world with hard=True), with its true captions written in ShapeScenes' grammar from its
    objects (`Scene.captions`: the renderer itself writes none). It has no pixel mask (the trust
    metrics use boxes only)."""
    from .independent_renderer import render_independent

    image, objects = render_independent(INDEPENDENT_FIRST_SEED + i, hard=hard)
    short = min(image.size)
    objs = [SceneObject(o["colour"], o["shape"], tuple(o["box"]), (o["box"][2] - o["box"][0]) / short) for o in objects]
    ordered = _caption_order(objs)
    return Scene(image=image, objects=ordered, caption=describe(ordered), mask=np.zeros(image.size[::-1], np.uint8))


SOURCES = {"held-out ShapeScenes": lambda i: render_scene(HELDOUT_FIRST_SEED + i),
           "independent renderer": independent_scene,
           "hard held-out ShapeScenes": lambda i: render_scene(HELDOUT_FIRST_SEED + i, HARD),
           "hard independent renderer": lambda i: independent_scene(i, hard=True)}


def scene_record(captioner, randomized, scene: Scene, i: int, methods: tuple[str, ...], curves: bool,
                 seed: int = 0) -> dict:
    """Everything evaluate_trust measures on one scene, per correctly named object (floats rounded to 6
    places; the summary is computed from these rounded values, so it can be recomputed from them)."""
    exp = explain(captioner, scene.image, max_tokens=24)
    record = {"i": i, "caption": exp.caption, "truth": scene.caption, "truths": scene.captions,
              "n_objects": len(scene.objects), "words": []}
    targets = word_targets(exp.tokens, scene)
    if not targets:
        return record
    grid = captioner.grid
    all_maps = {m: exp.maps(m) for m in methods}
    rand_maps = None
    if curves:
        rng = np.random.default_rng([seed, i])  # per scene: any subset of scenes can be recomputed alone
        forced = exp.token_ids + ([captioner.cfg.eos_id] if exp.ended else [])
        rand_exp = explain(randomized, scene.image, forced=forced)
        rand_maps = {m: rand_exp.maps(m) for m in methods}
        pixels = captioner.pixels([scene.image])
    for shape_j, colour_j, members in targets:
        cov = _coverage(scene, members, grid)
        word = {"shape_j": shape_j, "colour_j": colour_j, "members": members,
                "chance": _r6(pointing(np.ones(grid), cov)[1]), "mass_chance": _r6(cov.mean()), "methods": {}}
        for m in methods:
            w = {"hit": pointing(all_maps[m][shape_j], cov)[0], "colour_hit": pointing(all_maps[m][colour_j], cov)[0],
                 "mass": _r6(mass_in_box(all_maps[m][shape_j], cov)[0])}
            if rand_maps is not None:
                w["sanity"] = _r6(spearman(all_maps[m][shape_j], rand_maps[m][shape_j]))
                order = np.argsort(-all_maps[m][shape_j].ravel(), kind="stable")
                shuffled = rng.permutation(len(order))
                for kind, ins in (("deletion", False), ("insertion", True)):
                    batch = torch.cat([_masked_batch(pixels, order, grid, ins), _masked_batch(pixels, shuffled, grid, ins)])
                    probs = _word_probability(captioner, batch, exp.token_ids, shape_j)
                    w[f"{kind}_map"] = [_r6(p) for p in probs[: len(FRACTIONS)]]
                    w[f"{kind}_random"] = [_r6(p) for p in probs[len(FRACTIONS):]]
            word["methods"][m] = w
        record["words"].append(word)
    return record


def summarise(records: list[dict], methods: tuple[str, ...], grid: tuple[int, int],
              source: str = "held-out ShapeScenes") -> dict:
    """The figures of evaluate_trust from its per-scene records (means over correctly named objects;
    caption metrics over all scenes, against each scene's right captions), rounded to 4 places."""
    words = [w for r in records for w in r["words"]]
    preds = [r["caption"] for r in records]
    refs = [r.get("truths") or [r["truth"]] for r in records]  # records written before issue 24 hold only "truth"
    scores = scene_scores(preds, [[None] * r["n_objects"] for r in records], refs)  # only the count is used
    scores.update(caption_metrics(dict(enumerate(preds)), dict(enumerate(refs))))
    result: dict = {"source": source, "n_scenes": len(records), "n_words": len(words), "grid": list(grid),
                    "caption": scores}
    chance = _mean([w["chance"] for w in words])
    per = {m: [w["methods"][m] for w in words] for m in methods}
    result["pointing"] = {m: {"hit": _mean([v["hit"] for v in per[m]]), "chance": chance} for m in methods}
    result["pointing_colour_word"] = {m: {"hit": _mean([v["colour_hit"] for v in per[m]]), "chance": chance}
                                      for m in methods}
    result["mass_in_box"] = {m: {"mass": _mean([v["mass"] for v in per[m]]),
                                 "chance": _mean([w["mass_chance"] for w in words])} for m in methods}
    result["sanity_spearman"] = {m: _mean([v["sanity"] for v in per[m] if "sanity" in v]) for m in methods}
    result["curves"] = {"fractions": FRACTIONS.tolist()}
    kinds = ("deletion_map", "deletion_random", "insertion_map", "insertion_random")
    for m in methods:
        rows = {k: [v[k] for v in per[m] if k in v] for k in kinds}
        c = {k: np.mean(rows[k], axis=0).tolist() if rows[k] else [] for k in kinds}
        c.update({f"{k}_auc": float(np.trapezoid(c[k], FRACTIONS)) if rows[k] else float("nan") for k in kinds})
        result["curves"][m] = c
    result["best_method"] = max(methods, key=lambda m: result["pointing"][m]["hit"]) if words else None
    return _round(result)


def evaluate_trust(captioner, n: int = 100, first_seed: int = HELDOUT_FIRST_SEED, curves_n: int = 30,
                   methods: tuple[str, ...] | None = None, progress: bool = True, seed: int = 0,
                   scene_fn=None, source: str = "held-out ShapeScenes", records: bool = False) -> dict:
    """Every figure of this module on n scenes (curves and sanity check on the first curves_n).
    `scene_fn(i) -> Scene` replaces the held-out ShapeScenes (e.g. `independent_scene`). With
    records=True the result also holds the per-scene measurements ("scenes"), from which `summarise`
    recomputes every figure and from which any scene can be checked alone (`scene_record`)."""
    scene_fn = scene_fn or (lambda i: render_scene(first_seed + i))
    methods = tuple(m for m in (methods or mapping.names()) if _supports(captioner, m))
    randomized = randomized_copy(captioner)
    rows = [scene_record(captioner, randomized, scene_fn(i), i, methods, curves=i < curves_n, seed=seed)
            for i in tqdm(range(n), desc=f"trust ({source})", unit="scene", disable=not progress)]
    result = summarise(rows, methods, captioner.grid, source)
    result["curves_n"] = min(curves_n, n)
    if records:
        result["scenes"] = rows
    return result


def _supports(captioner, method: str) -> bool:
    return captioner.cfg.mode in mapping.lookup(method).modes


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _r6(x) -> float:
    return round(float(x), 6)


def _round(obj):
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj
