"""The arithmetic the embedding models run in (`--precision`), in one place.

- `fp32`, the default: exact float32 everywhere, so that VGGish bytes match the reference.
  TensorFlow otherwise computes float32 matmuls and convolutions in TensorFloat-32 (10-bit
  mantissas) on Ampere and newer GPUs, and bytes made there silently differ; `apply("fp32")`
  turns that off.
- `tf32`: TensorFloat-32 allowed. It only exists on GPUs of compute capability 8.0 or more; on a
  CPU it computes exactly what fp32 does.
- `bf16`: weights and activations in bfloat16 (8-bit mantissas), outputs returned as float32.
  Fast on GPUs and on CPUs with AMX-BF16 or AVX512-BF16; elsewhere TensorFlow emulates it, and it
  is slower than fp32.

TensorFlow's TF32 switch is process-wide, so the last model built decides it for the process.
The measured agreement of each mode with fp32 is in the README (`bench/precision.py`).
"""

from __future__ import annotations

PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "fp32"


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def apply(precision: str):
    """Set TensorFlow's TF32 switch for `precision` and return the dtype the weights are stored and
    computed in (tf.float32, or tf.bfloat16 for bf16)."""
    from audiosetdl.tfenv import import_tensorflow

    tf = import_tensorflow()
    tf.config.experimental.enable_tensor_float_32_execution(check(precision) == "tf32")
    return tf.bfloat16 if precision == "bf16" else tf.float32


def signature(precision: str) -> str:
    """The part of an output's fingerprint that its precision sets: empty for fp32 (the outputs
    made before `--precision` existed were fp32, and stay valid)."""
    return "" if check(precision) == DEFAULT_PRECISION else f"precision {precision}"
