"""The install check: the reference's smoke test, run through this package's own code path.

Owns `smoke_test`: 3 s of a 1 kHz sine at 16 kHz gives 3 examples; with the official
checkpoint the raw embeddings have mean 0.000657 and standard deviation 0.343, and the
postprocessed bytes mean 126.0 and standard deviation 89.3, each within 10%. On success the
report ends with "Looks Good To Me".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosetdl.vggish import features, params

SUCCESS_LINE = "Looks Good To Me"


@dataclass(frozen=True)
class SmokeStats:
    embedding_mean: float
    embedding_std: float
    postprocessed_mean: float
    postprocessed_std: float


OFFICIAL_SMOKE_STATS = SmokeStats(
    params.SMOKE_EMBEDDING_MEAN,
    params.SMOKE_EMBEDDING_STD,
    params.SMOKE_POSTPROCESSED_MEAN,
    params.SMOKE_POSTPROCESSED_STD,
)


def smoke_signal() -> np.ndarray:
    """The reference smoke test's input: 3 s of a 1 kHz sine sampled at 16 kHz."""
    t = np.arange(0, params.SMOKE_SECONDS, 1 / params.SAMPLE_RATE)
    return np.sin(2 * np.pi * params.SMOKE_FREQUENCY_HZ * t)


def smoke_test(
    models_dir: str | Path | None = None,
    *,
    expected: SmokeStats = OFFICIAL_SMOKE_STATS,
    rtol: float = params.SMOKE_RELATIVE_TOLERANCE,
    device: str | None = None,
) -> tuple[bool, str]:
    """Run the smoke test on the model files in `models_dir`; return (ok, a printable report).

    Missing or broken model files are reported (ok False), not raised.
    """
    from audiosetdl.vggish.modelfiles import CheckpointError, ModelFilesError, locate_models
    from audiosetdl.vggish.postprocess import PCAParamsError

    lines = ["Testing the VGGish install"]
    try:
        files = locate_models(models_dir)  # before TensorFlow loads: a missing file answers at once
        from audiosetdl.vggish.model import Embedder

        embedder = Embedder(files.checkpoint, files.pca_params, device=device)
    except (ModelFilesError, CheckpointError, PCAParamsError) as exc:
        lines.append(f"FAILED: {exc}")
        return False, "\n".join(lines)
    examples = features.waveform_to_examples(smoke_signal(), params.SAMPLE_RATE)
    embeddings = embedder.embed(examples)
    quantized = embedder.postprocess(embeddings)
    measured = SmokeStats(
        float(embeddings.mean()), float(embeddings.std()), float(quantized.mean()), float(quantized.std())
    )
    ok = examples.shape == (3, params.EXAMPLE_FRAMES, params.NUM_MEL_BINS)
    lines.append(f"examples: {examples.shape} (expected (3, {params.EXAMPLE_FRAMES}, {params.NUM_MEL_BINS}))")
    for field in ("embedding_mean", "embedding_std", "postprocessed_mean", "postprocessed_std"):
        got, want = getattr(measured, field), getattr(expected, field)
        within = abs(got - want) <= rtol * abs(want)
        ok = ok and within
        lines.append(f"{field}: {got:.6g} (expected {want:.6g} within {rtol:.0%}) {'ok' if within else 'MISMATCH'}")
    lines.append(SUCCESS_LINE if ok else "FAILED: the statistics differ from the official model's")
    return ok, "\n".join(lines)
