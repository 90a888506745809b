"""Fixtures of the classifier tests: small synthetic AudioSet-schema TFRecords whose labels are
learnable from the embeddings, with their own class index, and a tiny trained model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from audiosetdl import tfrecords
from audiosetdl.config import TrainOptions
from audiosetdl.tfrecords import EmbeddingRecord

SYNTH_CLASSES = 6
SYNTH_OPTIONS = dict(ensemble=1, hidden_units=32, hidden_layers=2, steps=60, batch_size=64, log_every=0, learning_rate=3e-3,
                     threads=2)


def synthetic_records(count: int, seed: int, short_every: int = 7) -> list[EmbeddingRecord]:
    """Clip i carries class c when the frames hold class c's pattern (bytes raised on 16 dims);
    every `short_every`-th clip has fewer than 10 frames."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        frames = 10 if index % short_every else int(rng.integers(1, 10))
        labels = tuple(sorted(rng.choice(SYNTH_CLASSES, size=int(rng.integers(1, 3)), replace=False).tolist()))
        embedding = rng.integers(60, 140, (frames, 128)).astype(np.int64)
        for label in labels:
            embedding[:, label * 16:(label + 1) * 16] += 90
        records.append(EmbeddingRecord(f"synth{seed:02d}{index:04d}"[:11], float(index % 30), float(index % 30) + 10,
                                       labels, np.clip(embedding, 0, 255).astype(np.uint8)))
    return records


def write_class_index(path: Path, classes: int = SYNTH_CLASSES) -> Path:
    rows = ["index,mid,display_name"] + [f'{i},/m/synth{i},"Class {i}"' for i in range(classes)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> dict[str, Path]:
    """train/ (two files) and eval/ (one file) of synthetic records, and class_labels_indices.csv above them."""
    root = tmp_path_factory.mktemp("synth_audioset")
    (root / "train").mkdir()
    (root / "eval").mkdir()
    records = synthetic_records(400, seed=1)
    tfrecords.write(root / "train" / "aa.tfrecord", records[:250])
    tfrecords.write(root / "train" / "ab.tfrecord", records[250:])
    tfrecords.write(root / "eval" / "aa.tfrecord", synthetic_records(200, seed=2))
    write_class_index(root / "class_labels_indices.csv")
    return {"root": root, "train": root / "train", "eval": root / "eval",
            "class_index": root / "class_labels_indices.csv"}


@pytest.fixture(scope="session")
def synth_model(synth_dataset, tmp_path_factory):
    """A tiny model trained on the synthetic train/ records: two ensemble members of different networks."""
    from audiosetdl.labels.train import train

    out = tmp_path_factory.mktemp("synth_model") / "model"
    options = dataclasses.replace(TrainOptions(), **{**SYNTH_OPTIONS, "pooling": ("multi", "feature"), "ensemble": 2,
                                                           "holdout": 0.2})
    result = train([synth_dataset["train"]], out, options, eval_sources=[synth_dataset["eval"]])
    return result
