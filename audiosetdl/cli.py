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
from audiosetdl.backends.local import run_tasks, task_indices
from audiosetdl.config import ConfigError, DownloadOptions, PlanOptions, options_from
from audiosetdl.fetch import FetchError, fetch_metadata
from audiosetdl.metadata.ontology import ClassSelectionError
from audiosetdl.metadata.segments import SegmentFormatError
from audiosetdl.plan import PlanError, build_plan, describe, split_csv, write_plan
from audiosetdl.rundir import RunDir
from audiosetdl.status import outcome_table, run_status

log = logging.getLogger("audiosetdl")

# Exceptions that mean "your input is wrong", shown without a traceback.
USER_ERRORS = (ConfigError, PlanError, SegmentFormatError, ClassSelectionError, FetchError, FileNotFoundError)


def cmd_plan(args: argparse.Namespace, cfg: dict) -> int:
    options = options_from(PlanOptions, args, cfg)
    run = RunDir(args.out)
    planned = build_plan(args.csv, options)
    outcome = write_plan(run, planned, force=options.force)
    print("\n".join(describe(planned, run, outcome)))
    return 0


def cmd_download(args: argparse.Namespace, cfg: dict) -> int:
    from audiosetdl.download.stage import run_task

    options = options_from(DownloadOptions, args, cfg)
    run = RunDir(args.run)
    indices = task_indices(run, args.task, args.all)
    summaries = run_tasks(run_task, run, indices, options, should_stop=lambda s: s.stopped is not None)
    print("\n".join(outcome_table(run_status(run, indices))))
    stopped = [s for s in summaries if s.stopped]
    if stopped:
        print(f"stopped ({stopped[0].stopped}) in task {stopped[0].index:05d}: run the same command again to resume",
              file=sys.stderr)
        return 130 if stopped[0].stopped == "interrupted" else 3
    return 0


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

    p = sub.add_parser("download", parents=[common], help="download a plan's clips (one task, or all locally)",
                       description="Fetch each segment's 10 s of audio with yt-dlp + ffmpeg into exact 16 kHz mono "
                                   "FLAC clips, recording every attempt in RUN/status/NNNNN.jsonl. Reruns resume.")
    p.add_argument("run", metavar="RUN", help="run directory made by `audiosetdl plan`")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--task", type=int, metavar="I",
                       help="run task I only (default: $SLURM_ARRAY_TASK_ID when set, else every task in turn)")
    which.add_argument("--all", action="store_true", help="run every task in turn, even inside a SLURM job")
    config.add_options(p, DownloadOptions)
    p.set_defaults(func=cmd_download)

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
