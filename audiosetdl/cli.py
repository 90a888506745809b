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

from audiosetdl import __version__, config
from audiosetdl.backends.local import run_pipeline, task_indices
from audiosetdl.config import (ConfigError, DownloadOptions, EmbedOptions, EvaluateOptions, ExtractOptions,
                               LabelOptions, PlanOptions, TrainOptions, options_from)
from audiosetdl.fetch import FetchError, fetch_metadata
from audiosetdl.inputs import EmbedError
from audiosetdl.labels import DataError, ModelDirError
from audiosetdl.metadata.ontology import ClassSelectionError
from audiosetdl.metadata.segments import SegmentFormatError
from audiosetdl.plan import PlanError, build_plan, describe, split_csv, write_plan
from audiosetdl.rundir import RunDir
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

    result = train(args.tfrecords, args.out, options_from(TrainOptions, args, cfg), eval_sources=args.eval or ())
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

    run = RunDir(args.run)
    try:
        while True:
            doc = status.report(run)
            if args.json:
                print(json.dumps(doc, sort_keys=True, indent=None if args.watch else 2), flush=True)
            else:
                print("\n".join(status.report_lines(doc)) + ("\n" if args.watch else ""), flush=True)
            if args.plot:
                status.plot(run, doc, args.plot)
            if not args.watch or status.is_settled(doc):
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiosetdl",
        description="AudioSet segment lists -> exact 16 kHz clips -> reference-exact VGGish embeddings, "
                    "on one machine or a SLURM cluster.",
    )
    parser.add_argument("--version", action="version", version=f"audiosetdl {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML file of options (see configs/default.yaml); flags win")
    common.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging verbosity (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", parents=[common], help="shard segment CSVs into a run directory of tasks",
                       description="Read AudioSet segment CSVs, select classes, and shard the segments into "
                                   "tasks whose output keys (subset, 2-character ID prefix) never overlap.")
    p.add_argument("csv", nargs="+", help="AudioSet segment CSV(s), e.g. eval_segments.csv")
    p.add_argument("--out", "-o", required=True, metavar="RUN", help="run directory to create")
    config.add_options(p, PlanOptions)
    p.set_defaults(func=cmd_plan)

    one_task = argparse.ArgumentParser(add_help=False)  # RUN and which of its tasks
    one_task.add_argument("run", metavar="RUN", help="run directory made by `audiosetdl plan`")
    which = one_task.add_mutually_exclusive_group()
    which.add_argument("--task", type=int, metavar="I",
                       help="run task I only (default: $SLURM_ARRAY_TASK_ID when set, else every task in turn)")
    which.add_argument("--all", action="store_true", help="run every task in turn, even inside a SLURM job")

    p = sub.add_parser("download", parents=[common, one_task], help="download a plan's clips (one task, or all locally)",
                       description="Fetch each segment's 10 s of audio with yt-dlp + ffmpeg into exact 16 kHz mono "
                                   "FLAC clips, recording every attempt in RUN/status/NNNNN.jsonl. Reruns resume.")
    config.add_options(p, DownloadOptions)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("extract", parents=[common, one_task],
                       help="VGGish (or YAMNet) embeddings of a plan's clips, as TFRecords",
                       description="Embed each task's clips with VGGish (official checkpoint, PCA and 8-bit "
                                   "quantization as released) into RUN/embeddings/<subset>/<XX>.tfrecord, or with "
                                   "--model yamnet into RUN/yamnet/<subset>/<XX>.tfrecord (1024-d embeddings and 521 "
                                   "class scores every 0.48 s). Reruns skip keys whose clips are unchanged.")
    config.add_options(p, ExtractOptions)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("run", parents=[common], help="plan, download and extract on this machine (resumable)",
                       description="The whole job on the local machine: plan the CSVs into RUN (or reuse the "
                                   "identical plan there), then download and extract task after task. Ctrl-C stops "
                                   "cleanly; the same command resumes.")
    p.add_argument("csv", nargs="+", help="AudioSet segment CSV(s)")
    p.add_argument("--out", "-o", required=True, metavar="RUN", help="run directory")
    p.add_argument("--stages", default="download,extract", help="stages to run, in order (default: download,extract)")
    for cls in (PlanOptions, DownloadOptions, ExtractOptions):
        config.add_options(p, cls)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("embed", parents=[common], help="embed audio or video files into sharded TFRecords/npz/parquet",
                       description="Decode audio or video files with ffmpeg (16 kHz mono, soxr) a window at a time, "
                                   "embed them with VGGish (or --model yamnet) on batches spanning files, and write "
                                   "one record per file (video_id = its path relative to the inputs' common "
                                   "directory) into OUT/shard-NNNNN.* with OUT/manifest.json. Reruns skip files "
                                   "already embedded. Exit status 1 when some file failed (listed at the end).")
    p.add_argument("audio", nargs="*", help="audio or video files, or directories (searched recursively, see --glob)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (shards and manifest.json)")
    config.add_options(p, ExtractOptions)
    config.add_options(p, EmbedOptions)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("train", parents=[common], help="train a classifier on VGGish embedding TFRecords",
                       description="Fit a classifier (Kong 2018 decision-level or Yu 2018 multi-level attention over "
                                   "per-frame layers) on AudioSet-schema TFRecords (Google's bal_train/unbal_train or "
                                   "this tool's output) and save a model directory: weights, label index, config and "
                                   "a model card.")
    p.add_argument("tfrecords", nargs="+", metavar="TFRECORD", help="TFRecord files or directories of *.tfrecord")
    p.add_argument("--out", "-o", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument("--eval", action="append", metavar="TFRECORD",
                   help="also score these records once at the end, for the model card (repeatable; not used for "
                        "model selection)")
    config.add_options(p, TrainOptions)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="mAP, mean AUC and d' of a trained model on TFRecords",
                       description="Score AudioSet-schema TFRecords (e.g. the released eval set) with a model "
                                   "directory from `audiosetdl train`; write metrics.json, a per-class CSV, a per-class "
                                   "AP plot and optionally every record's scores.")
    p.add_argument("model", metavar="MODEL_DIR", help="model directory written by `audiosetdl train`")
    p.add_argument("tfrecords", nargs="+", metavar="TFRECORD", help="TFRecord files or directories of *.tfrecord")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="directory for metrics.json, CSV and plot")
    config.add_options(p, EvaluateOptions)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("label", parents=[common], help="AudioSet classes of audio files: top-k and per-frame scores",
                       description="Score audio or video files with YAMNet's own classes (--model yamnet) or a "
                                   "classifier trained by `audiosetdl train` on VGGish embeddings (--model vggish "
                                   "--classifier DIR), on embed's pipeline. Prints each file's best classes; "
                                   "--json, --csv and --plot write them (schemas in the README). Exit status 1 "
                                   "when some file failed.")
    p.add_argument("audio", nargs="*", help="audio or video files, or directories (searched recursively, see --glob)")
    p.add_argument("--json", metavar="FILE.json", help="write model, categories, per-file predictions and per-frame "
                                                       "scores as JSON")
    p.add_argument("--csv", metavar="FILE.csv", help="write one row per prediction: id, path, rank, mid, name, score")
    p.add_argument("--plot", metavar="FILE.png", help="draw the first file's best classes over time as a heat map")
    config.add_options(p, ExtractOptions)
    config.add_options(p, EmbedOptions)
    config.add_options(p, LabelOptions)
    p.set_defaults(func=cmd_label)

    model_choice = argparse.ArgumentParser(add_help=False)
    model_choice.add_argument("--model", choices=config.MODELS, default="vggish",
                              help="which model's files: vggish or yamnet (default: vggish)")
    p = sub.add_parser("fetch-models", parents=[common, model_choice],
                       help="download the official VGGish (or YAMNet) model files",
                       description="Download vggish_model.ckpt and vggish_pca_params.npz from Google's bucket, or "
                                   "with --model yamnet yamnet.h5 (Google's bucket) and yamnet_class_map.csv (the "
                                   "tensorflow/models repository); resumable. Point --models (or AUDIOSETDL_MODELS) "
                                   "at DIR afterwards.")
    p.add_argument("dir", nargs="?", help="directory (default: $AUDIOSETDL_MODELS, else ~/.cache/audiosetdl/models)")
    p.set_defaults(func=cmd_fetch_models)

    p = sub.add_parser("smoke-test", parents=[common, model_choice],
                       help="check the VGGish (or YAMNet) install like the reference's own test",
                       description="VGGish: 3 s of a 1 kHz sine -> 3 examples -> embeddings whose statistics must "
                                   "match the official checkpoint's within 10%%. YAMNet (--model yamnet): 3 s of "
                                   "zeros, noise and a 440 Hz sine -> 6 patches each, with Silence, White noise and "
                                   "Sine wave in the top 10 classes. Prints 'Looks Good To Me' on success.")
    p.add_argument("--models", metavar="DIR", help="models directory (default: $AUDIOSETDL_MODELS, else "
                                                     "~/.cache/audiosetdl/models)")
    p.add_argument("--device", help="TensorFlow device (default: the first GPU, else the CPU)")
    p.set_defaults(func=cmd_smoke_test)

    p = sub.add_parser("split", parents=[common], help="split a CSV into N parts (marl/audiosetdl's --split)",
                       description="Split a segment CSV into N files NAME.01, NAME.02, ... each with the header, "
                                   "as marl/audiosetdl's download_subset_files.sh --split N did.")
    p.add_argument("csv", help="segment CSV to split")
    p.add_argument("--split", type=int, required=True, metavar="N", help="number of parts")
    p.add_argument("--out", metavar="DIR", help="directory for the parts (default: beside the CSV)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("fetch-metadata", parents=[common], help="download the AudioSet CSVs, class index and ontology",
                       description="Download eval/balanced/unbalanced segment CSVs, class_labels_indices.csv and "
                                   "ontology.json from their public URLs, resuming partial downloads and checking "
                                   "each file (row counts, checksums).")
    p.add_argument("dir", help="directory to download into")
    p.add_argument("--mirror", metavar="URL", help="fetch every file from URL/<name> instead (a local mirror)")
    p.add_argument("--no-unbalanced", action="store_true", help="skip the 2-million-row unbalanced list")
    p.set_defaults(func=cmd_fetch_metadata)

    p = sub.add_parser("config", parents=[common], help="print every option with its default, as YAML")
    p.set_defaults(func=cmd_config)

    from audiosetdl.config import SlurmOptions

    p = sub.add_parser("submit", parents=[common], help="run the stages as SLURM job arrays (one array task per task)",
                       description="Submit a download job array and an extract job array (through submitit) whose "
                                   "task i starts when download task i is done (--dependency=aftercorr). Logs and "
                                   "job IDs go to RUN/slurm/ (jobs.json). --resume submits only the tasks the run "
                                   "directory shows unfinished.")
    p.add_argument("run", metavar="RUN", help="run directory made by `audiosetdl plan`")
    p.add_argument("--resume", action="store_true",
                   help="submit only unfinished tasks (from the run directory, not SLURM's memory); tasks stopped by "
                        "YouTube's rate limit start after --rate-limited-delay")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch scripts instead of submitting")
    for cls in (SlurmOptions, DownloadOptions, ExtractOptions):
        config.add_options(p, cls)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="progress of a run: outcomes, throughput, keys, SLURM jobs",
                       description="Per-task progress read from the run directory (done / failed by reason / "
                                   "pending, clips per hour, extract keys written) and, for submitted runs, the "
                                   "SLURM states of their jobs (sacct, else squeue).")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--json", action="store_true", help="print the status as JSON (schema: slurm/README.md)")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="repeat every SECONDS until every task is done or no job of the run is left in SLURM")
    p.add_argument("--plot", metavar="FILE.png", help="also draw outcomes by reason and throughput over time")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config.load_config(args.config)
        return args.func(args, cfg)
    except USER_ERRORS as exc:
        print(f"audiosetdl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiosetdl {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
