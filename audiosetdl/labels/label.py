"""`audiosetdl label`: AudioSet classes of a user's files, per file and per frame, on `embed`'s pipeline.

Scorers (`make_scorer`):
- `--model yamnet`: YAMNet's own 521-class head; a file's score per class is the mean of its
  frames' scores (as the reference's inference demo ranks classes); frames every 0.48 s.
- `--model vggish --classifier DIR`: a classifier made by `audiosetdl train`
  (`audiosetdl.labels.model.load_classifier(DIR).scores`): a file's scores are the
  classifier's on all its 0.96 s VGGish frames, a frame's are its scores on that frame alone.

`label_paths` returns one `FileLabels` per file; `to_json` / `write_csv` / `plot_file` write
the documented outputs (README, `audiosetdl label`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiosetdl.config import EmbedOptions, ExtractOptions, LabelOptions
from audiosetdl.embed import AudioProgress, file_inputs
from audiosetdl.extract_models import check_model_files, make_adapter
from audiosetdl.inputs import EmbedError, resolve_inputs
from audiosetdl.metadata.ontology import ClassIndex, select_classes
from audiosetdl.pipeline import run_batched
from audiosetdl.rundir import write_text_atomic
from audiosetdl.vggish.params import SAMPLE_RATE

NEEDS_CLASSIFIER = ("label --model vggish needs --classifier DIR, a classifier trained on VGGish embeddings by "
                    "`audiosetdl train`; or use --model yamnet, YAMNet's own classes (get its files with "
                    "`audiosetdl fetch-models --model yamnet`)")


@dataclass
class FileLabels:
    path: str
    id: str
    duration: float = 0.0
    clip: np.ndarray | None = None  # (C,) the file's score per category
    frames: np.ndarray | None = None  # (N, C) each frame's score per category
    error: str | None = None


@dataclass
class Labels:
    model: str
    mids: tuple[str, ...]  # the categories (columns of `clip` and `frames`)
    names: tuple[str, ...]
    hop_seconds: float
    options: LabelOptions
    files: list[FileLabels] = field(default_factory=list)
    classifier: str | None = None

    @property
    def failed(self) -> list[FileLabels]:
        return [f for f in self.files if f.error is not None]

    def predictions(self, item: FileLabels) -> list[tuple[int, float]]:
        """(category, score) of the `--top` best categories scoring at least `--threshold`, best first."""
        order = np.argsort(-item.clip, kind="stable")[: max(0, self.options.top)]
        return [(int(i), float(item.clip[i])) for i in order if item.clip[i] >= self.options.threshold]


class _YAMNetScorer:
    def __init__(self, adapter):
        from audiosetdl.yamnet.classmap import load_class_map

        self.adapter, self.classes = adapter, load_class_map(check_model_files(adapter.options, "yamnet").class_map)

    def score(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = rows[:, self.adapter.embedding_size:]
        return frames.mean(axis=0), frames


class _ClassifierScorer:
    def __init__(self, adapter, directory: str):
        try:
            from audiosetdl.labels.model import load_classifier
        except ImportError as exc:
            raise EmbedError(f"--classifier needs audiosetdl.labels (`audiosetdl train`), missing here: {exc}") from None
        self.adapter, self.classifier = adapter, load_classifier(directory)
        self.classes = self.classifier.classes

    def score(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clip = self.classifier.scores([rows])[0]
        return clip, self.classifier.scores([rows[i: i + 1] for i in range(len(rows))])


def make_scorer(options: ExtractOptions, label: LabelOptions, embedder=None):
    """The adapter (model front end and network) and scorer of `options.model`; files checked first."""
    if options.model == "vggish" and not label.classifier:
        raise EmbedError(NEEDS_CLASSIFIER)
    adapter = make_adapter(options, embedder)
    if options.model == "yamnet":
        return adapter, _YAMNetScorer(adapter)
    return adapter, _ClassifierScorer(adapter, label.classifier)


def _columns(classes, wanted: tuple[str, ...]) -> list[int]:
    if not wanted:
        return list(range(len(classes.mids)))
    index = ClassIndex(tuple(classes.mids), tuple(classes.names))
    include = select_classes(wanted, index=index, ontology=None).include
    return [i for i, mid in enumerate(classes.mids) if mid in include]


def label_paths(paths, options: ExtractOptions, embed: EmbedOptions = EmbedOptions(),
                label: LabelOptions = LabelOptions(), *, embedder=None, progress: bool = True) -> Labels:
    """Label every input (files, directories, `embed.from_list`); failures are kept with their reason."""
    inputs = resolve_inputs(paths, embed.glob, embed.from_list)
    if not inputs:
        raise EmbedError("no input files (give files, directories or --from-list FILE; see --glob)")
    adapter, scorer = make_scorer(options, label, embedder)
    columns = _columns(scorer.classes, label.classes)
    result = Labels(options.model, tuple(scorer.classes.mids[i] for i in columns),
                    tuple(scorer.classes.names[i] for i in columns), adapter.hop_samples / SAMPLE_RATE, label,
                    classifier=label.classifier)
    samples: dict[Path, int] = {}
    by_path = {}
    with tqdm(total=len(inputs), desc="label", unit="file", disable=not progress) as bar:
        for done in run_batched(inputs, file_inputs(adapter, embed, samples, AudioProgress(bar)), adapter.run,
                                batch_size=options.batch_size, threads=options.decode_threads, width=adapter.width,
                                dtype=adapter.dtype):
            item = FileLabels(str(done.source.path), done.source.id)
            if done.error is not None:
                item.error = str(done.error)
            elif len(done.rows) == 0:
                item.error = f"{done.source.path}: {adapter.too_short}"
            else:
                clip, frames = scorer.score(done.rows)
                item.clip, item.frames = clip[columns], frames[:, columns]
                item.duration = samples.pop(done.source.path) / SAMPLE_RATE
            by_path[item.path] = item
            bar.update(1)
    result.files = [by_path[str(i.path)] for i in inputs]
    return result


def to_json(labels: Labels) -> dict:
    """The `label --json` document (schema in the README)."""
    def entry(item: FileLabels) -> dict:
        if item.error is not None:
            return {"path": item.path, "id": item.id, "error": item.error}
        return {"path": item.path, "id": item.id, "duration_seconds": round(item.duration, 6),
                "predictions": [{"mid": labels.mids[i], "name": labels.names[i], "score": round(s, 6)}
                                for i, s in labels.predictions(item)],
                "frame_start_seconds": [round(i * labels.hop_seconds, 6) for i in range(len(item.frames))],
                "frame_scores": np.round(item.frames.astype(np.float64), 6).tolist()}

    return {"model": labels.model, "classifier": labels.classifier, "top": labels.options.top,
            "threshold": labels.options.threshold, "frame_hop_seconds": labels.hop_seconds,
            "frame_window_seconds": 0.96,
            "categories": [{"mid": m, "name": n} for m, n in zip(labels.mids, labels.names)],
            "files": [entry(item) for item in labels.files]}


def write_json(labels: Labels, path: str | Path) -> None:
    write_text_atomic(Path(path), json.dumps(to_json(labels), indent=1, ensure_ascii=False) + "\n")


def write_csv(labels: Labels, path: str | Path) -> None:
    """One row per prediction: id, path, rank (1 = best), mid, name, score."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "path", "rank", "mid", "name", "score"])
    for item in labels.files:
        if item.error is None:
            for rank, (i, score) in enumerate(labels.predictions(item), 1):
                writer.writerow([item.id, item.path, rank, labels.mids[i], labels.names[i], f"{score:.6f}"])
    write_text_atomic(Path(path), text.getvalue())


def summary_lines(labels: Labels) -> list[str]:
    """What `audiosetdl label` prints: each file's predictions, then the failures."""
    lines = []
    for item in labels.files:
        if item.error is None:
            best = ", ".join(f"{labels.names[i]} {s:.3f}" for i, s in labels.predictions(item)) or "(none above threshold)"
            lines.append(f"{item.id}: {best}")
    lines += [f"failed: {item.error}" for item in labels.failed]
    return lines
