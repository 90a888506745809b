"""Benchmark: `audiosetdl train` on the released bal_train records, scored on the released eval set.

Reproduces the figure in the README: trains with the shipped defaults (configs/default.yaml's
`train:` section, overridable with `--set key=value`) on ../shared/data/audioset/bal_train,
evaluates once on ../shared/data/audioset/eval (20,371 records) and prints mAP, mean AUC, d' and
the training time, with the baseline measured in the same run: the class-prior scorer (every clip
scored with its class's frequency in bal_train), and with `--baseline` also the masked mean pooling
network trained with the same options.

    nice -n 10 .venv/bin/python bench/train.py --out runs/bench-train
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiosetdl.config import TrainOptions, load_config, options_from  # noqa: E402

AUDIOSET = REPO.parent / "shared" / "data" / "audioset"


def parse_set(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        values[key.replace("-", "_")] = yaml.safe_load(text)  # numbers, true/false, plain words or [lists]
    if isinstance(values.get("pooling"), str):  # pooling=feature,attention
        values["pooling"] = tuple(values["pooling"].split(","))
    return values


def blend_parts(model_dir: Path, eval_dir: Path) -> list[tuple]:
    """The trained model's networks alone and each neighbour memory alone, on the same eval records."""
    from audiosetdl.labels import data, metrics
    from audiosetdl.labels.model import as_batch, load_classifier

    classifier = load_classifier(model_dir)
    if classifier.neighbours is None and classifier.learned is None:
        return []
    eval_set = data.load([eval_dir], len(classifier.classes))
    frames, mask = as_batch(eval_set.frames, eval_set.lengths)
    networks = dataclasses.replace(classifier, neighbours=None, learned=None).scores(eval_set.frames, eval_set.lengths)
    rows = [("networks only", metrics.compute(eval_set.labels, networks), float("nan"))]
    if classifier.neighbours is not None:
        rows.append(("neighbours only", metrics.compute(eval_set.labels, classifier.neighbours.scores(frames, mask)),
                     float("nan")))
    if classifier.learned is not None:
        rows.append(("learned neighbours only", metrics.compute(eval_set.labels, classifier.learned_scores(frames, mask)),
                     float("nan")))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=AUDIOSET, help="directory with bal_train/ and eval/")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-train", help="model directories go here")
    parser.add_argument("--config", help="YAML config (train: section)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train option")
    parser.add_argument("--baseline", action="store_true", help="also train pooling=average with the same options")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from audiosetdl.labels import data, evaluate, metrics
    from audiosetdl.labels.train import train
    from audiosetdl.config import EvaluateOptions

    options = dataclasses.replace(options_from(TrainOptions, None, load_config(args.config)), **parse_set(args.set))
    train_dir, eval_dir = args.data / "bal_train", args.data / "eval"
    rows = []
    result = train([train_dir], args.out / "model", options, eval_sources=[eval_dir])  # eval figures in the card
    evaluation = evaluate.evaluate(args.out / "model", [eval_dir], args.out / "eval", EvaluateOptions())
    rows.append(("+".join(options.pooling) + f" x{options.ensemble}", evaluation.metrics, result.seconds))
    rows.extend(blend_parts(args.out / "model", eval_dir))
    if args.baseline:
        base = dataclasses.replace(options, pooling=("average",))
        base_result = train([train_dir], args.out / "baseline", base, eval_sources=[eval_dir])
        base_eval = evaluate.evaluate(args.out / "baseline", [eval_dir], args.out / "baseline-eval", EvaluateOptions())
        rows.append((f"average x{base.ensemble}", base_eval.metrics, base_result.seconds))
    started = time.monotonic()
    train_set = data.load([train_dir], 527)
    eval_set = data.load([eval_dir], 527)
    prior = np.broadcast_to(train_set.labels.mean(axis=0), eval_set.labels.shape)
    rows.append(("class prior", metrics.compute(eval_set.labels, prior), time.monotonic() - started))
    reference = rows[0][1].mean_ap
    print(f"\neval: {len(eval_set)} records of {eval_dir}; trained on {train_dir} ({len(train_set)} records)")
    width = max(len(row[0]) for row in rows)
    print(f"{'model':<{width}} {'mAP':>7} {'AUC':>7} {'d-prime':>8} {'train s':>8} {'mAP ratio':>10}")
    for name, figures, seconds in rows:
        print(f"{name:<{width}} {figures.mean_ap:7.4f} {figures.mean_auc:7.4f} {figures.d_prime:8.3f} {seconds:8.0f} "
              f"{reference / figures.mean_ap:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
