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
                (Shape word only, 9 fractions of the grid: kept as the earlier figures.)
top-k deletion  the measurement that can rank the maps (`rank_summary`): for the colour word and the
and insertion   shape word of every correctly named object, grey the map's k = 1, 2, 4, 8 hottest
                cells and record the drop of the word's teacher-forced probability, or keep only
                those k cells and record the probability; the same for RANK_ORDERS random orders
                (the random baseline is their mean) and for the object's own cells ranked by how
                much of each it covers (`box_order`: the ground-truth box baseline). Means over
                scenes with 95 % normal-approximation intervals; per method, drop ÷ box drop at
                k = RANK_K and whether it beats random (`ranking_verdict` says it in words).

Every figure is a mean over per-scene measurements (`scene_record`, one per scene; `summarise` turns
them into the figures). `vizcap eval` stores both: trust.json (the figures, which the app's "Training
& trust" page reads) and trust_scenes.jsonl (the records), so any scene can be measured again alone
(each scene draws its own random order) and every figure recomputed. Scene sources: held-out
ShapeScenes (seed HELDOUT_FIRST_SEED + i) and the independent renderer (`independent_scene`).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .evaluate import caption_metrics, parse_objects, scene_scores
from .explain import explain
from .images import grey_cells
from . import maps as mapping
from .scenes import (COLOURS, HARD, SHAPE_WORDS, Scene, SceneObject, _caption_order, cell_coverage, describe, name_groups,
                     render_scene)

HELDOUT_FIRST_SEED = 2_000_000_000  # the same held-out range as train/shapes.py
INDEPENDENT_FIRST_SEED = 10_000  # scene i of the independent renderer is render_independent(10_000 + i)
FRACTIONS = np.linspace(0, 1, 9)
RANK_KS = (1, 2, 4, 8)  # top-k deletion/insertion: the k hottest cells greyed (deletion) or kept (insertion)
RANK_K = 4  # the k of each method's verdict: its drop ÷ the box's drop, and whether it beats random
RANK_ORDERS = 4  # random orders per word; the random baseline is their mean
RANK_CHUNK = 64  # greyed images per teacher-forced pass
Z95 = 1.959963984540054  # the normal distribution's 97.5 % point: mean ± Z95 · sd / √n is a 95 % interval
NOISE = 1e-9  # differences of probabilities stored to 6 places: anything smaller is float noise, not a difference


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


def box_coverage(scene: Scene, members: list[int], grid: tuple[int, int]) -> np.ndarray:
    """[gh, gw]: the fraction of each cell covered by the members' boxes (the pointing game's target)."""
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
def _token_probabilities(captioner, pixels: torch.Tensor, token_ids: list[int], positions) -> np.ndarray:
    """P(token j_b | tokens < j_b) for row b of a batch of images [B, 3, S, S], j_b = positions[b]: one
    teacher-forced pass over the caption up to the last position asked for (the decoder is causal, so
    later tokens change nothing at j_b). The one probability of the deletion/insertion tests."""
    model, cfg = captioner.model, captioner.cfg
    positions = np.asarray(positions, dtype=np.int64)
    ids = torch.tensor([[cfg.bos_id, *token_ids[: int(positions.max())]]] * len(pixels), dtype=torch.long)
    memory = model.encode(pixels)
    prefix, _ = model.prefix(memory)
    rows = torch.arange(len(pixels))
    logits = model.decode(memory, prefix, ids, use_cache=False).logits[rows, cfg.n_prefix + torch.from_numpy(positions)]
    wanted = torch.tensor([token_ids[j] for j in positions], dtype=torch.long)
    return torch.softmax(logits.float(), -1)[rows, wanted].numpy()


def _word_probability(captioner, pixels: torch.Tensor, token_ids: list[int], j: int) -> np.ndarray:
    """Probability of token j (given tokens < j) for a batch of images [B, 3, S, S]."""
    return _token_probabilities(captioner, pixels, token_ids, [j] * len(pixels))


class _Greyed:
    """The greyed images one scene's top-k test needs, each measured once: `add(j, hidden)` (token position,
    [gh·gw] bools: the cells to grey) returns the image's row; `measure` greys them (vizcap.images.grey_cells)
    and returns every row's probability, RANK_CHUNK images per pass."""

    def __init__(self):
        self.rows: dict[tuple[int, bytes], int] = {}
        self.positions: list[int] = []
        self.hidden: list[np.ndarray] = []

    def add(self, j: int, hidden: np.ndarray) -> int:
        key = (j, np.packbits(hidden).tobytes())
        if key not in self.rows:
            self.rows[key] = len(self.positions)
            self.positions.append(j)
            self.hidden.append(hidden)
        return self.rows[key]

    def measure(self, captioner, pixels: torch.Tensor, token_ids: list[int], grid: tuple[int, int]) -> np.ndarray:
        hidden, out = np.array(self.hidden), []
        for a in range(0, len(hidden), RANK_CHUNK):
            batch = grey_cells(pixels, hidden[a:a + RANK_CHUNK], grid)
            out.append(_token_probabilities(captioner, batch, token_ids, self.positions[a:a + RANK_CHUNK]))
        return np.concatenate(out) if out else np.zeros(0)


def top_k_hidden(order: np.ndarray, k: int, insertion: bool) -> np.ndarray:
    """[N] bools, the cells to grey: the first k of `order` (deletion), or every cell but those (insertion)."""
    hidden = np.zeros(len(order), bool)
    hidden[order[:k]] = True
    return ~hidden if insertion else hidden


def object_coverage(scene: Scene, members: list[int], grid: tuple[int, int]) -> np.ndarray:
    """[gh, gw]: the share of each cell that the members cover, from the scene's pixel mask
    (vizcap.scenes.cell_coverage) where it has the members; from their boxes otherwise (the independent
    renderer draws no mask)."""
    drawn = np.isin(scene.mask, [m + 1 for m in members])
    if drawn.any():
        return cell_coverage(drawn.astype(np.uint8), grid)[1]
    return box_coverage(scene, members, grid)


def box_order(scene: Scene, members: list[int], grid: tuple[int, int]) -> np.ndarray:
    """The ground-truth "map" of the top-k test: cells (row by row indices) by the share the object covers,
    most first; ties (the cells it does not touch, among them) nearest to a member's box centre first."""
    gh, gw = grid
    W, H = scene.image.size
    cover = object_coverage(scene, members, grid).ravel()
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    cy, cx = (rows + 0.5) * H / gh, (cols + 0.5) * W / gw
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (scene.objects[m].box for m in members)]
    dist = np.min([np.hypot(cx - x, cy - y) for x, y in centres], axis=0)
    return np.lexsort((dist, -cover))


def _rank_plan(greyed: _Greyed, j: int, maps: dict[str, np.ndarray], box: np.ndarray, randoms: list[np.ndarray]) -> dict:
    """One word's top-k test, as rows of `greyed` (filled in with probabilities by `_fill`)."""
    def both(order):
        return {kind: [greyed.add(j, top_k_hidden(order, min(k, len(order)), kind == "insertion")) for k in RANK_KS]
                for kind in ("deletion", "insertion")}

    shuffled = [both(order) for order in randoms]
    return {"grey": greyed.add(j, np.ones(len(box), bool)),
            "methods": {m: both(np.argsort(-heat.ravel(), kind="stable")) for m, heat in maps.items()},
            "box": both(box),
            "random": {kind: [s[kind] for s in shuffled] for kind in ("deletion", "insertion")}}


def _fill(plan, probs: np.ndarray):
    """`_rank_plan`'s rows replaced by their probabilities (rounded to 6 places)."""
    if isinstance(plan, dict):
        return {k: _fill(v, probs) for k, v in plan.items()}
    if isinstance(plan, list):
        return [_fill(v, probs) for v in plan]
    return _r6(probs[plan])


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


def curves_of(captioner, pixels: torch.Tensor, token_ids: list[int], j: int, heat: np.ndarray,
              shuffled: np.ndarray) -> dict:
    """Word j's deletion and insertion curves (its probability at each of FRACTIONS) for the map `heat`
    [gh, gw], cells taken hottest first, and for the random order `shuffled`: "deletion_map",
    "deletion_random", "insertion_map", "insertion_random" (rounded to 6 places)."""
    order, grid, out = np.argsort(-heat.ravel(), kind="stable"), captioner.grid, {}
    for kind, ins in (("deletion", False), ("insertion", True)):
        batch = torch.cat([_masked_batch(pixels, order, grid, ins), _masked_batch(pixels, shuffled, grid, ins)])
        probs = _word_probability(captioner, batch, token_ids, j)
        out[f"{kind}_map"] = [_r6(p) for p in probs[: len(FRACTIONS)]]
        out[f"{kind}_random"] = [_r6(p) for p in probs[len(FRACTIONS):]]
    return out


def rank_word(captioner, pixels: torch.Tensor, token_ids: list[int], j: int, p: float, maps: dict[str, np.ndarray],
              box: np.ndarray, randoms: list[np.ndarray]) -> dict:
    """Word j's top-k test alone (scene_record measures all the words of a scene in shared passes): its
    entry of word["rank"] for the maps {name: [gh, gw]}, the box order and the random orders; p is the
    word's probability on the whole image."""
    greyed = _Greyed()
    plan = _rank_plan(greyed, j, maps, box, randoms)
    return {"p": _r6(p), **_fill(plan, greyed.measure(captioner, pixels, token_ids, captioner.grid))}


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
                 seed: int = 0, rank: bool = False, orders: int = RANK_ORDERS) -> dict:
    """Everything evaluate_trust measures on one scene, per correctly named object (floats rounded to 6
    places; the summary is computed from these rounded values, so it can be recomputed from them).
    curves: the sanity check and the shape word's deletion/insertion curves. rank: the top-k test
    (word["rank"]["colour" / "shape"]: "p", the word's probability on the whole image; "grey", on an
    all-grey one; per method, "box" and each of `orders` random orders, the probability with the top
    k = RANK_KS cells greyed ("deletion") or alone visible ("insertion"))."""
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
    if curves or rank:
        pixels = captioner.pixels([scene.image])
    greyed, plans = _Greyed(), []
    rank_rng = np.random.default_rng([seed, i, 1])  # apart from the curves' stream: their orders stay as they were
    for shape_j, colour_j, members in targets:
        if rank:
            box, n = box_order(scene, members, grid), grid[0] * grid[1]
            plans.append({name: _rank_plan(greyed, j, {m: all_maps[m][j] for m in methods}, box,
                                           [rank_rng.permutation(n) for _ in range(orders)])
                          for name, j in (("colour", colour_j), ("shape", shape_j))})
        cov = box_coverage(scene, members, grid)
        word = {"shape_j": shape_j, "colour_j": colour_j, "members": members,
                "chance": _r6(pointing(np.ones(grid), cov)[1]), "mass_chance": _r6(cov.mean()), "methods": {}}
        for m in methods:
            w = {"hit": pointing(all_maps[m][shape_j], cov)[0], "colour_hit": pointing(all_maps[m][colour_j], cov)[0],
                 "mass": _r6(mass_in_box(all_maps[m][shape_j], cov)[0])}
            if rand_maps is not None:
                w["sanity"] = _r6(spearman(all_maps[m][shape_j], rand_maps[m][shape_j]))
                w.update(curves_of(captioner, pixels, exp.token_ids, shape_j, all_maps[m][shape_j],
                                   rng.permutation(grid[0] * grid[1])))
            word["methods"][m] = w
        record["words"].append(word)
    if rank:
        probs = greyed.measure(captioner, pixels, exp.token_ids, grid)
        for word, plan in zip(record["words"], plans):
            word["rank"] = {name: {"p": _r6(exp.probs[word[f"{name}_j"]]), **_fill(p, probs)} for name, p in plan.items()}
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
    ranking = rank_summary(records, methods)
    if ranking is not None:
        result["ranking"] = ranking
    return _round(result)


def interval(values) -> dict:
    """Mean and 95 % interval of per-scene values [S] or [S, K] (over axis 0): the normal approximation
    mean ± Z95 · sd / √S, sd with S − 1 degrees of freedom; NaN bounds for fewer than two scenes."""
    v = np.asarray(values, dtype=np.float64)
    mean = v.mean(axis=0) if len(v) else np.full(v.shape[1:], np.nan)
    half = Z95 * v.std(axis=0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.full(np.shape(mean), np.nan)
    return {key: (x.tolist() if isinstance(x, np.ndarray) else float(x))
            for key, x in (("mean", mean), ("low", mean - half), ("high", mean + half))}


def _rank_values(entry: dict, name: str, kind: str) -> np.ndarray:
    """[len(RANK_KS)] for one word: the drop p − p(top k greyed) (deletion) or p(top k alone) (insertion)
    of method `name`, of "box", or of "random" (the mean over its orders)."""
    if name == "random":
        probs = np.mean(entry["random"][kind], axis=0)
    else:
        probs = np.asarray(entry["box"][kind] if name == "box" else entry["methods"][name][kind], dtype=np.float64)
    return entry["p"] - probs if kind == "deletion" else probs


def rank_summary(records: list[dict], methods: tuple[str, ...]) -> dict | None:
    """The top-k test's figures from the records that have it (None when none has): for the colour words,
    the shape words and both ("all"), per method, "box" and "random", the mean deletion drop and insertion
    probability at each k of RANK_KS with 95 % intervals (`interval`). The unit is the scene: each scene's
    value is the mean over its measured words, so the intervals treat scenes, not words, as independent.
    Per method at k = RANK_K, over all words: its mean drop, the box's, their ratio (drop ÷ box drop), and the
    paired per-scene differences from random and from the box with their intervals: "beats_random" when the
    first interval lies above 0, "below_box" when the second lies below 0, "above_box" when above (by more than
    NOISE)."""
    scenes = [[w["rank"] for w in r["words"] if "rank" in w] for r in records]
    scenes = [entries for entries in scenes if entries]
    if not scenes:
        return None
    names = (*methods, "box", "random")
    per_scene = {words: {kind: {name: [] for name in names} for kind in ("deletion", "insertion")}
                 for words in ("all", "colour", "shape")}
    for entries in scenes:
        for words, tokens in (("all", ("colour", "shape")), ("colour", ("colour",)), ("shape", ("shape",))):
            for kind, per in per_scene[words].items():
                for name in names:
                    per[name].append(np.mean([_rank_values(e[t], name, kind) for e in entries for t in tokens], axis=0))
    at = RANK_KS.index(RANK_K)
    drop = {name: np.array(per_scene["all"]["deletion"][name])[:, at] for name in names}
    summary = {"ks": list(RANK_KS), "k": RANK_K, "orders": len(scenes[0][0]["shape"]["random"]["deletion"]),
               "n_scenes": len(scenes), "n_words": sum(len(entries) for entries in scenes),
               "interval": "95 %, normal approximation over per-scene means (mean ± 1.96·sd/√n)",
               **{kind: {words: {name: interval(per_scene[words][kind][name]) for name in names}
                         for words in per_scene} for kind in ("deletion", "insertion")}}
    box_mean = float(drop["box"].mean())
    summary["box"] = {"drop": box_mean, "vs_random": interval(drop["box"] - drop["random"])}
    summary["box"]["beats_random"] = bool(summary["box"]["vs_random"]["low"] > NOISE)
    summary["random"] = {"drop": float(drop["random"].mean())}
    summary["methods"] = {}
    for m in methods:
        vs_random, vs_box = interval(drop[m] - drop["random"]), interval(drop[m] - drop["box"])
        summary["methods"][m] = {
            "drop": float(drop[m].mean()), "box_drop": box_mean,
            "ratio_to_box": float(drop[m].mean() / box_mean) if box_mean > 0 else float("nan"),
            "vs_random": vs_random, "vs_box": vs_box, "beats_random": bool(vs_random["low"] > NOISE),
            "below_box": bool(vs_box["high"] < -NOISE), "above_box": bool(vs_box["low"] > NOISE)}
    return summary


def ranking_verdict(result: dict | None) -> list[str]:
    """The top-k test in plain words (markdown), one sentence for the baselines and one per method, never
    stronger than the intervals: a method that cannot beat random, or stays below the box, is said to.
    Without the measurement (a trust.json written before it), one sentence saying how to measure it."""
    r = (result or {}).get("ranking")
    if not r:
        return ["**Top-k deletion: not measured.** These figures were written without the top-k deletion test, "
                "which can rank the maps against the object's own box and random cells: run `vizcap eval --rank-n N` "
                "(with the options of the command above) to measure."]
    k, n_scenes = r["k"], r["n_scenes"]
    box, rnd = r["deletion"]["all"]["box"], r["deletion"]["all"]["random"]
    at = r["ks"].index(k)

    def span(s, i=None) -> str:
        lo, hi = (s["low"], s["high"]) if i is None else (s["low"][i], s["high"][i])
        return "no interval: one scene" if _nan(lo) or _nan(hi) else f"95 % interval {_f(lo)} to {_f(hi)}"

    out = [f"**Top-{k} deletion** ({r['n_words']} named objects, their colour and shape words, in {n_scenes} scenes; "
           f"{r['orders']} random orders per word). Greying the object's own {k} most-covered cells (the *box*) lowers "
           f"the word's probability by {_f(box['mean'][at])} ({span(box, at)}); greying {k} random cells, by "
           f"{_f(rnd['mean'][at])} ({span(rnd, at)})."]
    if not r["box"]["beats_random"]:
        out.append(f"**The box does not beat random here** (difference {_f(r['box']['vs_random']['mean'])}, "
                   f"{span(r['box']['vs_random'])}): on these scenes the word does not depend on its object's cells "
                   "enough for this test to rank the maps.")
    for m, v in r["methods"].items():
        name = m.replace("_", " ")
        ratio = (f"{_f(v['ratio_to_box'])} × the box's drop" if not _nan(v["ratio_to_box"])
                 else "where the box lowers it by nothing")
        said = (f"*{name}*: greying its {k} hottest cells lowers the word's probability by {_f(v['drop'])} "
                f"({span(r['deletion']['all'][m], at)}), {ratio}; ")
        if v["beats_random"]:
            said += f"it beats random (difference {_f(v['vs_random']['mean'])}, {span(v['vs_random'])})"
        else:
            said += (f"it **cannot beat random** (difference {_f(v['vs_random']['mean'])}, {span(v['vs_random'])}): "
                     "its hottest cells matter no more to the word than random ones")
        if v["below_box"]:
            said += f", and it **stays below the box** (difference {_f(v['vs_box']['mean'])}, {span(v['vs_box'])})."
        elif v["above_box"]:
            said += f", and it drops the word more than the box (difference {_f(v['vs_box']['mean'])}, {span(v['vs_box'])})."
        else:
            said += f", and it cannot be told from the box (difference {_f(v['vs_box']['mean'])}, {span(v['vs_box'])})."
        out.append(said)
    return out


def _f(x) -> str:
    """x to 2 places, never "-0.00"."""
    text = f"{x:.2f}"
    return "0.00" if text == "-0.00" else text


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def evaluate_trust(captioner, n: int = 100, first_seed: int = HELDOUT_FIRST_SEED, curves_n: int = 30,
                   methods: tuple[str, ...] | None = None, progress: bool = True, seed: int = 0,
                   scene_fn=None, source: str = "held-out ShapeScenes", records: bool = False, rank_n: int = 0,
                   orders: int = RANK_ORDERS) -> dict:
    """Every figure of this module on n scenes (curves and sanity check on the first curves_n, the top-k
    test with `orders` random orders per word on the first rank_n).
    `scene_fn(i) -> Scene` replaces the held-out ShapeScenes (e.g. `independent_scene`). With
    records=True the result also holds the per-scene measurements ("scenes"), from which `summarise`
    recomputes every figure and from which any scene can be checked alone (`scene_record`)."""
    scene_fn = scene_fn or (lambda i: render_scene(first_seed + i))
    methods = tuple(m for m in (methods or mapping.names()) if _supports(captioner, m))
    randomized = randomized_copy(captioner)
    rows = [scene_record(captioner, randomized, scene_fn(i), i, methods, curves=i < curves_n, seed=seed,
                         rank=i < rank_n, orders=orders)
            for i in tqdm(range(n), desc=f"trust ({source})", unit="scene", disable=not progress)]
    result = summarise(rows, methods, captioner.grid, source)
    result["curves_n"] = min(curves_n, n)
    result["rank_n"] = min(rank_n, n)
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
