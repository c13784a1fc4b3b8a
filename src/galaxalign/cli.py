"""The `galaxalign` command: every subcommand's flags come from one typed config dataclass.

A subcommand is a row of `COMMANDS`: its help, where its config lives, whether it shows
progress, and the function that calls the library. Only the chosen subcommand's config is
imported, so `galaxalign --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from galaxalign import __version__
from galaxalign.config import add_config_arguments, config_from_args
from galaxalign.errors import GalaxAlignError, MissingExtraError, require_extra
from galaxalign.progress import set_quiet


def _symbols(config, args) -> None:
    from galaxalign.symbols import write_symbol_set
    from galaxalign.taxonomy import load_scheme

    written = write_symbol_set(
        load_scheme(config.scheme), config.out, size=config.size, variants=config.variants, seed=config.seed
    )
    print(f"wrote {written} files to {config.out}")


def _synth(config, args) -> None:
    from galaxalign.synth import write_synth

    write_synth(args.out, config)
    print(f"wrote {args.out}")


def _download(config, args) -> None:
    from galaxalign.data.download import fetch_dataset

    print(f"wrote {fetch_dataset(config)}")


def _convert(config, args) -> None:
    from galaxalign.data.convert import convert_h5

    print(f"wrote {convert_h5(config.src, config.out, compression=config.compression)}")


def _train(config, args) -> None:
    from galaxalign.training import train

    run_dir = train(config, resume=args.resume, pause_after_steps=args.pause_after_steps)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"run saved in {run_dir}")


def _classify(config, args) -> None:
    from galaxalign.data import load_image
    from galaxalign.runs import load_run

    images = [load_image(path) for path in config.images]  # a bad file fails before the model loads
    results = load_run(config.run, device=config.device).classify(images, mode=config.mode, top_k=config.top_k)
    if config.json:
        print(json.dumps([{"path": path, **result} for path, result in zip(config.images, results)], indent=2))
        return
    width = max(len(path) for path in config.images) + 1
    for path, result in zip(config.images, results):
        top = ", ".join(f"{t['name']} {t['probability']:.2f}" for t in result["top"])
        print(f"{path + ':':<{width}}  {result['name']} ({result['probability']:.2f})  | {top}")


def _evaluate(config, args) -> None:
    from galaxalign.evaluation.evaluate import evaluate_run
    from galaxalign.runs import load_run

    m = evaluate_run(
        load_run(config.run, device=config.device),
        config.data,
        split=config.split,
        out_dir=config.out,
        mode=config.mode,
        batch_size=config.batch_size,
        queries=config.queries,
        workers=config.workers,
    )
    k = m["k"]

    def score(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"{m['split']}: {m['n']} galaxies, {m['scoring']} scoring; database: {m['database']['n']} training galaxies")
    print(
        f"accuracy {score(m['accuracy'])}  macro-F1 {score(m['macro_f1'])}  "
        f"mAP@{k} {score(m[f'map@{k}'])}  nDCG@{k} {score(m[f'ndcg@{k}'])}{' (graded)' if m['graded'] else ''}"
    )
    if "accuracy_by_mode" in m:
        by_mode = m["accuracy_by_mode"].items()
        print("accuracy by scoring mode: " + ", ".join(f"{mode} {score(acc)}" for mode, acc in by_mode))
    print(f"wrote {m['files']['metrics']} and {m['files']['confusion']}")


def _index(config, args) -> None:
    from galaxalign.search.index import choose_index_kind
    from galaxalign.search.shards import CATALOGUE_FILE

    if (Path(config.data) / CATALOGUE_FILE).is_file():
        _index_survey(config, args)
        return
    from galaxalign.data import open_dataset
    from galaxalign.runs import load_run
    from galaxalign.search import GalaxyIndex, build_index

    if config.add:
        wrong = config.survey_flags()
        if wrong:
            raise GalaxAlignError(
                f"index: --{wrong[0].replace('_', '-')} does nothing when adding to an index; drop it"
            )
    if config.run is None:
        raise GalaxAlignError(f"index: --run is needed to embed the images of {config.data}")
    run = load_run(config.run, device=config.device)
    dataset = open_dataset(config.data, scheme=run.scheme)
    batch_size, workers = config.batch_size or 64, config.workers or 0
    if config.add:
        index = GalaxyIndex.load(config.out, run).add(run, dataset, batch_size=batch_size, workers=workers)
    else:
        kind, why = choose_index_kind(config, len(dataset))
        print(f"index kind: {kind} ({why})")
        index = build_index(
            run,
            dataset,
            config.out,
            kind=kind,
            batch_size=batch_size,
            workers=workers,
            thumbnails=config.thumbnails,
        )
    print(f"{index.kind} index of {len(index)} galaxies in {config.out}")


def _index_survey(config, args) -> None:
    from galaxalign.runs import load_run
    from galaxalign.search.index import choose_index_kind
    from galaxalign.search.survey import BuildOptions, build_survey_index

    kind, why = choose_index_kind(config, None)
    print(f"index kind: {kind} ({why})")
    options = BuildOptions(
        nlist=config.nlist,
        pq_bytes=config.pq_bytes,
        opq=config.opq,
        build_memory_gb=config.build_memory_gb or 4.0,
        threads=config.threads or 0,
    )
    run = load_run(config.run, device=config.device) if config.run else None
    index = build_survey_index(config.data, config.out, options, run=run)
    plan = index.manifest["plan"]
    print(f"survey index of {len(index)} galaxies in {config.out}: {plan['factory']} ({plan['rule']})")


def _embed(config, args) -> None:
    from galaxalign.jobs.embed import embed_catalogue

    result = embed_catalogue(config)
    if result.rank == 0:  # under torchrun only rank 0 reports
        print(
            f"{result.shards} shards in {result.out}: {len(result.embedded)} embedded here ({result.rows} galaxies), "
            f"{len(result.skipped)} already done"
            + (f", the rest by {result.world - 1} other ranks" if result.world > 1 else "")
        )


def _search(config, args) -> None:
    from galaxalign.runs import load_run
    from galaxalign.search import GalaxyIndex, Searcher
    from galaxalign.search.survey import Cone, SurveyIndex, SurveySearcher, is_survey_index

    kind, value = config.query
    cone = config.cone_tuple()
    run_needed = config.run or kind not in ("id", "position")
    searcher: Searcher | SurveySearcher
    if is_survey_index(config.index):
        survey = SurveyIndex.open(config.index)
        run = load_run(config.run or survey.run_dir, device=config.device) if run_needed else None
        searcher = SurveySearcher(survey, run)
        within = Cone(*cone) if cone else None
        if kind == "position":
            hits = searcher.by_position(
                config.ra, config.dec, k=config.k, tolerance_arcsec=config.tolerance or 5.0, cone=within
            )
        else:
            hits = getattr(searcher, f"by_{kind}")(value, config.k, cone=within)
    else:
        if kind == "position" or cone:
            raise GalaxAlignError(
                f"{config.index}: --ra/--dec and --cone need a survey index (galaxalign index of an embedding folder)"
            )
        index = GalaxyIndex.load(config.index)
        # Search by id uses stored embeddings; every other query is embedded by the index's run.
        run = load_run(config.run or index.run_dir, device=config.device) if run_needed else None
        hits = getattr(Searcher(index, run), f"by_{kind}")(value, config.k)
    if config.json:
        query = {kind: list(value) if kind == "position" else value}
        print(json.dumps({"index": str(config.index), "query": query, "hits": [h.to_dict() for h in hits]}, indent=2))
        return
    width = max([len("id"), *(len(h.id) for h in hits)])
    print(f"{'rank':>4}  {'id':<{width}}  {'score':>6}  label")
    for rank, h in enumerate(hits, 1):
        print(f"{rank:>4}  {h.id:<{width}}  {h.score:>6.3f}  {h.label_name or '-'}")


def _serve(config, args) -> None:
    require_extra("web", "galaxalign serve", "uvicorn")
    import uvicorn

    from galaxalign.web import create_app

    # Loads index and run now: a bad folder fails before the server starts.
    app = create_app(config.index, config.run, device=config.device, verify=config.verify or "sample")
    print(f"serving {config.index} on http://{config.host}:{config.port}/ (API docs at /docs)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


def _benchmark(config, args) -> None:
    from galaxalign.jobs.benchmark import run_benchmark

    run_benchmark(config)
    print((Path(config.out) / "results.md").read_text())
    print(f"results in {config.out}/results.md and results.json")


def _demo(config, args) -> None:
    from galaxalign.jobs.demo import run_demo
    from galaxalign.report.build import serve_command

    result = run_demo(config)
    print(f"\nreport: {result.report}  ({result.seconds / 60:.1f} min)")
    for method, accuracy in result.accuracy.items():
        print(f"  {method:<11} test accuracy {accuracy:.3f}   mAP@10 {result.map_at_10[method]:.3f}")
    print(f"search it in a browser: {serve_command(Path(config.out))}")


def _train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out exactly")
    parser.add_argument(
        "--pause-after-steps",
        type=int,
        default=0,
        metavar="N",
        help="checkpoint and stop after N optimiser steps in all (for time-limited cluster jobs); --resume continues",
    )


def _synth_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output .h5 file")


@dataclass(frozen=True)
class Command:
    help: str
    config: str  # "module:Class" of the typed config its flags mirror
    run: Callable[[object, argparse.Namespace], None]
    progress: bool = True  # has a progress bar, so takes --quiet
    extra: Callable[[argparse.ArgumentParser], None] | None = None  # flags about the command, not the config
    optional: tuple[str, ...] = ()  # config fields whose flags may be left out


COMMANDS: dict[str, Command] = {
    "symbols": Command(
        "draw each class's schematic symbol (PNG, SVG) and a gallery",
        "galaxalign.symbols:SymbolSetConfig",
        _symbols,
        progress=False,
    ),
    "synth": Command(
        "render the Galaxy10-Sim dataset to a Galaxy10-layout HDF5 file",
        "galaxalign.synth:SynthConfig",
        _synth,
        extra=_synth_flags,
    ),
    "download": Command(
        "fetch a public dataset (Galaxy10 DECaLS) and verify its checksum",
        "galaxalign.data.download:DownloadConfig",
        _download,
    ),
    "convert": Command(
        "rewrite a Galaxy10-layout h5 with one image per chunk and fast (or no) compression",
        "galaxalign.data.convert:ConvertConfig",
        _convert,
    ),
    "train": Command(
        "fine-tune a backbone with one method: supervised, clip, galaxalign, ... (--method lists them all)",
        "galaxalign.run_config:TrainConfig",
        _train,
        extra=_train_flags,
        optional=("data",),
    ),
    "classify": Command(
        "classify PNG/JPEG/FITS galaxy images with a trained run",
        "galaxalign.runs:ClassifyConfig",
        _classify,
        progress=False,
    ),
    "evaluate": Command(
        "classification and retrieval metrics of a run on its own split",
        "galaxalign.evaluation.evaluate:EvaluateConfig",
        _evaluate,
    ),
    "index": Command(
        "embed a catalogue with a run into a similarity-search index folder",
        "galaxalign.search.index:IndexConfig",
        _index,
    ),
    "embed": Command(
        "embed a catalogue's input shards into embedding shards (resumable; torchrun splits the shards)",
        "galaxalign.jobs.embed:EmbedConfig",
        _embed,
    ),
    "search": Command(
        "find galaxies like an image, an indexed galaxy, words, a class symbol or a sketch",
        "galaxalign.search.query:SearchConfig",
        _search,
        progress=False,
    ),
    "serve": Command(
        "serve the galaxy search web page and its JSON API for an index",
        "galaxalign.web.app:ServeConfig",
        _serve,
        progress=False,
    ),
    "benchmark": Command(
        "every method on one split and backbone: the results table",
        "galaxalign.jobs.config:BenchmarkConfig",
        _benchmark,
    ),
    "demo": Command(
        "the main job: render data, fine-tune, evaluate, index, and write report.html",
        "galaxalign.jobs.config:DemoConfig",
        _demo,
    ),
}


def _config_class(command: Command):
    module, name = command.config.split(":")
    return getattr(importlib.import_module(module), name)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand's flags are built (its config alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="galaxalign",
        description="Galaxy morphology classification and similarity search with images, schematic symbols and text.",
    )
    parser.add_argument("--version", action="version", version=f"galaxalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if only not in (None, name):
            continue
        try:
            config_class = _config_class(command)
        except MissingExtraError:
            if only == name:
                raise
            continue  # listed in `galaxalign --help`; its flags need its extra
        add_config_arguments(p, config_class, optional=command.optional)
        if command.extra:
            command.extra(p)
        if command.progress:
            p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines (warnings still)")
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    chosen = next((a for a in argv if a in COMMANDS), None)
    return build_parser(only=chosen).parse_args(argv)


def _config(command: Command, args: argparse.Namespace):
    cls = _config_class(command)
    if args.command == "train":
        if args.resume:  # the run's own config.json is used
            from galaxalign.run_config import TrainConfig

            return TrainConfig(data=args.data or "", out=args.out)
        if not args.data:
            raise GalaxAlignError("train: --data is required (unless --resume)")
    return config_from_args(cls, args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--"]:  # `torchrun -m galaxalign -- embed ...`, where a Python keeps the "--"
        argv = argv[1:]
    try:
        args = _parse(argv)  # a command whose extra is missing fails here, naming the extra
        command = COMMANDS[args.command]
        # The one switch for bars and progress lines; a command without --quiet has neither.
        set_quiet(args.quiet if command.progress else True)
        command.run(_config(command, args), args)
    except GalaxAlignError as exc:
        print(f"galaxalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("galaxalign: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
