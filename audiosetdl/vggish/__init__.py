"""VGGish exactly as Google's reference, for embeddings that match the released AudioSet features.

Layout: `params` (every constant), `features` (waveform -> log-mel examples, numpy and
TensorFlow), `model` (the TF2 network from the official checkpoint; `Embedder`),
`postprocess` (PCA + 8-bit quantization, dequantization), `modelfiles` (locating and fetching
the official files), `smoke` (the install check).

Names from `model` and `smoke` load TensorFlow, so they are imported on first use:
`import audiosetdl.vggish` alone stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audiosetdl.vggish.features import examples_tf, log_mel_tf, num_examples, waveform_to_examples, waveform_to_log_mel
from audiosetdl.vggish.modelfiles import (
    CheckpointError, ModelFiles, ModelFilesError, fetch_models, locate_models, models_dir,
)
from audiosetdl.vggish.postprocess import PCAParams, PCAParamsError, dequantize, postprocess, quantize

if TYPE_CHECKING:  # pragma: no cover
    from audiosetdl.vggish.model import Embedder, VGGish, read_checkpoint
    from audiosetdl.vggish.smoke import smoke_test

_LAZY = {
    "Embedder": "model",
    "VGGish": "model",
    "read_checkpoint": "model",
    "smoke_test": "smoke",
}

__all__ = [
    "CheckpointError",
    "Embedder",
    "ModelFiles",
    "ModelFilesError",
    "PCAParams",
    "PCAParamsError",
    "VGGish",
    "dequantize",
    "examples_tf",
    "fetch_models",
    "locate_models",
    "log_mel_tf",
    "models_dir",
    "num_examples",
    "postprocess",
    "quantize",
    "read_checkpoint",
    "smoke_test",
    "waveform_to_examples",
    "waveform_to_log_mel",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"audiosetdl.vggish.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
