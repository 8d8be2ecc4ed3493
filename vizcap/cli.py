"""The `vizcap` command line (also `python -m vizcap`).

    vizcap caption PATH... [--checkpoint DIR] [--max-tokens N] [--json]

With --json, exactly one JSON object per input on its own line, in input order; a failed input
gets {"image": ..., "error": ...} and the others are still processed. Exit status: 0 if every input
was captioned, 2 if any failed or the arguments/checkpoint were bad. Never a Python traceback.
"""

from __future__ import annotations

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, status 2
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vizcap", description="See where an image captioner looks while it writes each word.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    cap = sub.add_parser("caption", help="caption images (greedy)")
    cap.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    cap.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint directory (default: shipped model)")
    cap.add_argument("--max-tokens", type=_positive, default=20, metavar="N", help="longest caption (default 20)")
    cap.add_argument("--json", action="store_true", help="one JSON object per input, one per line")
    return parser


def _caption(args) -> int:
    from . import CheckpointError, ImageError, load

    try:
        captioner = load(args.checkpoint)
    except CheckpointError as e:
        print(f"vizcap: error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.paths:
        try:
            details = captioner.caption_details(path, max_tokens=args.max_tokens)
            record = {"image": path, **details, "maps": {}}
        except ImageError as e:
            failed += 1
            record = {"image": path, "error": str(e)}
        except Exception as e:  # one bad input never stops the batch
            failed += 1
            record = {"image": path, "error": f"{path}: {type(e).__name__}: {e}".splitlines()[0]}
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"error: {record['error']}", file=sys.stderr, flush=True)
        else:
            print(f"{path}: {record['caption']}", flush=True)
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "caption":
            return _caption(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # last resort: a one-line message, never a traceback
        print(f"vizcap: error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
