"""The ShapeScenes preset: trains the default model that ships in vizcap/checkpoints/shapes/.

Training scene k of run seed s is `render_scene(s·10⁸ + k)` (every `hard_every`-th one drawn with
`vizcap.scenes.HARD`); the first `scenes` of them are rendered once before training, and batch t
holds samples t·B … t·B + B − 1, sample i being scene i mod `scenes`, so the data order is fixed by
(seed, step). Held-out evaluation scenes come from a
disjoint seed range (`HELDOUT_FIRST_SEED`). With the defaults below, on the same machine and torch
version, `python -m train shapes` writes weights bitwise equal to the shipped ones.

A scene has several right captions (`Scene.captions`). With `--captions all` each training sample
gets one of them (the default, how both shipped models were trained), drawn from (seed, sample
index) alone; `--captions canonical` trains on `Scene.caption` alone, as the first shipped model was.
The dense labels are keyed to an object's place in the canonical caption, which the picture fixes;
the prefix binding follows `--bind-to` (below).

Besides the caption loss, three auxiliary heads predict the shape, the colour and the place
(first, second, third from the left; a stacked pair top to bottom) of the object under every grid
cell (background is class 0) from the generator's masks: dense supervision that teaches the encoder
shapes much faster than captions alone (see README, "How the default model was made"). The place is
the object's place in the canonical caption, which the picture determines whatever phrasing a
sample draws: a label that followed the drawn phrasing could not be read off the picture, and the
first twin, trained with one, stated a pair's relation wrongly on 108 of its first 600 held-out scenes
(108 of 191 with two objects; `python -m train.errors shapes-free`).
With `--relation-weight` above 0 a fourth head predicts, under each object of a related pair, its
relation to the other read from it ("left of", "right of", "above", "below"): whichever object a
caption names first, the relation word is written under that object's cells. Both shipped models are
trained with it (`--relation-weight 1`, the default); for the twin, 4 of its first 191 held-out two-object captions are wrong,
none of them in the relation word alone (`python -m train.errors shapes-free --n 600`).

A binding loss gives the prefix tokens a job: prefix token k's attention over the patches (head
mean) is trained towards the cells of one object (cross-entropy against the object's share of each
cell), for k < 3; the other prefix tokens are left free. So the first prefix tokens each carry one
object, and their maps are meant to look like that object. Which object, `--bind-to` says:
- "named" (the shipped default's recipe): the k-th object the sample's caption names. With every
  phrasing drawn at random, that order cannot be read off the picture, which alone makes the prefix,
  so the target is out of reach: the shipped default's prefix maps point 0.65 on held-out scenes.
- "place": the object at place k of the canonical caption, which the picture fixes (as for the place
  head). Tried once (2026-12-03, the default recipe otherwise): its prefix maps pointed 0.97, but its
  captions fell below every quality bar of issue 24 (held-out exact 0.9425, recall 0.972; hard 0.771,
  0.917; 28 of 187 three-object captions wrong against 4), so it is not the default.
With `--captions canonical` both bind the same objects.

With `--repeat-weight` above 0 an unlikelihood term (`repeat_loss`, Welleck et al. 2019) lowers, before each
shape word, the probability of a shape that would name a phrase the caption has already named in the
colour being written (`repeat_targets`): a fact of the grammar read off the right caption, a loss on the
words and on no map. It aimed at the twin's sampled captions that name one object twice; tried once on the
twin's recipe (2026-12-05, `--repeat-weight 1`), every figure fell (held-out exact 0.949, sampled captions
right 0.87; README, the twin's variants), so no shipped model uses it.

Supervised attention (`attend_loss`, Liu et al. 2017) teaches the decoder where to look while it writes
an object's colour or shape word: its cross-attention towards that object's cells, its attention over
the prefix tokens towards that object's bound token. The cross-attention and prefix heatmaps of the
shipped model are therefore trained to point (the "How it works" page and README say so); gradient
relevancy and the deletion test, which nothing trains, are the independent checks.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from vizcap.captioner import Captioner
from vizcap.files import DEFAULT_CHECKPOINT, write_json
from vizcap.evaluate import caption_metrics, scene_scores
from vizcap.model import CaptionerConfig, CaptionModel, caption_loss
from vizcap.scenes import (COLOURS, HARD, MIRRORED, PLURALS, RELATIONS, SHAPE_WORDS, SHAPES, SIZES, VOCABULARY, Phrasing, Scene,
                           SceneConfig, cell_coverage, cells_from_coverage, name_groups, ordered_phrasings,
                           pair_relation, render_scene)
from vizcap.tokenizer import CaptionTokenizer

from .loop import LoopConfig, train

TRAIN_SEED_STRIDE = 10**8
HELDOUT_FIRST_SEED = 2_000_000_000
COLOUR_NAMES = list(COLOURS)
BOUND = 3  # prefix tokens bound to the caption's objects (ShapeScenes names at most 3)
CAPTIONS = ("canonical", "all")  # which right captions a training sample may get (ShapesArgs.captions)
BIND_TO = ("named", "place")  # which object prefix token k is bound to (ShapesArgs.bind_to; the module's docstring)
PHRASING_STREAM = 0xCA9  # keeps the phrasing draws apart from every other random stream


@dataclass
class ShapesArgs:
    out: str = str(DEFAULT_CHECKPOINT)
    steps: int = 16000  # 10,000 fell short of the quality bars (README, "Time"); the twin needed 16,000 for its sampling bar
    batch_size: int = 32
    lr: float = 1.5e-3
    warmup: int = 300
    weight_decay: float = 0.05
    aux_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    workers: int = 2  # processes that render the training scenes before training starts
    scenes: int = 64000  # distinct training scenes (rendered once; the run cycles through them about 8 times)
    eval_n: int = 2000  # held-out scenes per evaluation: 500 cannot tell recall 0.990 from 0.989
    save_every: int = 500
    device: str = "cpu"
    resume: bool = False
    encoder: str = "vit"  # "vit" (vizcap_vit_convstem, see vizcap/vit.py; the shipped model) | "mobilenet"
    hard_every: int = 4  # every k-th training scene is a hard one (vizcap.scenes.HARD); 0 = none
    bind_weight: float = 1.0  # weight of the binding loss on the first BOUND prefix tokens (0 = off)
    attend_weight: float = 1.0  # weight of the supervised-attention loss at object words (0 = off)
    attend_relations: bool = True  # supervise it at a pair's relation word too (the object it is read from;
    # the shipped default since 2026-12-04: README, "How the default model was made"); no effect without attend_weight
    captions: str = "all"  # "all": one of Scene.captions per sample (the shipped models); "canonical": Scene.caption
    bind_to: str = "named"  # prefix token k binds the k-th object the caption names ("named") or at canonical place k ("place")
    relation_weight: float = 1.0  # the relation head's weight among the dense heads (times aux_weight); 0 = no head
    decoder_layers: int = 2  # GPT-2 blocks of the caption decoder (both shipped models: 2)
    named_weight: float = 1.0  # weight of a training-only head: which objects has the caption named so far (0 = none;
    # both shipped models since 2026-12-05: the default and its twin differ only in the losses on maps)
    repeat_weight: float = 0.0  # weight of an unlikelihood term against a shape word that repeats a named phrase (0 = none)


ENCODERS = {
    "mobilenet": dict(encoder="mobilenetv3_small_100", feature_index=3),
    "vit": dict(encoder="vizcap_vit_convstem", feature_index=None),
}


def default_config(tokenizer: CaptionTokenizer, encoder: str = "mobilenet", relation: bool = False,
                   decoder_layers: int = 2) -> CaptionerConfig:
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
    heads = {"shape": len(SHAPES) + 1, "colour": len(COLOURS) + 1, "order": BOUND + 1}
    if relation:
        heads["relation"] = len(RELATIONS) + 1
    return CaptionerConfig(
        **ENCODERS[encoder],
        vocab_size=tokenizer.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        aux_heads=heads,
        decoder_layers=decoder_layers,
    )


def heldout_seeds(n: int) -> list[int]:
    return list(range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + n))


OBJECT_WORDS = frozenset([*SIZES, *COLOURS, *SHAPE_WORDS])
RELATION_WORDS = frozenset(r.split()[0] for r in RELATIONS)  # the word that decides a relation ("left" of "left of")


def word_referents(scene: Scene, phrasing: Phrasing | None = None, relations: bool = False) -> np.ndarray:
    """[words, BOUND]: 1 where word i of the caption (the canonical one unless `phrasing` is given)
    is a size, colour or shape word of the k-th object it names ("two green squares" names two
    objects with each of its words). Objects are counted in the phrasing's order and grouped as the
    caption groups them (`name_groups`). With relations=True a pair's relation word ("left", "above")
    refers to the object named before it: the relation is read from that object ("a red circle left of
    a blue star": the circle is left of the star)."""
    phrasing = phrasing or Phrasing(scene.caption, tuple(range(len(scene.objects))))
    groups = name_groups([scene.objects[i] for i in phrasing.order])
    words = phrasing.caption.split()
    refers = np.zeros((len(words), BOUND), np.float32)
    g = 0
    for i, word in enumerate(words):
        if word in OBJECT_WORDS and g < len(groups):
            refers[i, [m for m in groups[g] if m < BOUND]] = 1.0
        elif relations and word in RELATION_WORDS and 0 < g <= len(groups):
            refers[i, [m for m in groups[g - 1] if m < BOUND]] = 1.0
        if word in SHAPE_WORDS:
            g += 1
    return refers


class ShapeScenesData(torch.utils.data.Dataset):
    """Sample k -> (uint8 image [3, S, S], token ids, per-cell shape, colour, place and relation labels,
    [BOUND, N] the share of each cell that the bound objects cover (bind_to="named": the caption's first,
    second, third object; "place": the canonical caption's), [len(ids), BOUND] which of those objects
    each token names (`word_referents`, in the same order; 0 for <bos>/<eos>), and [BOUND] their places
    in the canonical caption (1, 2, 3; 0 = no such object)).

    Sample k shows scene k. Its caption is the canonical one, or with captions="all" one of the
    scene's right captions drawn by (first_seed, k) alone (`phrasing_index`); the dense labels stay the
    canonical places whatever is drawn. `scene_item(k)` is what does not depend on the draw, with every
    phrasing's labels; `sample` makes sample k of it."""

    def __init__(self, cfg: CaptionerConfig, grid: tuple[int, int], tokenizer: CaptionTokenizer, first_seed: int,
                 hard_every: int = 0, captions: str = "canonical", bind_to: str = "named", attend_relations: bool = False):
        if captions not in CAPTIONS:
            raise ValueError(f"captions must be one of {', '.join(CAPTIONS)}; got {captions!r}")
        if bind_to not in BIND_TO:
            raise ValueError(f"bind_to must be one of {', '.join(BIND_TO)}; got {bind_to!r}")
        self.cfg, self.grid, self.tokenizer, self.first_seed = cfg, grid, tokenizer, first_seed
        self.hard_every, self.captions, self.bind_to = hard_every, captions, bind_to
        self.attend_relations = attend_relations

    def __len__(self) -> int:
        return TRAIN_SEED_STRIDE

    def __getitem__(self, k: int):
        return self.sample(k, self.scene_item(k))

    def scene_item(self, k: int) -> tuple:
        """(pixels, shape labels, colour labels, relation labels, [(ids, place labels, bound, refers)
        per phrasing]) of scene k, as numpy arrays; one phrasing (the canonical one) unless captions="all"."""
        hard = self.hard_every and k % self.hard_every == self.hard_every - 1
        config = HARD if hard else SceneConfig()
        scene = render_scene(self.first_seed + k, config)
        size = self.cfg.image_size
        pixels = np.asarray(scene.image.resize((size, size), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1).copy()
        cover = cell_coverage(scene.mask, self.grid).reshape(-1, self.grid[0] * self.grid[1])  # [1 + objects, N]
        cells = cells_from_coverage(cover)  # 0 = background, i = objects[i-1] (canonical caption order)
        shape_of = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects])
        colour_of = np.array([0] + [COLOUR_NAMES.index(o.colour) + 1 for o in scene.objects])
        relation_of = np.zeros(1 + len(scene.objects), np.int64)  # 0: background, or not in a related pair
        relation = pair_relation(scene.objects, config)
        if relation is not None:  # read from the first object in canonical order, mirrored from the second
            relation_of[1:] = RELATIONS.index(relation) + 1, RELATIONS.index(MIRRORED[relation]) + 1
        phrasings = ordered_phrasings(scene.objects, config) if self.captions == "all" else [
            Phrasing(scene.caption, tuple(range(len(scene.objects))))]
        return (pixels, shape_of[cells], colour_of[cells], relation_of[cells],
                [self._phrased(scene, p, cover, cells) for p in phrasings])

    def _phrased(self, scene: Scene, phrasing: Phrasing, cover: np.ndarray, cells: np.ndarray) -> tuple:
        """(ids, place labels, bound, refers) of the scene captioned by `phrasing`. The place labels are
        the cells' canonical places (`cells`), the same for every phrasing: the picture fixes them.
        bound[k] is the cover of the object prefix token k binds (bind_to), refers[i, k] whether token i
        names that object."""
        ids = [self.tokenizer.bos_id, *self.tokenizer.encode(phrasing.caption), self.tokenizer.eos_id]
        words = word_referents(scene, phrasing, self.attend_relations)  # columns in the phrasing's order of naming
        if len(words) != len(ids) - 2:
            raise ValueError(f"the tokenizer split {phrasing.caption!r} into {len(ids) - 2} tokens, not one per word")
        # bound token k -> the scene object it binds: the k-th named, or the one at canonical place k
        objects = phrasing.order if self.bind_to == "named" else range(len(scene.objects))
        bound = np.zeros((BOUND, cover.shape[1]), np.float32)
        refers = np.zeros((len(ids), BOUND), np.float32)
        places = np.zeros(BOUND, np.int64)
        for k, i in enumerate(list(objects)[:BOUND]):
            bound[k] = cover[i + 1] / max(cover[i + 1].sum(), 1e-12)  # all zeros if the object fell out of the grid
            refers[1:-1, k] = words[:, phrasing.order.index(i)]  # the words that name scene object i
            places[k] = i + 1
        return ids, cells.astype(np.int64), bound, refers, places

    def phrasing_index(self, k: int, n: int) -> int:
        """Which of sample k's n phrasings it gets: a function of (first_seed, k) alone, so a run is
        reproducible and resumable, and a scene seen again in a later epoch may get another one."""
        if n == 1:
            return 0
        return int(np.random.default_rng([PHRASING_STREAM, self.first_seed, k]).integers(n))

    def sample(self, k: int, item: tuple):
        pixels, shapes, colours, relations, phrased = item
        ids, order, bound, refers, places = phrased[self.phrasing_index(k, len(phrased))]
        return (torch.from_numpy(pixels), ids, torch.from_numpy(shapes), torch.from_numpy(colours),
                torch.from_numpy(order), torch.from_numpy(relations), torch.from_numpy(bound), torch.from_numpy(refers), torch.from_numpy(places))


class RenderedScenes(torch.utils.data.Dataset):
    """The first `n` scenes of a ShapeScenesData, rendered once up front by `workers` processes and
    kept in memory (about 50 kB each at 128 px, plus a few kB per extra phrasing); sample k is scene
    k mod n, with sample k's phrasing.

    Rendering costs about as much CPU as the training step (a hard scene at 640 px takes ~15 ms), and
    a render worker beside the two training threads slows both: rendering first and then training
    on two free cores is faster, and epochs over n scenes replace 320,000 renders by n."""

    def __init__(self, scenes: ShapeScenesData, n: int, workers: int, progress: bool = True):
        self.scenes = scenes
        bar = tqdm(total=n, desc="render scenes", unit="scene", disable=not progress)
        chunks = [range(i, min(n, i + 256)) for i in range(0, n, 256)]
        self.items = []
        pool = multiprocessing.get_context("fork").Pool(workers, _keep_scenes, (scenes,)) if workers else None
        with pool or nullcontext():
            if pool is None:
                _keep_scenes(scenes)  # render here, in this process
            for chunk in (pool.imap if pool else map)(_render_chunk, chunks):
                self.items += chunk
                bar.update(len(chunk))
        bar.close()

    def __len__(self) -> int:
        return TRAIN_SEED_STRIDE

    def __getitem__(self, k: int):
        return self.scenes.sample(k, self.items[k % len(self.items)])


_worker_scenes: ShapeScenesData | None = None


def _keep_scenes(scenes: ShapeScenesData) -> None:
    global _worker_scenes  # one per render process (a Pool initializer), so chunks need not carry it
    _worker_scenes = scenes


def _render_chunk(indices: range) -> list[tuple]:
    return [_worker_scenes.scene_item(k) for k in indices]


def collate(items, pad_id: int):
    pixels, ids, *dense, refers, places = zip(*items)
    longest = max(len(i) for i in ids)  # trim padding per batch: the cost follows the longest caption
    padded = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    padded_refers = torch.zeros((len(ids), longest, BOUND))
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.tensor(seq)
        padded_refers[row, : len(seq)] = refers[row]
    return (torch.stack(pixels), padded, *(torch.stack(d) for d in dense), padded_refers, torch.stack(places))


def binding_loss(mapper_attention: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of prefix token k's attention over the cells (head mean of [B, heads, P, N])
    against bound[:, k] (the k-th named object's share of each cell, normalised; all zeros when the
    scene has no k-th object, which then adds nothing), averaged over the objects present."""
    attention = mapper_attention.mean(1)[:, : bound.shape[1]]  # B, BOUND, N
    present = bound.sum(-1) > 0
    ce = -(bound * torch.log(attention + 1e-8)).sum(-1)  # B, BOUND
    return (ce * present).sum() / present.sum().clamp(min=1)


def attend_loss(out: dict, refers: torch.Tensor, bound: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Supervised attention (Liu et al. 2017, "Attention correctness in neural image captioning"),
    at the positions that produce an object's size, colour or shape word (token i is produced at
    decoder position n_prefix + i − 1):
    - the decoder's cross-attention (mean over layers and heads: what the `cross_attention` map
      shows) against the named objects' cells (`bound` rows, summed and renormalised);
    - its self-attention over the prefix tokens (renormalised over them: what the `prefix` map
      weighs the prefix tokens' maps by) against the named objects' bound prefix tokens.
    Cross-entropy of each, averaged over the words that name an object."""
    rows = refers[:, 1:]  # B, T-1, BOUND: what the word produced at each position names
    T1 = rows.shape[1]
    cells = rows @ bound  # B, T-1, N
    cell_mass = cells.sum(-1, keepdims=True)
    named = cell_mass[..., 0] > 0
    n = named.sum().clamp(min=1)
    loss = torch.zeros((), device=refers.device)
    if out.get("cross_attention") is not None:
        cross = out["cross_attention"].mean((0, 2))[:, n_prefix : n_prefix + T1]  # B, T-1, N
        target = cells / cell_mass.clamp(min=1e-12)
        loss = loss + ((-(target * torch.log(cross + 1e-8)).sum(-1)) * named).sum() / n
    if n_prefix:
        to_prefix = out["self_attention"].mean((0, 2))[:, n_prefix : n_prefix + T1, :n_prefix]  # B, T-1, P
        to_prefix = to_prefix / to_prefix.sum(-1, keepdims=True).clamp(min=1e-12)
        tokens = rows / rows.sum(-1, keepdims=True).clamp(min=1e-12)
        loss = loss + ((-(tokens * torch.log(to_prefix[..., : rows.shape[-1]] + 1e-8)).sum(-1)) * named).sum() / n
    return loss


class NamedHead(torch.nn.Module):
    """The captioner and a training-only linear head on the decoder's last hidden states that tells, at
    every caption position, which of the scene's objects (by their place in the canonical caption) the
    words read so far have named. Not a loss on any map: a label on what the decoder must keep track of
    (the twin's errors were three-object captions naming one object twice). Only `model` is saved."""

    def __init__(self, model: CaptionModel):
        super().__init__()
        self.model, self.named = model, torch.nn.Linear(model.cfg.d_model, BOUND)


def named_targets(ids: torch.Tensor, refers: torch.Tensor, places: torch.Tensor,
                  shape_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T, BOUND] 1 where the object at canonical place p + 1 is named by tokens 0…t (its shape word
    has been read; "two red circles" names both), [B, BOUND] which places the scene has). refers[b, t, k]:
    token t names bound object k; places[b, k]: that object's canonical place (0 = none)."""
    to_place = F.one_hot(places, BOUND + 1)[..., 1:].float()  # B, k, p
    shape_word = torch.isin(ids, shape_ids).float()[..., None]
    named = (refers * shape_word).cummax(1).values @ to_place  # B, T, p
    return named.clamp(max=1.0), to_place.sum(1) > 0


def named_loss(head: torch.nn.Linear, hidden: torch.Tensor, ids: torch.Tensor, pad_id: int,
               targets: torch.Tensor, exists: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the head at the caption's token positions (hidden[:, P:]) against
    `named_targets`, over the real tokens and the places the scene has."""
    logits = head(hidden[:, -ids.shape[1]:])  # B, T, BOUND
    mask = (ids != pad_id).float()[..., None] * exists[:, None, :].float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce * mask).sum() / mask.sum().clamp(min=1)


def repeat_targets(ids: torch.Tensor, colour_ids: set[int], shape_kind: dict[int, str], vocab_size: int) -> torch.Tensor:
    """[B, T, V] True at position t on the shape-word tokens that would make token t + 1 repeat a phrase
    the caption has already named: where token t + 1 is a shape word, every singular or plural form of
    a shape already named in the colour of the phrase being written ("a pink cross and a pink" must not
    go on "cross"; the grammar names each kind of object once, identical ones counted). Read from the
    right caption alone, so the word it holds is never among them."""
    forms: dict[str, list[int]] = {}
    for token, kind in shape_kind.items():
        forms.setdefault(kind, []).append(token)
    banned = torch.zeros((*ids.shape, vocab_size), dtype=torch.bool)
    for b, row in enumerate(ids.tolist()):
        colour, named = None, set()
        for t in range(len(row) - 1):
            if row[t] in colour_ids:
                colour = row[t]
            if row[t + 1] in shape_kind:
                for kind in {k for c, k in named if c == colour}:
                    banned[b, t, forms[kind]] = True
                named.add((colour, shape_kind[row[t + 1]]))
    return banned.to(ids.device)


def repeat_loss(logits: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    """Unlikelihood (Welleck et al. 2019) of the banned tokens: −log(1 − p(banned)) at the caption
    positions that have any, averaged over them. `logits` are the caption positions' ([B, T, V],
    position t predicting token t + 1). A loss on the words the decoder writes, not on any map."""
    where = banned.any(-1)
    if not where.any():
        return logits.sum() * 0.0
    p_banned = (logits.softmax(-1) * banned).sum(-1).clamp(max=1 - 1e-6)
    return -(torch.log1p(-p_banned) * where).sum() / where.sum()


def normalise(pixels: torch.Tensor, cfg: CaptionerConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def evaluate_scenes(captioner: Captioner, seeds: list[int], batch: int = 64, progress: bool = True,
                    config: SceneConfig = SceneConfig(), references: str = "all") -> dict:
    """Greedy captions of the scenes `seeds`: exact/colour/shape/count scores and BLEU/ROUGE/CIDEr
    against every right caption of each scene (references="all"), or against the canonical one only
    (references="canonical": how checkpoints trained before issue 24 recorded theirs; a metrics.json
    without a "references" entry was scored so)."""
    if references not in CAPTIONS:
        raise ValueError(f"references must be one of {', '.join(CAPTIONS)}; got {references!r}")
    preds, truths, refs = [], [], []
    for i in tqdm(range(0, len(seeds), batch), desc="eval", unit="batch", disable=not progress):
        scenes = [render_scene(s, config) for s in seeds[i : i + batch]]
        preds += captioner.caption_batch([s.image for s in scenes])
        truths += [s.objects for s in scenes]
        refs += [s.captions if references == "all" else [s.caption] for s in scenes]
    scores = scene_scores(preds, truths, refs)
    scores.update(caption_metrics(dict(enumerate(preds)), dict(enumerate(refs))))
    scores["references"] = references
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}


def machine() -> dict:
    """What decides the bits of a training run besides the code: the CPU and the instructions torch uses."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "python": sys.version.split()[0], "torch": torch.__version__}


def run(args: ShapesArgs, argv: list[str] | None = None) -> dict:
    started = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    tokenizer = CaptionTokenizer.word_level(VOCABULARY)
    if args.decoder_layers < 1:
        raise ValueError(f"decoder_layers must be at least 1; got {args.decoder_layers}")
    cfg = default_config(tokenizer, args.encoder, relation=args.relation_weight > 0, decoder_layers=args.decoder_layers)
    model = CaptionModel(cfg).to(device)
    out = Path(args.out)
    data = ShapeScenesData(cfg, model.grid, tokenizer, first_seed=args.seed * TRAIN_SEED_STRIDE, hard_every=args.hard_every,
                           captions=args.captions, bind_to=args.bind_to, attend_relations=args.attend_relations)
    data = RenderedScenes(data, min(args.scenes, args.steps * args.batch_size), args.workers)

    def batches(start_step: int):
        for step in range(start_step, args.steps):
            first = step * args.batch_size
            pixels, ids, *dense = collate([data[k] for k in range(first, first + args.batch_size)], tokenizer.pad_id)
            yield (normalise(pixels, cfg).to(device), ids.to(device), *(d.to(device) for d in dense))

    shape_ids = torch.tensor([tokenizer.encode(w)[0] for w in sorted(SHAPE_WORDS)], device=device)
    singular = {plural: shape for shape, plural in PLURALS.items()}
    shape_kind = {tokenizer.encode(w)[0]: singular.get(w, w) for w in sorted(SHAPE_WORDS)}
    colour_ids = {tokenizer.encode(c)[0] for c in COLOUR_NAMES}
    trained = NamedHead(model).to(device) if args.named_weight > 0 else model  # no head: the RNG draws stay as before

    def loss_fn(trained, batch):
        model = trained.model if args.named_weight > 0 else trained
        pixels, ids, shape_t, colour_t, order_t, relation_t, bound_t, refers_t, places_t = batch
        out = model(pixels, ids, attentions=args.attend_weight > 0, hidden=args.named_weight > 0)
        cap = caption_loss(out["logits"], out["labels"])
        aux = model.aux_logits(out["memory"])
        dense = sum(F.cross_entropy(aux[name].flatten(0, 1), target.flatten())
                    for name, target in (("shape", shape_t), ("colour", colour_t), ("order", order_t)))
        if args.relation_weight > 0:
            dense = dense + args.relation_weight * F.cross_entropy(aux["relation"].flatten(0, 1), relation_t.flatten())
        bind = binding_loss(out["mapper_attention"], bound_t)
        total = cap + args.aux_weight * dense + args.bind_weight * bind
        parts = {"caption_loss": cap.detach(), "aux_loss": dense.detach(), "bind_loss": bind.detach()}
        if args.attend_weight > 0:
            attend = attend_loss(out, refers_t, bound_t, cfg.n_prefix)
            total = total + args.attend_weight * attend
            parts["attend_loss"] = attend.detach()
        if args.named_weight > 0:
            targets, exists = named_targets(ids, refers_t, places_t, shape_ids)
            named = named_loss(trained.named, out["hidden"], ids, tokenizer.pad_id, targets, exists)
            total = total + args.named_weight * named
            parts["named_loss"] = named.detach()
        if args.repeat_weight > 0:
            banned = repeat_targets(ids, colour_ids, shape_kind, cfg.vocab_size)
            repeat = repeat_loss(out["logits"][:, cfg.n_prefix:], banned)
            total = total + args.repeat_weight * repeat
            parts["repeat_loss"] = repeat.detach()
        return total, parts

    loop = LoopConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
                      save_every=args.save_every, device=args.device)
    summary = train(trained, batches, loss_fn, loop, out, args.resume, args.batch_size, describe="train shapes")
    model.to("cpu")
    captioner = Captioner(model, tokenizer)
    captioner.save_pretrained(out)
    metrics = evaluate_scenes(captioner, heldout_seeds(args.eval_n))
    hard = evaluate_scenes(captioner, heldout_seeds(args.eval_n), config=HARD) if args.hard_every else None
    record = {
        "heldout": metrics,
        **({"heldout_hard": hard} if hard is not None else {}),
        "heldout_first_seed": HELDOUT_FIRST_SEED,
        "command": "python -m train shapes" + ("" if argv is None else "".join(f" {a}" for a in argv)),
        "args": {k: v for k, v in asdict(args).items()},
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(time.time() - started, 1),
        "samples_seen": args.steps * args.batch_size,
        "machine": machine(),
    }
    write_json(out / "metrics.json", record)
    if summary["state_path"].exists():  # finished: the resume state is no longer needed
        summary["state_path"].unlink()
    print(json.dumps(metrics))
    return record
