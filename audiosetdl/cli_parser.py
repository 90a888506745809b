"""The `audiosetdl` command line: every command's arguments and help, declared here once.

`build_parser` makes the argparse parser; the options of each stage come from their dataclasses
(`audiosetdl.config.add_options`), so flags, YAML sections and `configs/default.yaml` agree.
`audiosetdl.cli` dispatches the parsed command (its `args.command`) to one handler.
"""

from __future__ import annotations

import argparse

from audiosetdl import __version__, config
from audiosetdl.config import (MODELS, DownloadOptions, EmbedOptions, EvaluateOptions, ExtractOptions, LabelOptions,
                               PlanOptions, SlurmOptions, TrainOptions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiosetdl",
        description="AudioSet segment lists -> exact 16 kHz clips -> reference-exact VGGish and YAMNet embeddings "
                    "-> AudioSet labels, on one machine or a SLURM cluster; and the same for your own audio.",
    )
    parser.add_argument("--version", action="version", version=f"audiosetdl {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML file of options (see configs/default.yaml); flags win")
    common.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging verbosity (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stage_commands(sub, common)
    _model_commands(sub, common)
    _classifier_commands(sub, common)
    _metadata_commands(sub, common)
    _cluster_commands(sub, common)
    return parser


def _stage_commands(sub, common: argparse.ArgumentParser) -> None:
    """plan, download, extract, run."""

    p = sub.add_parser("plan", parents=[common], help="shard segment CSVs into a run directory of tasks",
                       description="Read AudioSet segment CSVs, select classes, and shard the segments into "
                                   "tasks whose output keys (subset, 2-character ID prefix) never overlap.")
    p.add_argument("csv", nargs="+", help="AudioSet segment CSV(s), e.g. eval_segments.csv")
    p.add_argument("--out", "-o", required=True, metavar="RUN", help="run directory to create")
    config.add_options(p, PlanOptions)

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

    p = sub.add_parser("extract", parents=[common, one_task],
                       help="VGGish (or YAMNet) embeddings of a plan's clips, as TFRecords",
                       description="Embed each task's clips with VGGish (official checkpoint, PCA and 8-bit "
                                   "quantization as released) into RUN/embeddings/<subset>/<XX>.tfrecord, or with "
                                   "--model yamnet into RUN/yamnet/<subset>/<XX>.tfrecord (1024-d embeddings and 521 "
                                   "class scores every 0.48 s). Reruns skip keys whose clips are unchanged.")
    config.add_options(p, ExtractOptions)

    p = sub.add_parser("run", parents=[common], help="plan, download and extract on this machine (resumable)",
                       description="The whole job on the local machine: plan the CSVs into RUN (or reuse the "
                                   "identical plan there), then download and extract task after task. Ctrl-C stops "
                                   "cleanly; the same command resumes.")
    p.add_argument("csv", nargs="+", help="AudioSet segment CSV(s)")
    p.add_argument("--out", "-o", required=True, metavar="RUN", help="run directory")
    p.add_argument("--stages", default="download,extract", help="stages to run, in order (default: download,extract)")
    for cls in (PlanOptions, DownloadOptions, ExtractOptions):
        config.add_options(p, cls)



def _model_commands(sub, common: argparse.ArgumentParser) -> None:
    """embed, label, fetch-models, smoke-test."""
    p = sub.add_parser("embed", parents=[common], help="embed audio or video files into sharded TFRecords/npz/parquet",
                       description="Decode audio or video files with ffmpeg (16 kHz mono, soxr) a window at a time, "
                                   "embed them with VGGish (or --model yamnet) on batches spanning files, and write "
                                   "one record per file (video_id = its path relative to the inputs' common "
                                   "directory) into OUT/shard-NNNNN.* with OUT/_manifest.json. Reruns skip files "
                                   "already embedded. Exit status 1 when some file failed (listed at the end).")
    p.add_argument("audio", nargs="*", help="audio or video files, or directories (searched recursively, see --glob)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (shards, _inputs/ and _manifest.json)")
    config.add_options(p, ExtractOptions)
    config.add_options(p, EmbedOptions)

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

    p = sub.add_parser("smoke-test", parents=[common, model_choice],
                       help="check the VGGish (or YAMNet) install like the reference's own test",
                       description="VGGish: 3 s of a 1 kHz sine -> 3 examples -> embeddings whose statistics must "
                                   "match the official checkpoint's within 10%%. YAMNet (--model yamnet): 3 s of "
                                   "zeros, noise and a 440 Hz sine -> 6 patches each, with Silence, White noise and "
                                   "Sine wave in the top 10 classes. Prints 'Looks Good To Me' on success.")
    p.add_argument("--models", metavar="DIR", help="models directory (default: $AUDIOSETDL_MODELS, else "
                                                     "~/.cache/audiosetdl/models)")
    p.add_argument("--device", help="TensorFlow device (default: the first GPU, else the CPU)")



def _classifier_commands(sub, common: argparse.ArgumentParser) -> None:
    """train, evaluate."""
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

    p = sub.add_parser("evaluate", parents=[common], help="mAP, mean AUC and d' of a trained model on TFRecords",
                       description="Score AudioSet-schema TFRecords (e.g. the released eval set) with a model "
                                   "directory from `audiosetdl train`; write metrics.json, a per-class CSV, a per-class "
                                   "AP plot and optionally every record's scores.")
    p.add_argument("model", metavar="MODEL_DIR", help="model directory written by `audiosetdl train`")
    p.add_argument("tfrecords", nargs="+", metavar="TFRECORD", help="TFRecord files or directories of *.tfrecord")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="directory for metrics.json, CSV and plot")
    config.add_options(p, EvaluateOptions)



def _metadata_commands(sub, common: argparse.ArgumentParser) -> None:
    """split, fetch-metadata, config."""
    p = sub.add_parser("split", parents=[common], help="split a CSV into N parts (marl/audiosetdl's --split)",
                       description="Split a segment CSV into N files NAME.01, NAME.02, ... each with the header, "
                                   "as marl/audiosetdl's download_subset_files.sh --split N did.")
    p.add_argument("csv", help="segment CSV to split")
    p.add_argument("--split", type=int, required=True, metavar="N", help="number of parts")
    p.add_argument("--out", metavar="DIR", help="directory for the parts (default: beside the CSV)")

    p = sub.add_parser("fetch-metadata", parents=[common], help="download the AudioSet CSVs, class index and ontology",
                       description="Download eval/balanced/unbalanced segment CSVs, class_labels_indices.csv and "
                                   "ontology.json from their public URLs, resuming partial downloads and checking "
                                   "each file (row counts, checksums).")
    p.add_argument("dir", help="directory to download into")
    p.add_argument("--mirror", metavar="URL", help="fetch every file from URL/<name> instead (a local mirror)")
    p.add_argument("--no-unbalanced", action="store_true", help="skip the 2-million-row unbalanced list")

    p = sub.add_parser("config", parents=[common], help="print every option with its default, as YAML")



def _cluster_commands(sub, common: argparse.ArgumentParser) -> None:
    """submit, status."""
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

    p = sub.add_parser("status", parents=[common], help="progress of a run: outcomes, throughput, keys, SLURM jobs",
                       description="Per-task progress read from the run directory (done / failed by reason / "
                                   "pending, clips per hour, extract keys written) and, for submitted runs, the "
                                   "SLURM states of their jobs (sacct, else squeue).")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--json", action="store_true", help="print the status as JSON (schema: slurm/README.md)")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="repeat every SECONDS until every task is done or no job of the run is left in SLURM")
    p.add_argument("--plot", metavar="FILE.png", help="also draw outcomes by reason and throughput over time")
    p.add_argument("--model", choices=MODELS, default="vggish",
                   help="whose extract output to count: vggish (RUN/embeddings/) or yamnet (RUN/yamnet/)")
