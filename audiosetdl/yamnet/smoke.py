"""The YAMNet install check: the reference's `yamnet_test.py`, through this package's own code path.

Owns `smoke_test`. As the reference, three 3 s inputs at 16 kHz: zeros, uniform noise in
[-1, 1) (numpy's legacy generator seeded 51773) and a 440 Hz sine; each gives 6 patches
(3 s padded to 0.975 + 5 x 0.48 s), and its expected class (Silence, White noise, Sine wave)
must be among the 10 best of the scores averaged over the patches. The reference also
compares every output with arrays recorded from the official model; those are not shipped
here, so this check is the top-10 part plus the shapes. On success the report ends with
"Looks Good To Me".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosetdl.yamnet import features, params

SUCCESS_LINE = "Looks Good To Me"


def smoke_signals() -> dict[str, np.ndarray]:
    """The reference test's three inputs, by the names `params.SMOKE_EXPECTED` uses."""
    n = params.SMOKE_SECONDS * params.SAMPLE_RATE
    t = np.arange(0, params.SMOKE_SECONDS, 1 / params.SAMPLE_RATE)
    return {
        "zeros": np.zeros(n),
        "uniform noise": np.random.RandomState(params.SMOKE_NOISE_SEED).uniform(-1.0, 1.0, n),
        "440 Hz sine": np.sin(2 * np.pi * params.SMOKE_SINE_HZ * t),
    }


def check_outputs(embedder, class_map) -> tuple[bool, list[str]]:
    """Run the three inputs; (all passed, one report line per input)."""
    ok, lines = True, []
    signals = smoke_signals()
    for name, expected in params.SMOKE_EXPECTED:
        frames = embedder.frames(signals[name])
        want = features.num_patches(len(signals[name]))
        top = class_map.top(frames.scores.mean(axis=0), params.SMOKE_TOP_N)
        found = expected in [label for label, _ in top] and frames.scores.shape == (want, params.NUM_CLASSES)
        ok = ok and found
        best = ", ".join(f"{label} {score:.3f}" for label, score in top[:3])
        lines.append(f"{name}: {len(frames.scores)} patches (expected {want}); {expected!r} "
                     f"{'in' if found else 'NOT in'} the top {params.SMOKE_TOP_N} (best: {best})")
    return ok, lines


def smoke_test(models_dir: str | Path | None = None, *, device: str | None = None) -> tuple[bool, str]:
    """Run the smoke test on the YAMNet files in `models_dir`; return (ok, a printable report).

    Missing or broken model files are reported (ok False), not raised.
    """
    from audiosetdl.vggish.modelfiles import ModelFilesError
    from audiosetdl.yamnet.classmap import ClassMapError, load_class_map
    from audiosetdl.yamnet.model import Embedder
    from audiosetdl.yamnet.modelfiles import locate_models
    from audiosetdl.yamnet.weightsfile import WeightsError

    lines = ["Testing the YAMNet install"]
    try:
        files = locate_models(models_dir)
        class_map = load_class_map(files.class_map)
        embedder = Embedder(files.weights, device=device)
    except (ModelFilesError, WeightsError, ClassMapError) as exc:
        lines.append(f"FAILED: {exc}")
        return False, "\n".join(lines)
    ok, report = check_outputs(embedder, class_map)
    lines += report
    lines.append(SUCCESS_LINE if ok else "FAILED: the scores differ from the official model's")
    return ok, "\n".join(lines)
