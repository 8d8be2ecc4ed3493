"""python -m train PRESET [options]

Presets:
  shapes   the default ShapeScenes model (its defaults reproduce vizcap/checkpoints/shapes/)
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
    p.add_argument("--workers", type=int, default=d.workers, help="data-rendering worker processes")
    p.add_argument("--eval-n", type=int, default=d.eval_n, help="held-out scenes to evaluate at the end")
    p.add_argument("--save-every", type=int, default=d.save_every, help="steps between resumable saves")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="preset", required=True)
    _shapes_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.preset == "shapes":
            from .shapes import ShapesArgs, run

            if args.steps < 1 or args.batch_size < 1:
                parser.error("--steps and --batch-size must be at least 1")
            if args.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    parser.error("--device cuda: no CUDA device is available here")
            names = {f.name for f in fields(ShapesArgs)}
            run(ShapesArgs(**{k: v for k, v in vars(args).items() if k in names}), argv[1:])
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
