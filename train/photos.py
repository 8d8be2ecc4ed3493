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
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from vizcap.captioner import Captioner, greedy_search
from vizcap.evaluate import caption_metrics
from vizcap.files import write_json
from vizcap.model import IGNORE, CaptionerConfig, CaptionModel
from vizcap.tokenizer import CaptionTokenizer

from . import features as feature_cache
from .karpathy import CaptionSamples, Photo, PixelData, TrainData, collate, read_karpathy
from .loop import LoopConfig, train

END_OF_TEXT = "<|endoftext|>"


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
# The hub, without hanging


_ONLINE: bool | None = None


def hub_online() -> bool:
    """Can the Hugging Face hub be reached? False under HF_HUB_OFFLINE=1; otherwise one TCP connect
    with a 3-second limit (to the proxy if one is set), asked once per process."""
    global _ONLINE
    if _ONLINE is None:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            _ONLINE = False
        else:
            from huggingface_hub import constants

            url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or constants.ENDPOINT
            parsed = urlparse(url if "://" in url else f"http://{url}")
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                socket.create_connection((parsed.hostname, port), timeout=3).close()
                _ONLINE = True
            except OSError:
                _ONLINE = False
    return _ONLINE


class HubUnavailable(ValueError):
    pass


def hub_file(repo: str, filename: str) -> str:
    """Local path of a hub file: the cache first, the network only if the hub is reachable."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:
        pass
    if not hub_online():
        raise HubUnavailable(f"{repo}/{filename}")
    return hf_hub_download(repo, filename)


# ------------------------------------------------------------------------------------------------
# Decoder: GPT-2 and its BPE tokenizer

_REBUILT_DEFAULTS = {  # what CaptionModel's own GPT2Config assumes; a decoder must agree to reload
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "tie_word_embeddings": True,
}


def decoder_dir(spec: str) -> tuple[Path, str]:
    """A local directory holding the decoder (config, weights, tokenizer) and its description."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--decoder {spec}: no config.json in this directory (save it with save_pretrained)")
        return path, str(path.resolve())
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ValueError(f"--decoder {spec}: not a directory")
    try:
        config = hub_file(spec, "config.json")
        hub_file(spec, "tokenizer.json")
        hub_file(spec, "model.safetensors")  # safetensors only: weights never run code when loaded
    except HubUnavailable:
        raise HubUnavailable(
            f"cannot fetch GPT-2 {spec!r} from the Hugging Face hub (offline, and not in the local cache): "
            "pass --decoder DIR, a directory saved with save_pretrained that holds config.json, "
            "model.safetensors and tokenizer.json"
        ) from None
    except Exception as e:
        raise ValueError(f"--decoder {spec}: cannot fetch it from the hub ({str(e).splitlines()[0]})") from None
    return Path(config).parent, spec


def load_tokenizer(directory: Path) -> CaptionTokenizer:
    """The decoder's GPT-2 BPE tokenizer: tokenizer.json, or vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    try:
        if (directory / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            tok.add_special_tokens([END_OF_TEXT])
        else:
            raise ValueError("no tokenizer.json (nor vocab.json + merges.txt)")
        if tok.token_to_id(END_OF_TEXT) is None:
            raise ValueError(f"no {END_OF_TEXT} token (a GPT-2 BPE tokenizer is expected)")
        return CaptionTokenizer(tok, pad=END_OF_TEXT, bos=END_OF_TEXT, eos=END_OF_TEXT)
    except Exception as e:
        raise ValueError(f"--decoder {directory}: tokenizer: {str(e).splitlines()[0]}") from None


def load_decoder(directory: Path, mode: str, dropout: float | None):
    """GPT2LMHeadModel with cross-attention layers added (newly initialised) unless mode is "prefix"."""
    import transformers
    from transformers import GPT2LMHeadModel

    kwargs = {"add_cross_attention": mode != "prefix", "attn_implementation": "eager", "dtype": torch.float32,
              "use_safetensors": True}
    if dropout is not None:
        kwargs.update(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialised cross-attention" report is expected
    try:
        decoder = GPT2LMHeadModel.from_pretrained(str(directory), **kwargs)
    except Exception as e:
        raise ValueError(f"--decoder {directory}: not a GPT-2 checkpoint ({str(e).splitlines()[0]})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if decoder.config.model_type != "gpt2":
        raise ValueError(f"--decoder {directory}: a {decoder.config.model_type} model; a GPT-2 is needed")
    for key, expected in _REBUILT_DEFAULTS.items():
        if getattr(decoder.config, key, expected) != expected:
            raise ValueError(f"--decoder {directory}: {key}={getattr(decoder.config, key)!r} is not supported "
                             f"(vizcap rebuilds GPT-2 with {key}={expected!r})")
    return decoder


# ------------------------------------------------------------------------------------------------
# Encoder: a timm model, its weights, its grid


def encoder_settings(name: str, image_size: int | None, feature_index: int | None) -> dict:
    """The CaptionerConfig fields of a timm encoder: ViT-like models (tokens from forward_features)
    get feature_index None; CNNs their last feature stage unless told otherwise."""
    import timm

    try:
        pcfg = timm.get_pretrained_cfg(name)
    except Exception:
        pcfg = None
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(f"--encoder {name}: not a timm model (see timm.list_models())")
    size = (pcfg.input_size[-1] if pcfg is not None else 224) if image_size is None else image_size
    mean = tuple(pcfg.mean) if pcfg is not None else (0.485, 0.456, 0.406)
    std = tuple(pcfg.std) if pcfg is not None else (0.229, 0.224, 0.225)
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):  # architecture only: no memory, no initialisation cost
                probe = timm.create_model(name, pretrained=False)
                tokens = probe.forward_features(torch.zeros(1, 3, size, size)).dim() == 3
        except Exception:
            probe = timm.create_model(name, pretrained=False)
            with torch.no_grad():
                tokens = probe.eval().forward_features(torch.zeros(1, 3, size, size)).dim() == 3
    vit = tokens and hasattr(probe, "patch_embed")
    kwargs = {}
    if vit:
        if feature_index is not None:
            raise ValueError(f"--feature-index: {name} is a ViT-like model; its tokens come from forward_features")
        if image_size is not None:
            kwargs["img_size"] = image_size
    else:
        n_stages = len(probe.feature_info)
        if feature_index is None:
            feature_index = n_stages - 1
        elif not 0 <= feature_index < n_stages:
            raise ValueError(f"--feature-index {feature_index}: {name} has feature stages 0…{n_stages - 1}")
    return {"encoder": name, "encoder_kwargs": kwargs, "feature_index": None if vit else feature_index,
            "image_size": size, "image_mean": mean, "image_std": std}


def encoder_weights(name: str, spec: str) -> tuple[str | None, str]:
    """(local weights file or None, identity string). None with "none" (random initialisation)."""
    import timm

    if spec == "none":
        return None, "none"
    if spec != "hub":
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"--encoder-weights {spec}: no such file (pass hub, none, or a .safetensors file)")
        if path.suffix != ".safetensors":
            raise ValueError(f"--encoder-weights {spec}: only .safetensors weight files are loaded")
        return str(path.resolve()), f"file:sha256:{feature_cache.file_digest(path)}"
    try:
        pcfg = timm.get_pretrained_cfg(name)
    except Exception:
        pcfg = None
    hint = f"pass --encoder-weights FILE (a local .safetensors of {name}) or --encoder-weights none (random init)"
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url):
        raise ValueError(f"--encoder {name}: timm knows no pretrained weights for it; {hint}")
    if not pcfg.hf_hub_id:
        raise ValueError(f"--encoder {name}: timm's weights for it are not safetensors on the Hugging Face hub "
                         f"(only safetensors weight files are loaded); {hint}")
    hub_filename = getattr(pcfg, "hf_hub_filename", None)
    filenames = [hub_filename] if hub_filename and hub_filename.endswith(".safetensors") else ["model.safetensors"]
    repo = pcfg.hf_hub_id.split("@")[0]
    last = None
    for filename in filenames:
        try:
            path = hub_file(repo, filename)
            return path, f"hub:{repo}/{filename}:{Path(path).parent.name}"
        except HubUnavailable:
            raise HubUnavailable(
                f"cannot fetch the weights of encoder {name!r} from the Hugging Face hub "
                f"(offline, and not in the local cache): {hint}"
            ) from None
        except Exception as e:
            last = e
    raise ValueError(f"--encoder {name}: cannot fetch its weights from {repo} ({str(last).splitlines()[0]}); {hint}")


# ------------------------------------------------------------------------------------------------
# The model and the training wrapper


def build_model(args: PhotoArgs) -> tuple[CaptionModel, CaptionTokenizer, dict]:
    problems = []  # both hub look-ups first, so that one message names everything to pass
    try:
        directory, decoder_source = decoder_dir(args.decoder)
    except HubUnavailable as e:
        problems.append(str(e))
    try:
        weights_file, weights_id = encoder_weights(args.encoder, args.encoder_weights)
    except HubUnavailable as e:
        problems.append(str(e))
    if problems:
        raise HubUnavailable("; ".join(problems))
    tokenizer = load_tokenizer(directory)
    enc = encoder_settings(args.encoder, args.image_size, args.feature_index)
    decoder = load_decoder(directory, args.mode, args.dropout)
    g = decoder.config
    if tokenizer.vocab_size != g.vocab_size:
        raise ValueError(f"--decoder {args.decoder}: tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"{g.vocab_size}; they must match")
    cfg = CaptionerConfig(
        **enc,
        d_model=g.n_embd,
        n_prefix=args.prefix_tokens,
        mapper_heads=g.n_head,
        mapper_layers=args.mapper_layers,
        decoder_layers=g.n_layer,
        decoder_heads=g.n_head,
        max_positions=g.n_positions,
        vocab_size=g.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        mode=args.mode,
    )
    if cfg.n_prefix + args.max_caption_tokens + 2 > cfg.max_positions:
        raise ValueError(f"--prefix-tokens {cfg.n_prefix} + --max-caption-tokens {args.max_caption_tokens} + 2 "
                         f"exceed the decoder's {cfg.max_positions} positions")
    build_cfg = cfg
    if weights_file:  # timm loads a local file through its pretrained machinery (key filters included)
        build_cfg = replace(cfg, encoder_kwargs={**cfg.encoder_kwargs,
                                                 "pretrained_cfg_overlay": {"file": weights_file}})
    try:
        model = CaptionModel(build_cfg, pretrained_encoder=weights_file is not None, decoder=decoder)
    except (RuntimeError, KeyError) as e:
        if weights_file is None:
            raise
        raise ValueError(f"--encoder-weights {args.encoder_weights}: do not fit {args.encoder} "
                         f"({str(e).splitlines()[0][:300]})") from None
    model.cfg = cfg  # the config that rebuilds it (no weights path)
    return model, tokenizer, {"decoder_source": decoder_source, "encoder_weights": weights_id}


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


def _run(args, argv, splits, device, amp, rank, world, started) -> dict:
    main = rank == 0
    barrier = (lambda: torch.distributed.barrier()) if world > 1 else (lambda: None)
    torch.manual_seed(args.seed)
    model, tokenizer, info = build_model(args)
    cfg = model.cfg
    if args.freeze_encoder:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    if args.freeze_decoder:
        for name, p in model.decoder.named_parameters():
            p.requires_grad_("crossattention" in name or "ln_cross_attn" in name)
    model.to(device)
    if world > 1:  # each rank its own dropout masks (the weights are broadcast from rank 0 anyway)
        torch.manual_seed(args.seed + 1_000_003 * rank)
    out = Path(args.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    train_photos, val_photos = splits["train"], splits["val"]
    if args.eval_n:  # the first eval_n (the cache holds the whole split, so --eval-n can change)
        val_photos = val_photos[: args.eval_n]
    samples = CaptionSamples(train_photos, tokenizer, args.max_caption_tokens, args.seed)
    steps_per_epoch = math.ceil(len(samples) / args.batch_size)
    steps = args.steps if args.steps else max(1, math.ceil((args.epochs or 10) * steps_per_epoch))
    eval_every = steps_per_epoch if args.eval_every is None else args.eval_every
    mean = torch.tensor(cfg.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std, device=device).view(1, 3, 1, 1)

    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(device, non_blocking=True).float() / 255.0 - mean) / std

    def pixel_batches(photos: list[Photo], indices: list[int]):
        """(uint8 pixels, indices) batches of the photos `indices`; never draws from the global RNG."""
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(PixelData(photos, cfg.image_size), indices), batch_size=args.eval_batch,
            num_workers=min(args.workers, math.ceil(len(indices) / args.eval_batch)),
            pin_memory=device.type == "cuda", generator=torch.Generator())
        yield from loader

    # -- frozen-encoder feature cache ------------------------------------------------------------
    caches: dict[str, feature_cache.FeatureCache] = {}
    if args.cache_features:
        model.encoder.eval()
        enc_key = {k: getattr(cfg, k) for k in ("encoder", "encoder_kwargs", "feature_index", "image_size",
                                                "image_mean", "image_std")}
        weights_id = info["encoder_weights"]
        if weights_id == "none":
            weights_id = f"none:seed={args.seed}:decoder={info['decoder_source']}"

        @torch.inference_mode()
        def encode(pixels):
            with _autocast(device, amp):
                return model.encoder(normalise(pixels))

        for split, photos in (("train", train_photos), ("val", splits["val"])):
            if not photos:
                continue
            keys = [p.key for p in photos]
            key = feature_cache.cache_key(enc_key, weights_id, keys, args.cache_dtype, shard_size=256)
            caches[split] = feature_cache.build(Path(args.cache_features) / split, key, len(photos), encode,
                                                partial(pixel_batches, photos), rank, world, barrier,
                                                desc=f"cache {split} features")

    # -- training --------------------------------------------------------------------------------
    from_features = "train" in caches
    trainer = Trainer(model, args.freeze_encoder, from_features)
    net: nn.Module = trainer
    no_sync = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(trainer, device_ids=[device.index] if device.type == "cuda" else None)
        net, no_sync = ddp, ddp.no_sync
    if args.compile:
        net = torch.compile(net)
    data = TrainData(samples, cfg.image_size, caches.get("train"))
    micro = args.batch_size // (world * args.grad_accum)

    def batches(start: int):
        loader = torch.utils.data.DataLoader(
            data, batch_size=micro, sampler=_Positions(start, steps, args.batch_size, rank, world),
            num_workers=args.workers, collate_fn=partial(collate, pad_id=tokenizer.pad_id),
            pin_memory=device.type == "cuda", generator=torch.Generator(),  # never draws from the global RNG
            prefetch_factor=4 if args.workers else None, persistent_workers=False)
        it = iter(loader)
        for t in range(start, steps):
            targets = samples.targets_in(t * args.batch_size, args.batch_size)  # of the whole global batch
            step = []
            for _ in range(args.grad_accum):
                inputs, ids = next(it)
                inputs = inputs.to(device, non_blocking=True) if from_features else normalise(inputs)
                step.append((inputs, ids.to(device, non_blocking=True), targets))
            yield step

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

    def caption_photos(model: CaptionModel, photos: list[Photo], cache=None) -> dict[int, str]:
        """Greedy captions {index: text}, from cached features when given, else from the images."""
        model.eval()
        preds: dict[int, str] = {}
        if cache is not None:
            starts = range(0, len(photos), args.eval_batch)
            batches_ = ((None, torch.arange(i, min(i + args.eval_batch, len(photos)))) for i in starts)
        else:
            batches_ = pixel_batches(photos, list(range(len(photos))))
        for pixels, idx in tqdm(batches_, desc="caption", unit="batch", leave=False,
                                total=math.ceil(len(photos) / args.eval_batch)):
            idx = idx.tolist()
            with torch.inference_mode(), _autocast(device, amp):
                if cache is not None:
                    memory = model.memory_from_features(torch.stack([cache[j] for j in idx]).to(device))
                else:
                    memory = model.encode(normalise(pixels))
                found = greedy_search(model, memory, args.max_tokens)
            preds.update({j: tokenizer.decode(h.tokens) for j, h in zip(idx, found)})
        return preds

    def score(model: CaptionModel, photos: list[Photo], cache=None) -> dict:
        preds = caption_photos(model, photos, cache)
        metrics = caption_metrics(preds, {i: list(p.captions) for i, p in enumerate(photos)})
        metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
        metrics["n_images"] = len(photos)
        metrics["examples"] = [{"image": photos[i].key, "caption": preds[i]} for i in range(min(3, len(photos)))]
        return metrics

    record = {
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

    def on_best(step: int, metrics: dict) -> None:
        # saved without constructing a Captioner, so that the training model gets no inference hooks
        holder = SimpleNamespace(cfg=cfg, tokenizer=tokenizer, model=model)
        Captioner.save_pretrained(holder, out, extra={"decoder_source": info["decoder_source"]})
        record["best"] = {"step": step, "val": metrics}
        write_json(out / "metrics.json", record)

    warmup = args.warmup if args.warmup is not None else min(5000, math.ceil(0.05 * steps))
    loop = LoopConfig(steps=steps, lr=args.lr, warmup=max(1, warmup),
                      weight_decay=args.weight_decay, log_every=args.log_every, save_every=args.save_every,
                      device=device.type, grad_accum=args.grad_accum, amp=amp, eval_every=eval_every,
                      best_metric="cider")
    run_key = {k: str(getattr(args, k)) for k in ("dataset", "encoder", "encoder_weights", "feature_index",
                                                   "image_size", "decoder", "dropout", "prefix_tokens",
                                                   "mapper_layers", "mode", "freeze_encoder", "freeze_decoder",
                                                   "batch_size", "max_caption_tokens", "seed")}
    run_key.update(karpathy_json=str(Path(args.karpathy_json).resolve()), steps=str(steps), lr=str(args.lr))
    summary = train(net, batches, loss_fn, loop, out, args.resume, args.batch_size,
                    describe=f"train {args.dataset}", state_model=model, train_mode=train_mode, no_sync=no_sync,
                    evaluate=lambda step: score(model, val_photos, caches.get("val")) if val_photos else {},
                    on_best=on_best, run_key=run_key)
    if main:
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
        if args.test_n >= 0 and splits["test"]:
            from vizcap import load

            best = load(out).model.to(device)  # the best checkpoint, reloaded as any user would
            record["test"] = score(best, splits["test"][: args.test_n or None])
        write_json(out / "metrics.json", record)
        if summary["state_path"].exists():  # finished: the resume state is no longer needed
            summary["state_path"].unlink()
        print(json.dumps({"best": (record.get("best") or {}).get("val", {}), "test": record.get("test", {})}))
    barrier()
    return record
