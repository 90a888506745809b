"""`audiosetdl evaluate`: figures, per-class CSV, plot, and scores files that recompute the figures."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from audiosetdl import cli
from audiosetdl.labels import metrics
from audiosetdl.labels.evaluate import load_scores
from tests.labels_fixtures import SYNTH_CLASSES


def test_evaluate_writes_figures_csv_plot_and_scores(synth_model, synth_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    scores_file = out / "scores.npz"
    argv = ["evaluate", str(synth_model.directory), str(synth_dataset["eval"]), "--out", str(out),
            "--scores", str(scores_file)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    document = json.loads((out / "metrics.json").read_text())
    assert document["records"] == 200 and document["classes"] == SYNTH_CLASSES
    assert f"mAP {document['mAP']:.4f}" in printed
    # the training run's own eval figures are the same computation
    assert document["mAP"] == pytest.approx(synth_model.evaluation.mean_ap, abs=1e-6)
    labels, scores = load_scores(scores_file)
    recomputed = metrics.compute(labels, scores)
    assert recomputed.mean_ap == pytest.approx(document["mAP"]) and recomputed.d_prime == pytest.approx(
        document["d_prime"])
    with np.load(scores_file) as npz:
        assert npz["video_id"][0].startswith("synth") and npz["scores"].shape == (200, SYNTH_CLASSES)
        assert list(npz["mids"]) == [f"/m/synth{i}" for i in range(SYNTH_CLASSES)]
    with open(out / "per_class.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["display_name"] for r in rows] == [f"Class {i}" for i in range(SYNTH_CLASSES)]
    assert [float(r["ap"]) for r in rows] == pytest.approx(list(recomputed.ap), abs=1e-6)
    assert sum(int(r["positives"]) for r in rows) == labels.sum()
    assert (out / "per_class_ap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_as_parquet(synth_model, synth_dataset, tmp_path):
    target = tmp_path / "scores.parquet"
    assert cli.main(["evaluate", str(synth_model.directory), str(synth_dataset["eval"] / "aa.tfrecord"),
                     "--out", str(tmp_path), "--scores", str(target)]) == 0
    table = pd.read_parquet(target)
    assert list(table.columns[:3]) == ["video_id", "start", "labels"] and table.shape == (200, 3 + SYNTH_CLASSES)
    labels = np.zeros((200, SYNTH_CLASSES), bool)
    for row, present in enumerate(table["labels"]):
        labels[row, list(present)] = True
    figures = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics.compute(labels, table.iloc[:, 3:].to_numpy()).mean_ap == pytest.approx(figures["mAP"])


def test_evaluate_errors_are_one_line(synth_model, synth_dataset, tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), str(synth_dataset["eval"]), "--out", str(tmp_path / "o")]) == 2
    assert "config.json: not found" in capsys.readouterr().err
    assert cli.main(["evaluate", str(synth_model.directory), str(synth_dataset["eval"]), "--out", str(tmp_path),
                     "--scores", str(tmp_path / "s.csv")]) == 2
    assert "must end in .npz or .parquet" in capsys.readouterr().err
