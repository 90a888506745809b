"""The model card: a markdown page describing a trained model directory, its data and its figures.

Owns the card's wording only; the figures come from `train.py` (held-out slice, eval set) and
the network description from `model.ModelConfig`.
"""

from __future__ import annotations

import dataclasses
import platform

from audiosetdl.metadata.ontology import ClassIndex

POOLING_TEXT = {
    "attention": "decision-level attention (Kong et al. 2018)",
    "multi": "multi-level attention (Yu et al. 2018)",
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


def render(info: dict, config, classes: ClassIndex) -> str:
    """The README.md of a model directory."""
    training = info["training"]
    options = training["options"]
    model = dataclasses.asdict(config)
    lines = [
        "# AudioSet classifier on VGGish embeddings",
        "",
        f"{POOLING_TEXT[config.pooling][0].upper()}{POOLING_TEXT[config.pooling][1:]} over per-frame fully connected layers "
        f"({config.hidden_layers} x {config.hidden_units} units, batch norm, ReLU, dropout {config.dropout}); "
        f"{len(classes)} classes ({classes.mids[0]} `{classes.names[0]}` ...), sigmoid outputs; an ensemble of "
        f"{options['ensemble']} member(s) whose scores are averaged. Input: the released uint8 VGGish embeddings "
        "(0.96 s per frame), dequantized as YouTube-8M does; clips under 10 frames are padded and masked.",
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
        "TensorFlow thread(s) (0: all cores)",
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
