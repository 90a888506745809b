"""The `audiosetdl` command: argument parsing, config merge, and one call into a stage or backend.

No logic lives here: each command builds its typed options (`audiosetdl.config`) and hands
them to the module that owns the work. Errors the user can fix are printed as one clear line
(exit status 2); everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiosetdl import config
from audiosetdl.backends.local import run_pipeline, task_indices
from audiosetdl.cli_parser import build_parser
from audiosetdl.config import (ConfigError, DownloadOptions, EmbedOptions, EvaluateOptions, ExtractOptions,
                               LabelOptions, PlanOptions, TrainOptions, options_from)
from audiosetdl.fetch import FetchError, fetch_metadata
from audiosetdl.inputs import EmbedError
from audiosetdl.labels import DataError, ModelDirError
from audiosetdl.metadata.ontology import ClassSelectionError
from audiosetdl.metadata.segments import SegmentFormatError
from audiosetdl.plan import PlanError, write_plan
from audiosetdl.planner import build_plan, describe
from audiosetdl.rundir import RunDir
from audiosetdl.split import split_csv
from audiosetdl.vggish.modelfiles import CheckpointError
from audiosetdl.vggish.postprocess import PCAParamsError
from audiosetdl.yamnet.classmap import ClassMapError
from audiosetdl.yamnet.weightsfile import WeightsError
from audiosetdl.status import outcome_table, run_status

log = logging.getLogger("audiosetdl")

# Exceptions that mean "your input is wrong", shown without a traceback.
USER_ERRORS = (ConfigError, EmbedError, PlanError, SegmentFormatError, ClassSelectionError, FetchError,
               FileNotFoundError, CheckpointError, PCAParamsError, WeightsError, ClassMapError, DataError,
               ModelDirError)


def cmd_plan(args: argparse.Namespace, cfg: dict) -> int:
    options = options_from(PlanOptions, args, cfg)
    run = RunDir(args.out)
    planned = build_plan(args.csv, options)
    outcome = write_plan(run, planned, force=options.force)
    print("\n".join(describe(planned, run, outcome)))
    return 0


def cmd_download(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.download.stage import run_task

    run = RunDir(args.run)
    indices = task_indices(run, args.task, args.all)
    results = run_pipeline(run, [(run_task, options_from(DownloadOptions, args, cfg))], indices)
    print("\n".join(outcome_table(run_status(run, indices))))
    return _exit_status(results)


def _exit_status(results: list[list]) -> int:
    """0, or 130 (interrupted) / 3 (YouTube rate-limited) when a task stopped early, resumably."""
    stopped = [s for summaries in results for s in summaries if getattr(s, "stopped", None)]
    if not stopped:
        return 0
    print(f"stopped ({stopped[0].stopped}) in task {stopped[0].index:05d}: run the same command again to resume",
          file=sys.stderr)
    return 130 if stopped[0].stopped == "interrupted" else 3


def cmd_extract(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.extract import run_task

    options = options_from(ExtractOptions, args, cfg)
    run = RunDir(args.run)
    summaries = [s for task in run_pipeline(run, [(run_task, options)], task_indices(run, args.task, args.all))
                 for s in task]
    print(f"keys written {sum(s.keys_written for s in summaries)}, unchanged {sum(s.keys_unchanged for s in summaries)}; "
          f"clips {sum(s.clips for s in summaries)}, examples {sum(s.examples for s in summaries)}, "
          f"too short {sum(s.too_short for s in summaries)}")
    return 0


def cmd_embed(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.embed import embed_paths, summary_lines

    summary = embed_paths(args.audio, args.out, options_from(ExtractOptions, args, cfg),
                          options_from(EmbedOptions, args, cfg))
    print("\n".join(summary_lines(summary, args.out)))
    return summary.exit_status


def cmd_label(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.labels.label import label_paths, summary_lines, write_csv, write_json
    from audiosetdl.labels.plot import plot_file

    labels = label_paths(args.audio, options_from(ExtractOptions, args, cfg), options_from(EmbedOptions, args, cfg),
                         options_from(LabelOptions, args, cfg))
    print("\n".join(summary_lines(labels)))
    if args.json:
        write_json(labels, args.json)
    if args.csv:
        write_csv(labels, args.csv)
    labelled = [f for f in labels.files if f.error is None]
    if args.plot and labelled:
        plot_file(labels, labelled[0], args.plot)
    return 1 if labels.failed else 0


def cmd_run(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.download.stage import run_task as download_task
    from audiosetdl.extract import check_extractable, check_model_files, run_task as extract_task

    plan_options = options_from(PlanOptions, args, cfg)
    extract_options = options_from(ExtractOptions, args, cfg)
    stages = [("download", download_task, options_from(DownloadOptions, args, cfg)),
              ("extract", extract_task, extract_options)]
    chosen = args.stages.split(",")
    unknown = set(chosen) - {name for name, _, _ in stages}
    if unknown:
        raise PlanError(f"--stages: unknown stage(s) {', '.join(sorted(unknown))} (choose from download, extract)")
    if "extract" in chosen:
        check_model_files(extract_options)  # fail now, not after hours of downloading
    run = RunDir(args.out)
    planned = build_plan(args.csv, plan_options)
    outcome = write_plan(run, planned, force=plan_options.force)
    print("\n".join(describe(planned, run, outcome)))
    if "extract" in chosen:
        check_extractable(run, extract_options)
    results = run_pipeline(run, [(fn, opts) for name, fn, opts in stages if name in chosen],
                           list(range(len(planned.plan.tasks))))
    print("\n".join(outcome_table(run_status(run))))
    return _exit_status(results)


def cmd_train(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.labels.train import train

    result = train(args.tfrecords, args.out, options_from(TrainOptions, args, cfg), eval_sources=args.eval or (),
                   progress=True)
    print(f"model written to {result.directory} ({result.seconds:.0f} s of training)")
    for title, figures in (("held-out", result.holdout), ("eval", result.evaluation)):
        if figures is not None:
            print(f"{title}: mAP {figures.mean_ap:.4f}, mean AUC {figures.mean_auc:.4f}, d' {figures.d_prime:.3f}")
    return 0


def cmd_evaluate(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.labels.evaluate import evaluate, report_lines

    evaluation = evaluate(args.model, args.tfrecords, args.out, options_from(EvaluateOptions, args, cfg))
    print("\n".join(report_lines(evaluation)))
    return 0


def cmd_fetch_models(args: argparse.Namespace, cfg: dict) -> int:
    if args.model == "yamnet":
        from audiosetdl.yamnet.modelfiles import fetch_models

        files = fetch_models(args.dir)
        print(f"{files.weights}\n{files.class_map}")
        return 0
    from audiosetdl.vggish.modelfiles import fetch_models

    files = fetch_models(args.dir)
    print(f"{files.checkpoint}\n{files.pca_params}")
    return 0


def cmd_smoke_test(args: argparse.Namespace, cfg: dict) -> int:
    if args.model == "yamnet":
        from audiosetdl.yamnet.smoke import smoke_test
    else:
        from audiosetdl.vggish.smoke import smoke_test

    ok, report = smoke_test(args.models, device=args.device)
    print(report)
    return 0 if ok else 1


def cmd_split(args: argparse.Namespace, cfg: dict) -> int:
    for path in split_csv(args.csv, args.split, args.out):
        print(path)
    return 0


def cmd_fetch_metadata(args: argparse.Namespace, cfg: dict) -> int:
    results = fetch_metadata(Path(args.dir), mirror=args.mirror, include_unbalanced=not args.no_unbalanced)
    for name, what in results:
        print(f"{name}: {what}")
    return 0


def cmd_config(args: argparse.Namespace, cfg: dict) -> int:
    sys.stdout.write(config.render_default_config())
    return 0


def cmd_submit(args: argparse.Namespace, cfg: dict) -> int:
    import dataclasses

    from audiosetdl.backends.slurm import submit
    from audiosetdl.config import SlurmOptions

    slurm = options_from(SlurmOptions, args, cfg)
    download = options_from(DownloadOptions, args, cfg)
    if args.workers is None and "workers" not in cfg.get("download", {}):
        download = dataclasses.replace(download, workers=slurm.cpus_per_task)  # one worker per CPU of the task
    extract = options_from(ExtractOptions, args, cfg)
    if "extract" in ",".join(slurm.stages) and not args.dry_run:
        from audiosetdl.extract import check_extractable

        check_extractable(RunDir(args.run), extract)  # fail now, not in every array task
    submit(RunDir(args.run), slurm.stages, slurm, download, extract, resume=args.resume, dry_run=args.dry_run)
    return 0


def cmd_status(args: argparse.Namespace, cfg: dict) -> int:
    import json
    import time

    from audiosetdl import status
    from audiosetdl.status_plot import plot

    run = RunDir(args.run)
    try:
        while True:
            doc = status.report(run, model=args.model)
            if args.json:
                print(json.dumps(doc, sort_keys=True, indent=None if args.watch else 2), flush=True)
            else:
                print("\n".join(status.report_lines(doc)) + ("\n" if args.watch else ""), flush=True)
            if args.plot:
                plot(run, doc, args.plot)
            if not args.watch or status.is_settled(doc):
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


COMMANDS = {
    "plan": cmd_plan,
    "download": cmd_download,
    "extract": cmd_extract,
    "run": cmd_run,
    "embed": cmd_embed,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "label": cmd_label,
    "fetch-models": cmd_fetch_models,
    "smoke-test": cmd_smoke_test,
    "split": cmd_split,
    "fetch-metadata": cmd_fetch_metadata,
    "config": cmd_config,
    "submit": cmd_submit,
    "status": cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config.load_config(args.config)
        return COMMANDS[args.command](args, cfg)
    except USER_ERRORS as exc:
        print(f"audiosetdl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiosetdl {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
