"""The `galaxalign` command. Each subcommand parses its flags here and calls the library."""

from __future__ import annotations

import argparse
import os
import sys

from galaxalign import __version__
from galaxalign.errors import GalaxAlignError


def _cmd_symbols(args) -> None:
    from galaxalign.symbols import write_symbol_set
    from galaxalign.taxonomy import load_scheme

    written = write_symbol_set(load_scheme(args.scheme), args.out, size=args.size, variants=args.variants, seed=args.seed)
    print(f"wrote {written} files to {args.out}")


def _cmd_synth(args) -> None:
    from galaxalign.synth import SynthConfig, write_synth

    config = SynthConfig(
        per_class=args.per_class, size=args.size, seed=args.seed, scheme=args.scheme,
        difficulty=args.difficulty, workers=args.workers,
    )
    write_synth(args.out, config, progress=not args.quiet)
    print(f"wrote {args.out}")


def _cmd_train(args) -> None:
    from galaxalign.config import config_from_args
    from galaxalign.training import TrainConfig, train

    if args.resume:
        config = TrainConfig(data=args.data or "", out=args.out)  # the run's own config.json is used
    elif not args.data:
        raise GalaxAlignError("train: --data is required (unless --resume)")
    else:
        config = config_from_args(TrainConfig, args)
    run_dir = train(config, resume=args.resume, progress=not args.quiet, pause_after_steps=args.pause_after_steps)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"run saved in {run_dir}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galaxalign", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galaxalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("symbols", help="draw each class's schematic symbol (PNG, SVG) and a gallery")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=224, help="symbol size in pixels (default 224)")
    p.add_argument("--variants", type=int, default=0, help="seeded variants per class (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the variants (default 0)")
    p.add_argument("--scheme", default="galaxy10", help="galaxy10, gz2, or a scheme JSON/YAML file")
    p.set_defaults(func=_cmd_symbols)

    p = sub.add_parser("synth", help="render the Galaxy10-Sim dataset to a Galaxy10-layout HDF5 file")
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--per-class", type=int, required=True, help="galaxies per class")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheme", default="galaxy10", help="galaxy10, gz2, or a scheme JSON/YAML file")
    p.add_argument("--difficulty", type=float, default=None, help="0 easy .. 1 hard (default: calibrated)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    from galaxalign.config import add_config_arguments
    from galaxalign.training.config import TrainConfig

    p = sub.add_parser("train", help="fine-tune a backbone with one method (supervised, clip, galaxalign-stage1, galaxalign)")
    add_config_arguments(p, TrainConfig, optional=("data",))
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out exactly")
    p.add_argument("--pause-after-steps", type=int, default=0, metavar="N",
                   help="checkpoint and stop after N optimiser steps in all (for time-limited cluster jobs); --resume continues")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except GalaxAlignError as exc:
        print(f"galaxalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("galaxalign: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
