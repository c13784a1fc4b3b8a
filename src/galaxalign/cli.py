"""The `galaxalign` command. Each subcommand parses its flags here and calls the library."""

from __future__ import annotations

import argparse
from pathlib import Path
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


def _cmd_classify(args) -> None:
    import json

    from galaxalign.data import load_image
    from galaxalign.runs import load_run

    if args.top_k < 1:
        raise GalaxAlignError(f"classify: --top-k must be at least 1, got {args.top_k}")
    images = [load_image(path) for path in args.images]  # a bad file fails before the model loads
    results = load_run(args.run).classify(images, mode=args.mode, top_k=args.top_k)
    if args.json:
        print(json.dumps([{"path": path, **result} for path, result in zip(args.images, results)], indent=2))
        return
    width = max(len(path) for path in args.images) + 1
    for path, result in zip(args.images, results):
        top = ", ".join(f"{t['name']} {t['probability']:.2f}" for t in result["top"])
        print(f"{path + ':':<{width}}  {result['name']} ({result['probability']:.2f})  | {top}")


def _cmd_evaluate(args) -> None:
    from galaxalign.evaluation.evaluate import evaluate_run
    from galaxalign.runs import load_run

    m = evaluate_run(load_run(args.run), args.data, split=args.split, out_dir=args.out, mode=args.mode,
                     progress=not args.quiet)
    k = m["k"]

    def score(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"{m['split']}: {m['n']} galaxies, {m['scoring']} scoring; database: {m['database']['n']} training galaxies")
    print(f"accuracy {score(m['accuracy'])}  macro-F1 {score(m['macro_f1'])}  "
          f"mAP@{k} {score(m[f'map@{k}'])}  nDCG@{k} {score(m[f'ndcg@{k}'])}{' (graded)' if m['graded'] else ''}")
    if "accuracy_by_mode" in m:
        by_mode = m["accuracy_by_mode"].items()
        print("accuracy by scoring mode: " + ", ".join(f"{mode} {score(acc)}" for mode, acc in by_mode))
    print(f"wrote {m['files']['metrics']} and {m['files']['confusion']}")


# ---- index / search (similarity search; galaxalign.search)


def _cmd_index(args) -> None:
    from galaxalign.data import open_dataset
    from galaxalign.runs import load_run
    from galaxalign.search import GalaxyIndex, build_index

    if args.add and (args.kind or args.no_thumbnails):
        raise GalaxAlignError("index: --add keeps the existing index's kind and thumbnails; drop --kind/--no-thumbnails")
    run = load_run(args.run)
    dataset = open_dataset(args.data, scheme=run.scheme)
    if args.add:
        index = GalaxyIndex.load(args.out, run).add(run, dataset, batch_size=args.batch_size, progress=not args.quiet)
    else:
        index = build_index(run, dataset, args.out, kind=args.kind or "auto", batch_size=args.batch_size,
                            thumbnails=not args.no_thumbnails, progress=not args.quiet)
    print(f"{index.kind} index of {len(index)} galaxies in {args.out}")


def _cmd_search(args) -> None:
    import json

    from galaxalign.runs import load_run
    from galaxalign.search import GalaxyIndex, Searcher

    index = GalaxyIndex.load(args.index)
    # Search by id uses stored embeddings; every other query is embedded by the index's run.
    run = load_run(args.run or index.run_dir) if args.run or args.id is None else None
    searcher = Searcher(index, run)
    kind, value = next((name, getattr(args, name)) for name in ("image", "id", "text", "symbol", "sketch")
                       if getattr(args, name) is not None)
    hits = getattr(searcher, f"by_{kind}")(value, args.k)
    if args.json:
        print(json.dumps({"index": str(args.index), "query": {kind: value}, "hits": [h.to_dict() for h in hits]}, indent=2))
        return
    width = max([len("id"), *(len(h.id) for h in hits)])
    print(f"{'rank':>4}  {'id':<{width}}  {'score':>6}  label")
    for rank, h in enumerate(hits, 1):
        print(f"{rank:>4}  {h.id:<{width}}  {h.score:>6.3f}  {h.label_name or '-'}")


# ---- end index / search


# ---- serve (web page and JSON API; galaxalign.web)


def _cmd_serve(args) -> None:
    import uvicorn

    from galaxalign.web import create_app

    app = create_app(args.index, args.run)  # loads index and run now: a bad folder fails before the server starts
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (API docs at /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


# ---- end serve


def _cmd_benchmark(args) -> None:
    from galaxalign.config import config_from_args
    from galaxalign.evaluation.benchmark import run_benchmark
    from galaxalign.evaluation.config import BenchmarkConfig

    config = config_from_args(BenchmarkConfig, args)
    run_benchmark(config, progress=not args.quiet)
    print((Path(config.out) / "results.md").read_text())
    print(f"results in {config.out}/results.md and results.json")


def _cmd_demo(args) -> None:
    from galaxalign.config import config_from_args
    from galaxalign.report.build import serve_command
    from galaxalign.report.demo import DemoConfig, run_demo

    config = config_from_args(DemoConfig, args)
    summary = run_demo(config, progress=not args.no_progress)
    print(f"\nreport: {summary['report']}  ({summary['seconds'] / 60:.1f} min)")
    for method in ("supervised", "galaxalign"):
        print(f"  {method:<11} test accuracy {summary[f'{method}_accuracy']:.3f}   mAP@10 {summary[f'{method}_map@10']:.3f}")
    print(f"search it in a browser: {serve_command(Path(config.out))}")


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

    modes_help = "scoring: head, text, symbol or fusion (default: the run's own)"
    p = sub.add_parser("classify", help="classify PNG/JPEG/FITS galaxy images with a trained run")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, FITS, ...)")
    p.add_argument("--mode", default=None, help=modes_help)
    p.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("evaluate", help="classification and retrieval metrics of a run on its own split")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", required=True, help="the dataset the run was trained on")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="part to evaluate (default test)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/eval-SPLIT)")
    p.add_argument("--mode", default=None, help=modes_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)
    # ---- index / search
    p = sub.add_parser("index", help="embed a catalogue with a run into a similarity-search index folder")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", required=True, help="galaxies to index: .h5, a folder, or a table/catalogue")
    p.add_argument("--out", required=True, help="index folder (replaced atomically)")
    p.add_argument("--kind", default=None, choices=("auto", "flat", "hnsw", "ivf"),
                   help="auto (default): exact below 200k galaxies, IVF above")
    p.add_argument("--batch-size", type=int, default=64, help="images embedded at once (default 64)")
    p.add_argument("--no-thumbnails", action="store_true", help="store no 64x64 thumbnails")
    p.add_argument("--add", action="store_true", help="append to the existing index in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="find galaxies like an image, an indexed galaxy, words, a class symbol or a sketch")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--run", default=None, help="run folder (default: the one that built the index)")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="a galaxy image file")
    query.add_argument("--id", help="an indexed galaxy's id (itself excluded)")
    query.add_argument("--text", help='words, e.g. "barred spiral with tight arms"')
    query.add_argument("--symbol", metavar="CLASS", help="a class key, id or name: search by its symbol")
    query.add_argument("--sketch", metavar="FILE", help="a drawing like a symbol (PNG; dark on light is fine)")
    p.add_argument("-k", type=int, default=10, help="results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_search)
    # ---- end index / search
    # ---- serve
    p = sub.add_parser("serve", help="serve the galaxy search web page and its JSON API for an index")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--run", default=None, help="run folder (default: the one that built the index)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=_cmd_serve)
    # ---- end serve
    from galaxalign.evaluation.config import BenchmarkConfig

    p = sub.add_parser("benchmark", help="every method on one split and backbone: the results table")
    add_config_arguments(p, BenchmarkConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_benchmark)

    from galaxalign.report.demo import DemoConfig

    p = sub.add_parser("demo", help="the main job: render data, fine-tune, evaluate, index, and write report.html")
    add_config_arguments(p, DemoConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

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
