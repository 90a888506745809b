"""The model card: a markdown page describing a trained model directory, its data and its figures.

Owns the card's wording only; the figures come from `train.py` (held-out slice, eval set) and
the network description from `model.ModelConfig`.
"""

from __future__ import annotations

import collections
import dataclasses
import platform

from audiosetdl.labels.model import first_feature_member
from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.precision import DEFAULT_PRECISION

POOLING_TEXT = {
    "attention": "decision-level attention (Kong et al. 2018)",
    "multi": "multi-level attention (Yu et al. 2018)",
    "feature": "feature-level attention (Kong et al. 2019)",
    "recurrent": "decision-level attention over a bidirectional GRU",
    "average": "masked mean pooling",
}


def _figures(title: str, figures: dict | None) -> list[str]:
    if not figures:
        return [f"- {title}: not measured"]
    line = f"- {title}: mAP **{figures['mAP']:.4f}**, mean AUC {figures['AUC']:.4f}, d' {figures['d_prime']:.3f} " \
           f"({figures['classes']} classes with positives"
    if figures.get("records"):
        line += f", {figures['records']} records"
    return [line + ")"]


def _networks(configs) -> str:
    """'feature-level attention (Kong et al. 2019) x 2, ...': each network, with its count when over 1."""
    counts = collections.Counter(config.pooling for config in configs)
    return "; ".join(POOLING_TEXT[pooling] + (f" x {count}" if count > 1 else "") for pooling, count in counts.items())


def _neighbours_line(options: dict) -> list[str]:
    if not options.get("neighbours"):
        return []
    return ["", f"The networks' average is blended with the labels of each clip's {options['neighbours']} most similar "
                f"training clips (cosine similarity of their mean frames, softmax temperature "
                f"{options['neighbour_temperature']}), weight {options['neighbour_weight']}: `neighbours.npz`."]


def _learned_neighbours_line(options: dict, configs) -> list[str]:
    member = first_feature_member(configs)
    if not options.get("learned_neighbours") or member is None:
        return []
    dims = options["learned_neighbour_dims"] or "all"
    return ["", f"And with the labels of each clip's {options['learned_neighbours']} most similar training clips by "
                f"member {member + 1}'s pooled hidden vector (what its classifier sees; standardised, {dims} "
                f"principal axes, cosine similarity, softmax temperature {options['neighbour_temperature']}), weight "
                f"{options['learned_neighbour_weight']}: `learned_neighbours.npz`."]


def render(info: dict, configs, classes: ClassIndex) -> str:
    """The README.md of a model directory whose members are the networks `configs`."""
    training = info["training"]
    options = training["options"]
    first = configs[0]
    model = {key: value for key, value in dataclasses.asdict(first).items() if key != "pooling"}
    lines = [
        "# AudioSet classifier on VGGish embeddings",
        "",
        f"An ensemble of {len(configs)} member(s) whose scores are averaged: {_networks(configs)}, each over "
        f"per-frame fully connected layers ({first.hidden_layers} x {first.hidden_units} units, batch norm, ReLU, "
        f"dropout {first.dropout}); {len(classes)} classes ({classes.mids[0]} `{classes.names[0]}` ...), sigmoid "
        "outputs. Input: the released uint8 VGGish embeddings (0.96 s per frame), dequantized as YouTube-8M does; "
        "clips under 10 frames are padded and masked.",
        *_neighbours_line(options),
        *_learned_neighbours_line(options, configs),
        "",
        "## Data",
        f"- Trained on {training['records']} records of {', '.join(training['sources'])}"
        + (f" ({training['held_out']} more held out)" if training["held_out"] else ""),
        f"- Records without frames skipped: {training['skipped_empty']}; cut to 10 frames: {training['truncated']}",
        "",
        "## Figures",
        *_figures("held-out slice of the training records", info.get("held_out")),
        *_figures("evaluation set" + (f" ({', '.join(info['evaluation']['sources'])})" if info.get("evaluation")
                                      else ""), info.get("evaluation")),
        f"- Training time: {training['seconds']:.0f} s on {platform.machine()} with {options['threads']} "
        f"TensorFlow thread(s) (0: all cores), {options.get('precision', DEFAULT_PRECISION)} arithmetic (the "
        "saved weights and every score are float32)",
        "",
        "## Training",
        "Loss: binary cross-entropy; optimiser AdamW; "
        + ("class-balanced sampling (Kong 2018)" if options["balanced"] else "seeded shuffled passes") + ".",
        "",
        "| option | value |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in sorted({**options, **model}.items())],
        "",
        "## Use",
        "```python",
        "from audiosetdl.labels.model import load_classifier",
        "classifier = load_classifier('THIS_DIRECTORY')",
        "scores = classifier.scores(embeddings)   # uint8 (N, frames, 128) or a list of (frames, 128)",
        "```",
        "`audiosetdl evaluate THIS_DIRECTORY EVAL_TFRECORDS... --out DIR` recomputes the figures.",
        "",
    ]
    return "\n".join(lines)
