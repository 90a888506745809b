"""Typed options: each option is declared once, here, as a dataclass field with its default and help.

From these declarations come the CLI flags (`add_options`), the YAML sections of `--config FILE`
(`load_config`), and the shipped `configs/default.yaml` (`render_default_config`; a test
checks the shipped file against it). Precedence: command-line flag > YAML value > default.
How a declaration becomes a flag or a config key is `audiosetdl.optionspec`'s.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

from audiosetdl.optionspec import ConfigError, add_options, option, options_from, parse_config, render_config
from audiosetdl.precision import DEFAULT_PRECISION, PRECISIONS
from audiosetdl.rundir import EMBEDDINGS_DIRS
from audiosetdl.vggish.params import DEFAULT_BATCH_SIZE
from audiosetdl.yamnet.params import OUTPUT_DTYPES as YAMNET_DTYPES

MODELS = tuple(EMBEDDINGS_DIRS)  # the embedding models, by name: vggish, yamnet

# yt-dlp's own clients first ("default": its _DEFAULT_CLIENTS, tv_samsung, visionos and web in
# 2026.10.26), then clients that need no PO token (field notes): web_safari for its HLS formats,
# tv (none; DRM without cookies, sometimes SABR-only), web_embedded (embeddable videos only).
DEFAULT_PLAYER_CLIENTS = ("default", "web_safari", "tv", "web_embedded")
RATE_WINDOW_S = 3600.0  # the egress budget's window: --max-rate is videos per hour (audiosetdl.download.pacing)


@dataclass(frozen=True)
class PlanOptions:
    """How segment CSVs become a run directory of tasks."""

    SECTION: typing.ClassVar[str] = "plan"

    tasks: int = option(1, "number of tasks to shard the segments into (the SLURM array size)", short="-n")
    classes: tuple[str, ...] = option((), "keep only segments with one of these classes (display names or MIDs, "
                                          "case-insensitive); empty keeps every segment", metavar="CLASS")
    exclude_classes: tuple[str, ...] = option((), "drop segments carrying any of these classes", metavar="CLASS")
    with_descendants: bool = option(False, "expand --classes and --exclude-classes through the ontology's children")
    limit: int = option(0, "keep only the first K segments after class selection (0: all)", metavar="K")
    skip_bad_rows: bool = option(False, "skip malformed CSV rows (counted in the plan's summary) instead of failing")
    metadata: str | None = option(None, "directory holding class_labels_indices.csv and ontology.json "
                                        "(default: the first CSV's directory)", metavar="DIR")
    labels: bool = option(True, "write each record's class labels, which needs class_labels_indices.csv (see "
                                "--metadata; plan refuses without it); --no-labels plans without it and "
                                "extract writes records without labels")
    force: bool = option(False, "replace an existing, different plan (finished work of unchanged keys stays usable)")


@dataclass(frozen=True)
class DownloadOptions:
    """How a task's segments become 16 kHz clips: workers, retries, pacing, yt-dlp settings."""

    SECTION: typing.ClassVar[str] = "download"

    workers: int = option(4, "download worker processes per task (each holds one long-lived yt-dlp instance)",
                          short="-w")
    retries: int = option(3, "retries of a transient failure (exponential backoff with jitter)")
    retry_permanent: bool = option(False, "also retry segments whose last failure was permanent (private, removed, ...)")
    retry_failed: bool = option(False, "also retry exhausted segments (the same transient failure, e.g. decode_error, "
                                       "after --retries attempts in each of two runs)")
    max_rate: float = option(300.0, "videos per hour (per --rate-window) per egress identity (the direct address, "
                                    "or each --proxy), for the whole run: every task, on every node sharing RUN "
                                    "(yt-dlp's maintainers document ~300/h for guest sessions); a retry or a "
                                    "re-resolve of a video counts again; 0: no limit")
    rate_window: float = option(RATE_WINDOW_S, "seconds over which --max-rate counts (3600: videos per hour; "
                                               "shorter only for tests and trials)", metavar="SECONDS")
    cooldown: float = option(900.0, "seconds the whole pool pauses after YouTube rate-limits or bot-checks it; "
                                    "doubles each time", metavar="SECONDS")
    max_cooldowns: int = option(3, "stop the task cleanly (resumable) after this many pool-wide pauses")
    sleep_requests: float = option(0.0, "seconds yt-dlp sleeps between its requests (yt-dlp --sleep-requests)",
                                   metavar="SECONDS")
    url_template: str = option("https://www.youtube.com/watch?v={ytid}", "source URL of a video; {ytid} is replaced",
                               metavar="TEMPLATE")
    cookies: str | None = option(None, "Netscape cookies file for yt-dlp (risks the account: see README)", metavar="FILE")
    proxy: tuple[str, ...] = option((), "proxy URL for yt-dlp; repeat to rotate workers through several", metavar="URL")
    js_runtime: str = option("deno", "JavaScript runtime yt-dlp uses for YouTube's challenges (deno, node, bun; "
                                     "NAME:PATH for a specific binary)", metavar="NAME")
    player_clients: tuple[str, ...] = option(
        DEFAULT_PLAYER_CLIENTS, "YouTube player clients tried in turn when a clip fails in a way another client "
                                "could fix (a 403 on a media range, formats skipped for a PO token, SABR-only, no "
                                "audio format); 'default' is yt-dlp's own choice; repeat or comma-separate",
        metavar="CLIENT[,CLIENT]")
    yt_dlp_arg: tuple[str, ...] = option((), "extra yt-dlp command-line option passed through (repeatable), "
                                             "e.g. --yt-dlp-arg=--extractor-args=youtube:po_token=...",
                                         metavar="ARG")
    keep_original: bool = option(False, "also keep the untranscoded stream cut beside each clip")
    video: bool = option(False, "also keep an mp4 (video and audio) of each segment")
    timeout: float = option(30.0, "network timeout in seconds for one request", metavar="SECONDS")


@dataclass(frozen=True)
class ExtractOptions:
    """How a task's clips become VGGish (or YAMNet) embeddings in AudioSet-schema TFRecords."""

    SECTION: typing.ClassVar[str] = "extract"

    model: str = option("vggish", "embedding model: vggish (RUN/embeddings/, the released AudioSet bytes) or yamnet "
                                  "(RUN/yamnet/: 1024-d embeddings and 521 class scores every 0.48 s)",
                        choices=MODELS)
    models: str | None = option(None, "directory with the model files: vggish_model.ckpt and vggish_pca_params.npz, "
                                      "or yamnet.h5 and yamnet_class_map.csv (default: $AUDIOSETDL_MODELS, else "
                                      "~/.cache/audiosetdl/models)", metavar="DIR")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "examples (VGGish) or patches (YAMNet), 0.96 s each, per model "
                                                 "call, batched across clips")
    device: str | None = option(None, "TensorFlow device, e.g. /GPU:0 or /CPU:0 (default: the first GPU, else the CPU)")
    precision: str = option(DEFAULT_PRECISION, "model arithmetic: fp32 (exact float32 with TensorFloat-32 off, as the "
                                               "reference), tf32 (TensorFloat-32 on Ampere and newer GPUs; on a CPU "
                                               "the same as fp32) or bf16 (bfloat16 weights and activations); each "
                                               "one's agreement with fp32 is in the README", choices=PRECISIONS)
    decode_threads: int = option(2, "threads decoding clips and computing log-mel features while the model runs")
    yt8m_id: bool = option(True, "also write context 'id' (= video_id) so YouTube-8M's starter code reads the files")
    yamnet_dtype: str = option("float32", "float type of the YAMNet embeddings and scores written: float32 (what "
                                          "the network computes) or float16 (half the size)",
                               choices=tuple(YAMNET_DTYPES))


# `embed`/`label` directory inputs: files with these (case-insensitive) patterns, searched recursively.
AUDIO_GLOBS = ("*.wav", "*.flac", "*.mp3", "*.ogg", "*.opus", "*.m4a", "*.aac", "*.wma", "*.aiff", "*.aif",
               "*.webm", "*.mp4", "*.mkv", "*.mov", "*.avi")
EMBED_FORMATS = ("tfrecord", "npz", "parquet")


@dataclass(frozen=True)
class EmbedOptions:
    """How `embed` and `label` find a user's files, read them and write their embeddings."""

    SECTION: typing.ClassVar[str] = "embed"

    glob: tuple[str, ...] = option(AUDIO_GLOBS, "file name patterns picked up (case-insensitively) under directory "
                                                "inputs, searched recursively", metavar="PATTERN")
    from_list: str | None = option(None, "text file naming one input path per line (relative paths: to the file's "
                                         "directory; blank lines and lines starting with # are ignored)",
                                   metavar="FILE")
    format: str = option("tfrecord", "output format of `embed`: tfrecord (the released schema), npz or parquet "
                                     "(layouts in the README)", choices=EMBED_FORMATS)
    shard_size: int = option(1000, "records (input files) per output shard of `embed`", metavar="N")
    chunk_seconds: float = option(60.0, "decode and frame each file this many seconds at a time (long files are "
                                        "never held whole in memory)", metavar="SECONDS")


@dataclass(frozen=True)
class LabelOptions:
    """How `label` reports AudioSet classes for each file."""

    SECTION: typing.ClassVar[str] = "label"

    top: int = option(5, "report the K best classes of each file (by mean score over its frames)", metavar="K")
    threshold: float = option(0.0, "report only classes whose file score is at least this")
    classes: tuple[str, ...] = option((), "restrict to these classes (display names or MIDs, case-insensitive); "
                                          "empty: every class", metavar="CLASS")
    classifier: str | None = option(None, "with --model vggish: a classifier directory made by `audiosetdl train`",
                                    metavar="DIR")


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how `audiosetdl submit` runs the tasks on a SLURM cluster (site defaults go here)."""

    SECTION: typing.ClassVar[str] = "slurm"

    stages: tuple[str, ...] = option(("download", "extract"), "stages to submit: download, extract, or both "
                                                              "(comma-separated)", metavar="STAGE[,STAGE]")
    partition: str | None = option(None, "partition of the download array (default: the cluster's default)")
    extract_partition: str | None = option(None, "partition of the extract array (GPU nodes; default: --partition)")
    gpus_per_task: int = option(1, "GPUs per extract array task (0 for CPU-only extraction)")
    array_parallelism: int = option(0, "at most this many array tasks at once (sbatch --array=...%K; 0: no limit)",
                                    metavar="K")
    time: str = option("24:00:00", "time limit of each download array task", metavar="D-HH:MM:SS")
    extract_time: str = option("4:00:00", "time limit of each extract array task", metavar="D-HH:MM:SS")
    mem: str = option("4G", "memory of each download array task")
    extract_mem: str = option("16G", "memory of each extract array task")
    cpus_per_task: int = option(4, "CPUs of each download array task (download workers default to this)")
    extract_cpus_per_task: int = option(4, "CPUs of each extract array task")
    account: str | None = option(None, "SLURM account to charge")
    qos: str | None = option(None, "SLURM quality of service")
    constraint: str | None = option(None, "SLURM node constraint of the download array")
    extract_constraint: str | None = option(None, "SLURM node constraint of the extract array (e.g. a GPU type)")
    sbatch_arg: tuple[str, ...] = option((), "raw sbatch option added to every job, e.g. --sbatch-arg=--mail-type=END",
                                         metavar="ARG")
    rate_limited_delay: str = option("now+1hour", "sbatch --begin for tasks that stopped because YouTube "
                                                  "rate-limited them (with --resume)", metavar="TIME")


# The classifier networks (`audiosetdl.labels.model` builds them; declared here, without TensorFlow)
POOLINGS = ("feature", "attention", "multi", "recurrent", "average")


@dataclass(frozen=True)
class TrainOptions:
    """How `audiosetdl train` fits a classifier on VGGish embeddings (TFRecords in the AudioSet schema)."""

    SECTION: typing.ClassVar[str] = "train"

    class_index: str | None = option(None, "class_labels_indices.csv giving the label indices (default: the one in or "
                                           "above the first input directory)", metavar="FILE")
    pooling: tuple[str, ...] = option(
        ("feature", "attention", "multi", "recurrent"),
        "network of each ensemble member, in turn: feature (Kong 2019 feature-level attention), attention (Kong "
        "2018 decision-level attention), multi (Yu 2018 multi-level attention), recurrent (attention over a "
        "bidirectional GRU) or average (masked mean pooling); members that pool differently make different "
        "errors, so a mixed ensemble beats seeds of one network",
        choices=POOLINGS)
    hidden_units: int = option(1024, "units of each per-frame fully connected layer")
    hidden_layers: int = option(3, "per-frame fully connected layers (dense, batch norm, ReLU, dropout)")
    attention_levels: int = option(2, "multi: attention modules on this many of the last hidden layers")
    dropout: float = option(0.4, "dropout after each hidden layer")
    steps: int = option(600, "training steps (batches) per ensemble member")
    batch_size: int = option(256, "clips per training batch")
    learning_rate: float = option(3e-3, "peak learning rate of AdamW")
    lr_schedule: str = option("cosine", "learning rate over the steps: cosine (decays to 0) or constant",
                              choices=("cosine", "constant"))
    weight_decay: float = option(1e-4, "AdamW's decoupled weight decay")
    mixup: float = option(0.0, "mixup's Beta(alpha, alpha) of each clip with another of its batch (0: off)",
                          metavar="ALPHA")
    frame_dropout: float = option(0.0, "hide each real frame from the pooling with this probability in training "
                                       "(a clip keeps at least one)", metavar="RATE")
    label_smoothing: float = option(0.0, "binary label smoothing of the targets")
    balanced: bool = option(True, "class-balanced sampling (Kong 2018) instead of seeded shuffled passes")
    neighbours: int = option(100, "blend in the labels of each clip's K most similar training clips (0: off); "
                                  "kept in the model directory as neighbours.npz", metavar="K")
    neighbour_temperature: float = option(0.1, "softmax temperature of the neighbours' cosine similarities")
    neighbour_weight: float = option(0.3, "share of the neighbours' scores in the blend with the networks' average")
    learned_neighbours: int = option(100, "also blend in the labels of each clip's K most similar training clips by "
                                          "the first feature member's pooled hidden vector (0: off); kept as "
                                          "learned_neighbours.npz", metavar="K")
    learned_neighbour_weight: float = option(0.2, "share of the learned neighbours' scores in the blend (the networks "
                                                  "get what the two memories leave)")
    learned_neighbour_dims: int = option(128, "principal axes of the pooled hidden vectors the learned memory keeps "
                                              "(0: all)")
    ensemble: int = option(4, "members trained from seeds seed, seed+1, ... (networks from --pooling in turn); "
                              "their scores are averaged")
    seed: int = option(0, "seed of the data order, the held-out slice and the weights: same seed, same order")
    holdout: float = option(0.0, "fraction of the training records held out for model selection (0: none)")
    log_every: int = option(200, "log the loss (and held-out mAP) every this many steps (0: never)")
    threads: int = option(2, "TensorFlow CPU threads (0: TensorFlow's default, all cores)")
    precision: str = option(DEFAULT_PRECISION, "training arithmetic: fp32 (float32, TensorFloat-32 off), tf32 "
                                               "(TensorFloat-32 on Ampere and newer GPUs) or bf16 (Keras's "
                                               "mixed_bfloat16: 1.7-1.9x as fast on a CPU with AVX512-BF16 or "
                                               "AMX-BF16, slower where bfloat16 is emulated); the saved model and "
                                               "all scoring are float32 whatever was chosen", choices=PRECISIONS)


@dataclass(frozen=True)
class EvaluateOptions:
    """What `audiosetdl evaluate` writes beside the figures (mAP, mean AUC, d') of a model on TFRecords."""

    SECTION: typing.ClassVar[str] = "evaluate"

    per_class: str | None = option(None, "per-class CSV: index, mid, name, positives, AP, AUC (default: "
                                         "OUT/per_class.csv)", metavar="FILE.csv")
    plot: str | None = option(None, "PNG of per-class AP, sorted, naming the best and worst classes (default: "
                                    "OUT/per_class_ap.png)", metavar="FILE.png")
    scores: str | None = option(None, "also write every record's video_id, start and class scores (.npz, or "
                                      ".parquet)", metavar="FILE")
    threads: int = option(2, "TensorFlow CPU threads (0: TensorFlow's default, all cores)")


# The config file's sections, in the order configs/default.yaml lists them.
ALL_OPTION_CLASSES: list[type] = [PlanOptions, DownloadOptions, ExtractOptions, EmbedOptions, LabelOptions,
                                  SlurmOptions, TrainOptions, EvaluateOptions]


def load_config(path: str | Path | None) -> dict[str, dict]:
    """Read a YAML config of this program's sections: {section: {option: value}}."""
    return parse_config(path, ALL_OPTION_CLASSES)


def render_default_config() -> str:
    """The text of configs/default.yaml: every option, its default and its help."""
    return render_config(ALL_OPTION_CLASSES)


__all__ = ["ALL_OPTION_CLASSES", "ConfigError", "DownloadOptions", "EmbedOptions", "EvaluateOptions", "ExtractOptions",
           "LabelOptions", "PlanOptions", "SlurmOptions", "TrainOptions", "add_options", "load_config",
           "options_from", "render_default_config"]
