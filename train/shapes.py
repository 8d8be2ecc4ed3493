"""The ShapeScenes preset: trains the default model that ships in vizcap/checkpoints/shapes/.

Training scene k of run seed s is `render_scene(s·10⁸ + k)`, and batch t holds scenes
t·B … t·B + B − 1, so the data order is fixed by (seed, step). Held-out evaluation scenes come from a
disjoint seed range (`HELDOUT_FIRST_SEED`). With the defaults below, on the same machine and torch
version, `python -m train shapes` writes weights bitwise equal to the shipped ones.

Besides the caption loss, two auxiliary heads predict the shape and the colour of the object under
every grid cell (background is class 0) from the generator's masks: dense supervision that teaches
the encoder shapes much faster than captions alone (see README, "How the default model was made").
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from vizcap.captioner import DEFAULT_CHECKPOINT, Captioner, atomic_write
from vizcap.evaluate import caption_metrics, scene_scores
from vizcap.model import CaptionerConfig, CaptionModel, caption_loss
from vizcap.scenes import COLOURS, HARD, SHAPES, VOCABULARY, SceneConfig, object_cells, render_scene
from vizcap.tokenizer import CaptionTokenizer

from .loop import LoopConfig, train

TRAIN_SEED_STRIDE = 10**8
HELDOUT_FIRST_SEED = 2_000_000_000
COLOUR_NAMES = list(COLOURS)


@dataclass
class ShapesArgs:
    out: str = str(DEFAULT_CHECKPOINT)
    steps: int = 10000
    batch_size: int = 32
    lr: float = 1.5e-3
    warmup: int = 300
    weight_decay: float = 0.05
    aux_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    workers: int = 1
    eval_n: int = 500
    save_every: int = 500
    device: str = "cpu"
    resume: bool = False
    encoder: str = "mobilenet"  # "mobilenet" (the shipped model) | "vit" (vizcap_vit_convstem, see vizcap/vit.py)
    hard_every: int = 0  # every k-th training scene is a hard one (vizcap.scenes.HARD); 0 = none


ENCODERS = {
    "mobilenet": dict(encoder="mobilenetv3_small_100", feature_index=3),
    "vit": dict(encoder="vizcap_vit_convstem", feature_index=None),
}


def default_config(tokenizer: CaptionTokenizer, encoder: str = "mobilenet") -> CaptionerConfig:
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
    return CaptionerConfig(
        **ENCODERS[encoder],
        vocab_size=tokenizer.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        aux_heads={"shape": len(SHAPES) + 1, "colour": len(COLOURS) + 1},
    )


def heldout_seeds(n: int) -> list[int]:
    return list(range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + n))


class ShapeScenesData(torch.utils.data.Dataset):
    """Scene k -> (uint8 image [3, S, S], token ids, per-cell shape and colour labels)."""

    def __init__(self, cfg: CaptionerConfig, grid: tuple[int, int], tokenizer: CaptionTokenizer, first_seed: int,
                 hard_every: int = 0):
        self.cfg, self.grid, self.tokenizer, self.first_seed = cfg, grid, tokenizer, first_seed
        self.hard_every = hard_every

    def __len__(self) -> int:
        return TRAIN_SEED_STRIDE

    def __getitem__(self, k: int):
        hard = self.hard_every and k % self.hard_every == self.hard_every - 1
        scene = render_scene(self.first_seed + k, HARD if hard else SceneConfig())
        size = self.cfg.image_size
        pixels = np.asarray(scene.image.resize((size, size), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1)
        ids = [self.tokenizer.bos_id, *self.tokenizer.encode(scene.caption), self.tokenizer.eos_id]
        cells = object_cells(scene.mask, self.grid).reshape(-1)  # 0 = background, i = objects[i-1]
        shape_of = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects])
        colour_of = np.array([0] + [COLOUR_NAMES.index(o.colour) + 1 for o in scene.objects])
        return torch.from_numpy(pixels.copy()), ids, torch.from_numpy(shape_of[cells]), torch.from_numpy(colour_of[cells])


def collate(items, pad_id: int):
    pixels, ids, shapes, colours = zip(*items)
    longest = max(len(i) for i in ids)  # trim padding per batch: the cost follows the longest caption
    padded = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.tensor(seq)
    return torch.stack(pixels), padded, torch.stack(shapes), torch.stack(colours)


def normalise(pixels: torch.Tensor, cfg: CaptionerConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def evaluate_scenes(captioner: Captioner, seeds: list[int], batch: int = 64, progress: bool = True,
                    config: SceneConfig = SceneConfig()) -> dict:
    """Greedy captions of the scenes `seeds`: exact/colour/shape/count scores and BLEU/ROUGE/CIDEr."""
    preds, truths, refs = [], [], []
    for i in tqdm(range(0, len(seeds), batch), desc="eval", unit="batch", disable=not progress):
        scenes = [render_scene(s, config) for s in seeds[i : i + batch]]
        preds += captioner.caption_batch([s.image for s in scenes])
        truths += [s.objects for s in scenes]
        refs += [s.caption for s in scenes]
    scores = scene_scores(preds, truths, refs)
    scores.update(caption_metrics(dict(enumerate(preds)), {i: [r] for i, r in enumerate(refs)}))
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
    cfg = default_config(tokenizer, args.encoder)
    model = CaptionModel(cfg).to(device)
    out = Path(args.out)
    data = ShapeScenesData(cfg, model.grid, tokenizer, first_seed=args.seed * TRAIN_SEED_STRIDE, hard_every=args.hard_every)

    def batches(start_step: int):
        indices = range(start_step * args.batch_size, args.steps * args.batch_size)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=args.batch_size,
            sampler=indices,
            num_workers=args.workers,
            collate_fn=lambda items: collate(items, tokenizer.pad_id),
            prefetch_factor=4 if args.workers else None,
            persistent_workers=False,
        )
        for pixels, ids, shape_t, colour_t in loader:
            yield normalise(pixels, cfg).to(device), ids.to(device), shape_t.to(device), colour_t.to(device)

    def loss_fn(model: CaptionModel, batch):
        pixels, ids, shape_t, colour_t = batch
        out = model(pixels, ids)
        cap = caption_loss(out["logits"], out["labels"])
        aux = model.aux_logits(out["memory"])
        dense = F.cross_entropy(aux["shape"].flatten(0, 1), shape_t.flatten()) + F.cross_entropy(
            aux["colour"].flatten(0, 1), colour_t.flatten()
        )
        return cap + args.aux_weight * dense, {"caption_loss": cap.detach(), "aux_loss": dense.detach()}

    loop = LoopConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
                      save_every=args.save_every, device=args.device)
    summary = train(model, batches, loss_fn, loop, out, args.resume, args.batch_size, describe="train shapes")
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
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(record, indent=2) + "\n"))
    if summary["state_path"].exists():  # finished: the resume state is no longer needed
        summary["state_path"].unlink()
    print(json.dumps(metrics))
    return record
