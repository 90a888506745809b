"""`audiosetdl evaluate`: a saved classifier scored on AudioSet-schema TFRecords.

Owns the evaluation outputs of a model on a labelled set (the released eval set is the
reference): `metrics.json` (mAP over the classes present, mean AUC, d', record and class counts),
a per-class CSV (index, mid, name, positives, AP, AUC), a PNG of per-class AP sorted with the best
and worst classes named, and optionally every record's scores (`--scores`: .npz or .parquet) so
that anyone can recompute the figures.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosetdl.config import EvaluateOptions
from audiosetdl.labels import DataError, data, metrics
from audiosetdl.labels.model import Classifier, load_classifier
from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.rundir import atomic_path, write_json_atomic

METRICS_FILENAME = "metrics.json"
PER_CLASS_FILENAME = "per_class.csv"
PLOT_FILENAME = "per_class_ap.png"
NAMED_CLASSES = 10  # best and worst classes listed on the plot
SCORE_SUFFIXES = (".npz", ".parquet")


@dataclass
class Evaluation:
    metrics: metrics.Metrics
    records: int
    seconds: float
    outputs: dict[str, Path]

    def summary(self) -> dict:
        return {**self.metrics.summary(), "records": self.records, "seconds": round(self.seconds, 1)}


def write_per_class(path: Path, result: metrics.Metrics, classes: ClassIndex) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "mid", "display_name", "positives", "ap", "auc"])
        for index, (mid, name) in enumerate(zip(classes.mids, classes.names)):
            writer.writerow([index, mid, name, int(result.positives[index]),
                             _cell(result.ap[index]), _cell(result.auc[index])])


def _cell(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def plot_per_class(path: Path, result: metrics.Metrics, classes: ClassIndex, title: str) -> None:
    """Per-class AP, sorted descending, with the NAMED_CLASSES best and worst classes listed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = np.flatnonzero(~np.isnan(result.ap))
    order = present[np.argsort(-result.ap[present], kind="stable")]
    figure, axis = plt.subplots(figsize=(12, 5), layout="constrained")
    axis.bar(np.arange(len(order)), result.ap[order], width=1.0, color="#4477aa")
    axis.axhline(result.mean_ap, color="#cc3311", linewidth=1, label=f"mAP {result.mean_ap:.3f}")
    count = min(NAMED_CLASSES, len(order) // 2) or len(order)
    for names, where, corner in ((order[:count], (0.30, 0.97), "best"), (order[-count:], (0.62, 0.97), "worst")):
        text = "\n".join(f"{result.ap[i]:.3f}  {classes.names[i]}" for i in names)
        axis.text(*where, f"{corner} {count}:\n{text}", transform=axis.transAxes, va="top", fontsize=7,
                  family="monospace", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#999999"})
    axis.set(xlabel=f"class, sorted by AP ({len(order)} with positives)", ylabel="average precision",
             title=title, xlim=(-1, len(order)), ylim=(0, 1.15))
    axis.legend(loc="upper right")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)


def write_scores(path: Path, dataset: data.LabelledSet, scores: np.ndarray, classes: ClassIndex) -> None:
    """Every record's video_id, start, labels (multi-hot) and scores: .npz arrays, or a parquet
    table with one float32 column per class MID."""
    if path.suffix not in SCORE_SUFFIXES:
        raise DataError(f"{path}: --scores must end in {' or '.join(SCORE_SUFFIXES)}")
    with atomic_path(path) as temporary:
        if path.suffix == ".npz":
            with open(temporary, "wb") as fh:
                np.savez_compressed(fh, video_id=dataset.ids, start=dataset.starts, labels=dataset.labels,
                                    scores=scores.astype(np.float32), mids=np.array(classes.mids))
        else:
            import pandas as pd

            table = pd.DataFrame(scores.astype(np.float32), columns=list(classes.mids))
            table.insert(0, "start", dataset.starts)
            table.insert(0, "video_id", dataset.ids)
            table.insert(2, "labels", [np.flatnonzero(row).tolist() for row in dataset.labels])
            table.to_parquet(temporary, index=False)


def evaluate(model: str | Path | Classifier, sources: Sequence[str | Path], out: str | Path,
             options: EvaluateOptions) -> Evaluation:
    """Score the records of `sources` with the model and write the figures and files under `out`."""
    from audiosetdl.labels.train import configure_threads

    configure_threads(options.threads)
    classifier = model if isinstance(model, Classifier) else load_classifier(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    dataset = data.load(sources, len(classifier.classes))
    scores = classifier.scores(dataset.frames, dataset.lengths)
    result = metrics.compute(dataset.labels, scores)
    seconds = time.monotonic() - started
    outputs = {"metrics": out / METRICS_FILENAME, "per_class": Path(options.per_class or out / PER_CLASS_FILENAME),
               "plot": Path(options.plot or out / PLOT_FILENAME)}
    write_per_class(outputs["per_class"], result, classifier.classes)
    plot_per_class(outputs["plot"], result, classifier.classes,
                   f"{len(dataset)} records: mAP {result.mean_ap:.3f}, AUC {result.mean_auc:.3f}, "
                   f"d' {result.d_prime:.3f}")
    if options.scores:
        outputs["scores"] = Path(options.scores)
        write_scores(outputs["scores"], dataset, scores, classifier.classes)
    evaluation = Evaluation(result, len(dataset), seconds, outputs)
    document = {**evaluation.summary(), "model": str(model) if not isinstance(model, Classifier) else None,
                "sources": [str(s) for s in sources], "skipped_empty": dataset.skipped_empty}
    write_json_atomic(outputs["metrics"], document)
    return evaluation


def report_lines(evaluation: Evaluation) -> list[str]:
    s = evaluation.summary()
    lines = [f"{s['records']} records, {s['classes']} classes with positives: mAP {s['mAP']:.4f}, "
             f"mean AUC {s['AUC']:.4f}, d' {s['d_prime']:.3f} ({s['seconds']:.0f} s)"]
    return lines + [f"{name}: {path}" for name, path in evaluation.outputs.items()]


def load_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) back from a --scores .npz file, to recompute the metrics."""
    with np.load(path) as npz:
        return npz["labels"], npz["scores"]

