"""The real-photo presets: COCO, Flickr8k and Flickr30k from a Karpathy split file.

    python -m train coco --karpathy-json dataset_coco.json --image-root COCO_DIR \\
        --encoder vit_base_patch16_clip_224.openai --freeze-encoder --cache-features FEAT_DIR \\
        --decoder gpt2 --prefix-tokens 10 --batch-size 40 --lr 2e-5 --epochs 10 --out runs/coco

A pretrained timm encoder (hub weights, a local safetensors file, or none) reads the image; its
patch grid becomes the memory; the mapper's learned queries become the prefix; a pretrained GPT-2
(hub name or a save_pretrained directory; its BPE tokenizer.json comes along) writes the caption,
also cross-attending to the memory in modes "cross" and "both". The CaptionerConfig written with the
weights describes the whole model, so `vizcap.load(OUT)` rebuilds it without this script.

Training: AdamW with warm-up + cosine (train/loop.py), gradient accumulation, autocast (bf16/fp16),
optional torch.compile, DistributedDataParallel under torchrun (each rank a disjoint slice of every
global batch; rank 0 alone logs, evaluates and saves). The loss is the mean over every predicted
token of the global batch, however it is split across micro-batches and ranks, so one process and N
processes follow the same loss curve. Every `--eval-every` steps the val split is captioned (greedy)
and scored (BLEU-1…4, ROUGE-L, CIDEr); the best checkpoint by CIDEr is OUT itself, and the test split
is scored with it at the end (metrics.json).

Offline: nothing hangs. If the Hugging Face hub cannot be reached (or HF_HUB_OFFLINE=1), weights come
from the local cache only, and a missing one is a one-line error saying what to pass instead.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from vizcap.captioner import Captioner, greedy_search
from vizcap.evaluate import caption_metrics
from vizcap.files import write_json
from vizcap.model import IGNORE, CaptionModel

from . import features as feature_cache
from .karpathy import CaptionSamples, Photo, PixelData, TrainData, collate, read_karpathy
from .loop import LoopConfig, train
from .pretrained import build_model

@dataclass
class PhotoArgs:
    dataset: str = "coco"
    karpathy_json: str = ""
    image_root: str = ""
    encoder: str = "vit_base_patch16_clip_224.openai"
    encoder_weights: str = "hub"  # "hub" | "none" | a .safetensors file
    feature_index: int | None = None  # CNN feature stage (default: the last); ViTs read forward_features
    image_size: int | None = None  # default: the encoder's pretrained input size
    decoder: str = "gpt2"  # hub name or a save_pretrained directory
    dropout: float | None = None  # override GPT-2's dropouts (default: keep the decoder's own)
    prefix_tokens: int = 10
    mapper_layers: int = 2
    mode: str = "both"
    freeze_encoder: bool = False
    freeze_decoder: bool = False  # the pretrained GPT-2 weights; new cross-attention layers still train
    steps: int | None = None
    epochs: float | None = None  # default 10 when neither --steps nor --epochs is given
    batch_size: int = 40  # global batch: all ranks and micro-batches together
    grad_accum: int = 1
    lr: float = 2e-5
    warmup: int | None = None  # default: 5% of the steps, at most 5000 (ClipCap's warm-up)
    weight_decay: float = 0.01
    amp: str = "auto"  # "bf16" | "fp16" | "no"; auto: bf16 on a CUDA device that has it, else no
    compile: bool = False
    cache_features: str | None = None
    cache_dtype: str = "float16"
    max_caption_tokens: int = 40
    max_tokens: int = 30  # longest generated caption at evaluation
    out: str = "runs/coco"
    resume: bool = False
    eval_every: int | None = None  # default: once per epoch; 0: only after the last step
    eval_n: int = 0  # val images per evaluation (0: all)
    test_n: int = 0  # test images scored at the end (0: all; -1: skip)
    eval_batch: int = 50
    save_every: int = 1000
    log_every: int = 50
    seed: int = 0
    workers: int = 4
    threads: int | None = None
    device: str = "auto"


# ------------------------------------------------------------------------------------------------
# The training wrapper


class Trainer(nn.Module):
    """What DDP wraps: (pixels or cached features, ids) -> (logits, labels)."""

    def __init__(self, model: CaptionModel, freeze_encoder: bool, from_features: bool):
        super().__init__()
        self.model, self.freeze_encoder, self.from_features = model, freeze_encoder, from_features

    def forward(self, inputs: torch.Tensor, ids: torch.Tensor):
        m = self.model
        if self.from_features:
            feats = inputs
        elif self.freeze_encoder:
            with torch.no_grad():
                feats = m.encoder(inputs)
        else:
            feats = m.encoder(inputs)
        memory = m.memory_from_features(feats)
        prefix, _ = m.prefix(memory)
        logits = m.decode(memory, prefix, ids, use_cache=False).logits
        return logits, m.labels(ids)


# ------------------------------------------------------------------------------------------------
# The run


def _device(args: PhotoArgs, local_rank: int) -> torch.device:
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available here")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _amp(args: PhotoArgs, device: torch.device) -> str:
    if args.amp == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    if args.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device; use --amp bf16 or --amp no on CPU")
    return args.amp


def _autocast(device: torch.device, amp: str):
    from contextlib import nullcontext

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


class _Positions:
    """This rank's sample positions: step t's global batch is positions t·B … t·B + B − 1; rank r
    takes the r-th of `world` equal slices, read as K micro-batches in order."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __len__(self) -> int:
        return (self.steps - self.start) * (self.batch // self.world)

    def __iter__(self):
        per_rank = self.batch // self.world
        for t in range(self.start, self.steps):
            first = t * self.batch + self.rank * per_rank
            yield from range(first, first + per_rank)


def run(args: PhotoArgs, argv: list[str] | None = None) -> dict:
    started = time.time()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args, local_rank)
    amp = _amp(args, device)
    if args.cache_features and not args.freeze_encoder:
        raise ValueError("--cache-features needs --freeze-encoder (cached features are only valid for an encoder "
                         "that does not train)")
    if args.batch_size % (world * args.grad_accum):
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by processes × --grad-accum "
                         f"= {world} × {args.grad_accum}")
    splits = read_karpathy(args.karpathy_json, args.image_root, expect=args.dataset)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                             timeout=timedelta(hours=3))
    try:
        return _run(args, argv, splits, device, amp, rank, world, started)
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _Run:
    """What the run's steps share: the arguments, the processes, the device and precision, the model
    with its tokenizer, and the model's image normalisation."""

    def __init__(self, args: PhotoArgs, device: torch.device, amp: str, rank: int, world: int):
        self.args, self.device, self.amp, self.rank, self.world = args, device, amp, rank, world
        self.main = rank == 0
        self.barrier = (lambda: torch.distributed.barrier()) if world > 1 else (lambda: None)
        self.model, self.tokenizer, self.info = build_model(args)
        self.cfg = self.model.cfg
        self.out = Path(args.out)
        self.mean = torch.tensor(self.cfg.image_mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.cfg.image_std, device=device).view(1, 3, 1, 1)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(self.device, non_blocking=True).float() / 255.0 - self.mean) / self.std

    def pixel_batches(self, photos: list[Photo], indices: list[int]):
        """(uint8 pixels, indices) batches of the photos `indices`; never draws from the global RNG."""
        args = self.args
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(PixelData(photos, self.cfg.image_size), indices), batch_size=args.eval_batch,
            num_workers=min(args.workers, math.ceil(len(indices) / args.eval_batch)),
            pin_memory=self.device.type == "cuda", generator=torch.Generator())
        yield from loader

    def caption_photos(self, model: CaptionModel, photos: list[Photo], cache=None) -> dict[int, str]:
        """Greedy captions {index: text}, from cached features when given, else from the images."""
        args = self.args
        model.eval()
        preds: dict[int, str] = {}
        if cache is not None:
            starts = range(0, len(photos), args.eval_batch)
            batches_ = ((None, torch.arange(i, min(i + args.eval_batch, len(photos)))) for i in starts)
        else:
            batches_ = self.pixel_batches(photos, list(range(len(photos))))
        for pixels, idx in tqdm(batches_, desc="caption", unit="batch", leave=False,
                                total=math.ceil(len(photos) / args.eval_batch)):
            idx = idx.tolist()
            with torch.inference_mode(), _autocast(self.device, self.amp):
                if cache is not None:
                    memory = model.memory_from_features(torch.stack([cache[j] for j in idx]).to(self.device))
                else:
                    memory = model.encode(self.normalise(pixels))
                found = greedy_search(model, memory, args.max_tokens)
            preds.update({j: self.tokenizer.decode(h.tokens) for j, h in zip(idx, found)})
        return preds

    def score(self, model: CaptionModel, photos: list[Photo], cache=None) -> dict:
        preds = self.caption_photos(model, photos, cache)
        metrics = caption_metrics(preds, {i: list(p.captions) for i, p in enumerate(photos)})
        metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
        metrics["n_images"] = len(photos)
        metrics["examples"] = [{"image": photos[i].key, "caption": preds[i]} for i in range(min(3, len(photos)))]
        return metrics


def _run(args, argv, splits, device, amp, rank, world, started) -> dict:
    torch.manual_seed(args.seed)
    r = _Run(args, device, amp, rank, world)
    model, tokenizer, cfg, out = r.model, r.tokenizer, r.cfg, r.out
    _freeze(model, args)
    model.to(device)
    if world > 1:  # each rank its own dropout masks (the weights are broadcast from rank 0 anyway)
        torch.manual_seed(args.seed + 1_000_003 * rank)
    if r.main:
        out.mkdir(parents=True, exist_ok=True)

    train_photos, val_photos = splits["train"], splits["val"]
    if args.eval_n:  # the first eval_n (the cache holds the whole split, so --eval-n can change)
        val_photos = val_photos[: args.eval_n]
    samples = CaptionSamples(train_photos, tokenizer, args.max_caption_tokens, args.seed)
    steps_per_epoch = math.ceil(len(samples) / args.batch_size)
    steps = args.steps if args.steps else max(1, math.ceil((args.epochs or 10) * steps_per_epoch))
    eval_every = steps_per_epoch if args.eval_every is None else args.eval_every
    caches = _feature_caches(r, splits) if args.cache_features else {}

    from_features = "train" in caches
    trainer = Trainer(model, args.freeze_encoder, from_features)
    net: nn.Module = trainer
    no_sync = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(trainer, device_ids=[device.index] if device.type == "cuda" else None)
        net, no_sync = ddp, ddp.no_sync
    if args.compile:
        net = torch.compile(net)
    batches = _train_batches(r, TrainData(samples, cfg.image_size, caches.get("train")), samples, steps, from_features)
    scale = world * args.grad_accum  # undoes DDP's mean over ranks and the loop's mean over micro-batches

    def loss_fn(net, batch):
        inputs, ids, targets = batch
        logits, labels = net(inputs, ids)
        total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum")
        return total * (scale / targets), {}

    def train_mode(flag: bool) -> None:
        trainer.train(flag)
        if args.freeze_encoder:
            model.encoder.eval()  # a frozen encoder keeps its normalisation statistics and no dropout

    record = _record(args, argv, world, amp, r.info, train_photos, samples, steps)

    def on_best(step: int, metrics: dict) -> None:
        # saved without constructing a Captioner, so that the training model gets no inference hooks
        holder = SimpleNamespace(cfg=cfg, tokenizer=tokenizer, model=model)
        Captioner.save_pretrained(holder, out, extra={"decoder_source": r.info["decoder_source"]})
        record["best"] = {"step": step, "val": metrics}
        write_json(out / "metrics.json", record)

    warmup = args.warmup if args.warmup is not None else min(5000, math.ceil(0.05 * steps))
    loop = LoopConfig(steps=steps, lr=args.lr, warmup=max(1, warmup),
                      weight_decay=args.weight_decay, log_every=args.log_every, save_every=args.save_every,
                      device=device.type, grad_accum=args.grad_accum, amp=amp, eval_every=eval_every,
                      best_metric="cider")
    summary = train(net, batches, loss_fn, loop, out, args.resume, args.batch_size,
                    describe=f"train {args.dataset}", state_model=model, train_mode=train_mode, no_sync=no_sync,
                    evaluate=lambda step: r.score(model, val_photos, caches.get("val")) if val_photos else {},
                    on_best=on_best, run_key=_run_key(args, steps))
    if r.main:
        _finish(r, record, summary, splits["test"], steps, on_best, started)
    r.barrier()
    return record


def _freeze(model: CaptionModel, args: PhotoArgs) -> None:
    """--freeze-encoder: no encoder weight trains; --freeze-decoder: only GPT-2's new cross-attention does."""
    if args.freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    if args.freeze_decoder:
        for name, p in model.decoder.named_parameters():
            p.requires_grad_("crossattention" in name or "ln_cross_attn" in name)


def _feature_caches(r: _Run, splits: dict) -> dict[str, feature_cache.FeatureCache]:
    """The frozen encoder's features of the train and val splits (built once, shared by the ranks)."""
    args, cfg, model = r.args, r.cfg, r.model
    model.encoder.eval()
    enc_key = {k: getattr(cfg, k) for k in ("encoder", "encoder_kwargs", "feature_index", "image_size",
                                            "image_mean", "image_std")}
    weights_id = r.info["encoder_weights"]
    if weights_id == "none":
        weights_id = f"none:seed={args.seed}:decoder={r.info['decoder_source']}"

    @torch.inference_mode()
    def encode(pixels):
        with _autocast(r.device, r.amp):
            return model.encoder(r.normalise(pixels))

    caches = {}
    for split, photos in (("train", splits["train"]), ("val", splits["val"])):
        if not photos:
            continue
        keys = [p.key for p in photos]
        key = feature_cache.cache_key(enc_key, weights_id, keys, args.cache_dtype, shard_size=256)
        caches[split] = feature_cache.build(Path(args.cache_features) / split, key, len(photos), encode,
                                            partial(r.pixel_batches, photos), r.rank, r.world, r.barrier,
                                            desc=f"cache {split} features")
    return caches


def _train_batches(r: _Run, data: TrainData, samples: CaptionSamples, steps: int, from_features: bool):
    """batches(start): from step `start` on, each step's micro-batches (inputs, ids, the global batch's
    target count) of this rank."""
    args, device = r.args, r.device
    micro = args.batch_size // (r.world * args.grad_accum)

    def batches(start: int):
        loader = torch.utils.data.DataLoader(
            data, batch_size=micro, sampler=_Positions(start, steps, args.batch_size, r.rank, r.world),
            num_workers=args.workers, collate_fn=partial(collate, pad_id=r.tokenizer.pad_id),
            pin_memory=device.type == "cuda", generator=torch.Generator(),  # never draws from the global RNG
            prefetch_factor=4 if args.workers else None, persistent_workers=False)
        it = iter(loader)
        for t in range(start, steps):
            targets = samples.targets_in(t * args.batch_size, args.batch_size)  # of the whole global batch
            step = []
            for _ in range(args.grad_accum):
                inputs, ids = next(it)
                inputs = inputs.to(device, non_blocking=True) if from_features else r.normalise(inputs)
                step.append((inputs, ids.to(device, non_blocking=True), targets))
            yield step

    return batches


def _record(args: PhotoArgs, argv, world: int, amp: str, info: dict, train_photos, samples, steps: int) -> dict:
    """metrics.json's description of the run (the evaluations are added as they come)."""
    return {
        "dataset": args.dataset,
        "command": "python -m train" + ("" if argv is None else "".join(f" {a}" for a in argv)),
        "args": asdict(args),
        "processes": world,
        "amp": amp,
        "encoder_weights": info["encoder_weights"],
        "decoder_source": info["decoder_source"],
        "train_images": len(train_photos),
        "train_captions": len(samples),
        "steps": steps,
        "samples_seen": steps * args.batch_size,
        "metric_tokenizer": "whitespace (lower-cased, punctuation removed; no PTB tokenizer)",
    }


def _run_key(args: PhotoArgs, steps: int) -> dict:
    """What a resumed run must share with the interrupted one."""
    run_key = {k: str(getattr(args, k)) for k in ("dataset", "encoder", "encoder_weights", "feature_index",
                                                   "image_size", "decoder", "dropout", "prefix_tokens",
                                                   "mapper_layers", "mode", "freeze_encoder", "freeze_decoder",
                                                   "batch_size", "max_caption_tokens", "seed")}
    run_key.update(karpathy_json=str(Path(args.karpathy_json).resolve()), steps=str(steps), lr=str(args.lr))
    return run_key


def _finish(r: _Run, record: dict, summary: dict, test_photos: list[Photo], steps: int, on_best, started: float) -> None:
    """Rank 0 after training: the best evaluation, the machine, the test split scored with the best
    checkpoint reloaded as any user would, metrics.json; the resume state goes."""
    args, out, device = r.args, r.out, r.device
    if "best" not in record:  # a resumed run whose best evaluation came before the interruption
        previous = out / "metrics.json"
        if previous.exists():
            record["best"] = json.loads(previous.read_text()).get("best")
        if "best" not in summary:  # no val split: the final weights
            on_best(steps, {})
    record.update(train_seconds=summary["train_seconds"], wall_seconds=round(time.time() - started, 1),
                  machine={"platform": platform.platform(), "device": str(device),
                           "cpus": torch.get_num_threads(), "python": sys.version.split()[0],
                           "torch": torch.__version__})
    if args.test_n >= 0 and test_photos:
        from vizcap import load

        best = load(out).model.to(device)  # the best checkpoint, reloaded as any user would
        record["test"] = r.score(best, test_photos[: args.test_n or None])
    write_json(out / "metrics.json", record)
    if summary["state_path"].exists():  # finished: the resume state is no longer needed
        summary["state_path"].unlink()
    print(json.dumps({"best": (record.get("best") or {}).get("val", {}), "test": record.get("test", {})}))
