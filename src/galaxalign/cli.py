"""The `galaxalign` command. Each subcommand parses its flags here and calls the library."""

from __future__ import annotations

import argparse
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
