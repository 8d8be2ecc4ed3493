"""python -m train PRESET [options]

Presets:
  shapes     the default ShapeScenes model (its defaults reproduce vizcap/checkpoints/shapes/)
  coco       real photos from a Karpathy split file (also flickr8k, flickr30k); see docs/real-photos.md
  flickr8k
  flickr30k

Distributed: torchrun --nproc_per_node N -m train coco ...
"""

from __future__ import annotations

import argparse
import errno
import sys
from dataclasses import fields


def _shapes_parser(sub) -> None:
    from .shapes import ShapesArgs

    d = ShapesArgs()
    p = sub.add_parser("shapes", help="train the default ShapeScenes model")
    p.add_argument("--out", default=d.out, help=f"checkpoint directory (default {d.out})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--seed", type=int, default=d.seed, help="run seed: initial weights and data order")
    p.add_argument("--device", choices=["cpu", "cuda"], default=d.device)
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.safetensors if present")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (part of what fixes the bits)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help=f"processes that render the training scenes before training (default {d.workers}; 0 = in this one)")
    p.add_argument("--scenes", type=int, default=d.scenes,
                   help=f"distinct training scenes, rendered once; the run cycles through them (default {d.scenes})")
    p.add_argument("--eval-n", type=int, default=d.eval_n, help="held-out scenes to evaluate at the end")
    p.add_argument("--save-every", type=int, default=d.save_every, help="steps between resumable saves")
    p.add_argument("--encoder", choices=["mobilenet", "vit"], default=d.encoder,
                   help="vit (the shipped model: a ViT with a convolutional stem, vizcap/vit.py) or mobilenet")
    p.add_argument("--hard-every", type=int, default=d.hard_every, metavar="K",
                   help="every K-th training scene is a hard one (small objects, large JPEG images); 0 = none")
    p.add_argument("--bind-weight", type=float, default=d.bind_weight,
                   help="weight of the loss that binds prefix token k to an object (--bind-to; 0 = off)")
    p.add_argument("--attend-weight", type=float, default=d.attend_weight,
                   help="weight of the supervised attention at object words (cross-attention to the object's "
                        "cells, prefix attention to its bound token; 0 = off)")
    p.add_argument("--attend-relations", action=argparse.BooleanOptionalAction, default=d.attend_relations,
                   help="supervise the attention at a pair's relation word too (\"left\", \"above\"), towards the "
                        "object named before it, which the relation is read from (default on, the shipped model; "
                        "no effect with --attend-weight 0)")
    p.add_argument("--captions", choices=["canonical", "all"], default=d.captions,
                   help="training captions: per sample, one drawn among all the scene's right phrasings (default, "
                        "the shipped models), or the canonical one of each scene")
    p.add_argument("--bind-to", choices=["named", "place"], default=d.bind_to,
                   help="the object prefix token k is bound to: the k-th the sample's caption names (default, the "
                        "shipped models) or the one at place k of the canonical caption (prefix maps that point, "
                        "captions below the quality bars: train/shapes.py says more)")
    p.add_argument("--relation-weight", type=float, default=d.relation_weight,
                   help="weight of a dense head that predicts, under each object of a related pair, its relation "
                        "to the other (default 1, the shipped models; 0 = no such head)")
    p.add_argument("--named-weight", type=float, default=d.named_weight,
                   help="weight of a training-only head on the decoder's output that learns which of the scene's "
                        "objects the caption has named so far (default 0: none; not a loss on any map)")
    p.add_argument("--repeat-weight", type=float, default=d.repeat_weight,
                   help="weight of an unlikelihood term against a shape word that would name an already-named "
                        "phrase again (default 0: none; a loss on the caption's words, not on any map)")
    p.add_argument("--decoder-layers", type=int, default=d.decoder_layers,
                   help=f"GPT-2 blocks of the caption decoder (default {d.decoder_layers}, the shipped models)")


def _photos_parser(sub, dataset: str) -> None:
    from .photos import PhotoArgs

    d = PhotoArgs()
    p = sub.add_parser(dataset, help=f"train on {dataset} photos (Karpathy splits)",
                       description=f"Train a photo captioner on {dataset} from a Karpathy split file.")
    p.add_argument("--karpathy-json", required=True, metavar="PATH", help=f"dataset_{dataset}.json (Karpathy splits)")
    p.add_argument("--image-root", required=True, metavar="DIR",
                   help="folder the JSON's filepath/filename are relative to")
    g = p.add_argument_group("model")
    g.add_argument("--encoder", default=d.encoder, metavar="TIMM_NAME", help=f"timm model (default {d.encoder})")
    g.add_argument("--encoder-weights", default=d.encoder_weights, metavar="hub|none|FILE",
                   help="pretrained weights from the Hugging Face hub (default), none (random), or a local "
                        ".safetensors file")
    g.add_argument("--feature-index", type=int, default=None, metavar="K",
                   help="CNN encoders: the feature stage to read (default: the last)")
    g.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="input side (default: the encoder's pretrained input size)")
    g.add_argument("--decoder", default=d.decoder, metavar="gpt2|DIR",
                   help="GPT-2 hub name or save_pretrained directory (with tokenizer.json); default gpt2")
    g.add_argument("--dropout", type=float, default=None, metavar="P", help="override GPT-2's dropout rates")
    g.add_argument("--prefix-tokens", type=int, default=d.prefix_tokens, metavar="N",
                   help=f"mapper prefix length (default {d.prefix_tokens})")
    g.add_argument("--mapper-layers", type=int, default=d.mapper_layers, metavar="N",
                   help=f"transformer layers over the prefix (default {d.mapper_layers})")
    g.add_argument("--mode", choices=["prefix", "cross", "both"], default=d.mode,
                   help=f"how GPT-2 sees the image (default {d.mode})")
    g.add_argument("--freeze-encoder", action="store_true", help="do not train the encoder")
    g.add_argument("--freeze-decoder", action="store_true",
                   help="do not train GPT-2's pretrained weights (new cross-attention layers still train)")
    g = p.add_argument_group("training")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps")
    length.add_argument("--epochs", type=float, default=None, metavar="N",
                        help="passes over the training captions (default 10)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, metavar="B",
                   help=f"global batch: all processes and micro-batches together (default {d.batch_size})")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, metavar="K",
                   help="micro-batches per optimizer step (default 1)")
    g.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    g.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="warm-up steps (default 5%% of the steps, at most 5000)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--amp", choices=["bf16", "fp16", "no"], default=d.amp,
                   help="autocast precision (default: bf16 on CUDA, no on CPU)")
    g.add_argument("--compile", action="store_true", help="torch.compile the training step")
    g.add_argument("--cache-features", default=None, metavar="DIR",
                   help="cache the frozen encoder's features in DIR (needs --freeze-encoder)")
    g.add_argument("--cache-dtype", choices=["float16", "bfloat16", "float32"], default=d.cache_dtype)
    g.add_argument("--max-caption-tokens", type=int, default=d.max_caption_tokens, metavar="N",
                   help=f"training captions are cut to N BPE tokens (default {d.max_caption_tokens})")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--workers", type=int, default=d.workers, help=f"image-loading processes (default {d.workers})")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    g = p.add_argument_group("output and evaluation")
    g.add_argument("--out", default=f"runs/{dataset}", metavar="DIR",
                   help=f"checkpoint directory: the best model by val CIDEr (default runs/{dataset})")
    g.add_argument("--resume", action="store_true", help="continue from OUT/resume.safetensors if present")
    g.add_argument("--save-every", type=int, default=d.save_every, metavar="N",
                   help=f"steps between resumable saves (default {d.save_every})")
    g.add_argument("--log-every", type=int, default=d.log_every, metavar="N")
    g.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="steps between val evaluations (default: once per epoch; 0: only at the end)")
    g.add_argument("--eval-n", type=int, default=d.eval_n, metavar="N", help="val images per evaluation (0: all)")
    g.add_argument("--test-n", type=int, default=d.test_n, metavar="N",
                   help="test images scored with the best checkpoint at the end (0: all, -1: none)")
    g.add_argument("--eval-batch", type=int, default=d.eval_batch, metavar="N")
    g.add_argument("--max-tokens", type=int, default=d.max_tokens, metavar="N",
                   help=f"longest generated caption (default {d.max_tokens})")


def _check_photos(parser, args) -> None:
    positive = ["batch_size", "grad_accum", "prefix_tokens", "save_every", "log_every", "eval_batch",
                "max_caption_tokens", "max_tokens"]
    for name in positive + [n for n in ("steps", "image_size") if getattr(args, n) is not None]:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("epochs", "lr"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name} must be positive")
    for name in ("mapper_layers", "workers", "eval_n") + (("eval_every",) if args.eval_every is not None else ()):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.cache_features and not args.freeze_encoder:
        parser.error("--cache-features needs --freeze-encoder (cached features are valid only for an encoder "
                     "that does not train)")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="preset", required=True)
    _shapes_parser(sub)
    from .karpathy import DATASETS

    for dataset in DATASETS:
        _photos_parser(sub, dataset)
    args = parser.parse_args(argv)
    try:
        if args.preset == "shapes":
            from .shapes import ShapesArgs, run

            for flag in ("steps", "batch_size", "threads", "eval_n", "save_every", "scenes", "decoder_layers"):
                if getattr(args, flag) < 1:
                    parser.error(f"--{flag.replace('_', '-')} must be at least 1")
            if args.workers < 0 or args.lr <= 0 or args.hard_every < 0 or args.bind_weight < 0 or args.attend_weight < 0:
                parser.error("--workers, --hard-every, --bind-weight and --attend-weight must be >= 0 and --lr > 0")
            if args.named_weight < 0 or args.repeat_weight < 0:
                parser.error("--named-weight and --repeat-weight must be >= 0")
            if args.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    parser.error("--device cuda: no CUDA device is available here")
            names = {f.name for f in fields(ShapesArgs)}
            run(ShapesArgs(**{k: v for k, v in vars(args).items() if k in names}), argv[1:])
        else:
            from .photos import PhotoArgs, run as run_photos

            _check_photos(parser, args)
            names = {f.name for f in fields(PhotoArgs)}
            options = {k: v for k, v in vars(args).items() if k in names}
            run_photos(PhotoArgs(dataset=args.preset, **options), argv)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    except OSError as e:
        reason = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        print(f"error: cannot write {e.filename or args.out}: {reason}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
