"""Classifiers on VGGish embeddings: `train` (fit and save a model directory), `evaluate` (mAP, AUC,
d' and per-class figures on TFRecords), `model` (the networks and `load_classifier`), `metrics`
(AP/AUC in numpy), `data` (TFRecords -> arrays), `card` (the model card), and tagging a user's
files: `label` (top-k classes and per-frame scores on embed's pipeline, JSON/CSV) and `plot` (the
time x class heat map).

This package's `__init__` holds only the user-facing errors, so that the CLI can name them without
importing TensorFlow.
"""


class DataError(ValueError):
    """Input that cannot be used: a missing, empty or corrupt file, or a label out of range."""


class ModelDirError(ValueError):
    """A model directory that is missing, incomplete or unreadable (the message names the file)."""
