"""Benchmark: bare VGGish inference, batched, against one model call per 10 s clip.

Owns one question: how many examples per second the model (no front end, no I/O) runs at
for a few batch sizes, compared with the reference demo's way of calling the model once per
clip (10 examples a call). Weights are random with the official shapes unless --models
points at the official files (speed does not depend on the values). Prints one line per
configuration, the best of a few interleaved measurements, and the ratio of the best batched
rate to the per-clip rate.

    .venv/bin/python bench/extract_model.py [--batch-sizes 32 64 128 256] [--seconds 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audiosetdl.vggish import params
from audiosetdl.vggish.postprocess import PCAParams

EXAMPLES_PER_CLIP = 10  # a 10 s AudioSet clip


def random_official_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in params.checkpoint_variables().items():
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        weights[name] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
    return weights


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--precision`, as bench/extract.py and bench/embed.py (and bench/gpu.sh) take them."""
    from audiosetdl.precision import PRECISIONS

    parser.add_argument("--device", default=None, help="TensorFlow device: cpu, gpu, or e.g. /GPU:1 (default: the "
                                                       "first GPU, else the CPU)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)


def device_of(args: argparse.Namespace) -> str | None:
    return {"cpu": "/CPU:0", "gpu": "/GPU:0"}.get(args.device, args.device)


def random_embedder(args: argparse.Namespace):
    """A VGGish Embedder on random official-shape weights and a random PCA, with the parsed
    `--batch-size`, `--device` and `--precision` (bench/extract.py and bench/embed.py)."""
    from audiosetdl.vggish.model import Embedder

    rng = np.random.default_rng(1)
    pca = PCAParams(rng.standard_normal((128, 128)) * 0.1, rng.standard_normal((128, 1)))
    return Embedder.from_weights(random_official_weights(), pca, batch_size=args.batch_size, device=device_of(args),
                                 precision=args.precision)


def measure(run_once, examples_per_run: int, seconds: float) -> float:
    """Examples/s of `run_once` over at least `seconds`."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        run_once()
        done += examples_per_run
    return done / elapsed


def best_rates(configs: dict[str, tuple], seconds: float, rounds: int) -> dict[str, float]:
    """Best examples/s of each configuration over `rounds` interleaved measurements.

    Interleaving and keeping the best make the figures comparable on a shared machine,
    where other work only ever slows a measurement down.
    """
    for run_once, _ in configs.values():
        run_once()  # warm up: tracing, kernel selection
    best = dict.fromkeys(configs, 0.0)
    for _ in range(rounds):
        for name, (run_once, examples_per_run) in configs.items():
            best[name] = max(best[name], measure(run_once, examples_per_run, seconds / rounds))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--seconds", type=float, default=12.0, help="measuring time per configuration")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved measurements per configuration")
    parser.add_argument("--models", help="directory with the official files (default: random weights)")
    parser.add_argument("--device", help="TensorFlow device, e.g. /GPU:0 (default: GPU if any)")
    args = parser.parse_args()

    from audiosetdl.tfenv import import_tensorflow
    from audiosetdl.vggish.model import Embedder

    tf = import_tensorflow()

    if args.models:
        embedder = Embedder.from_models_dir(args.models, device=args.device)
    else:
        identity = PCAParams(np.eye(params.EMBEDDING_SIZE), np.zeros((params.EMBEDDING_SIZE, 1)))
        embedder = Embedder.from_weights(random_official_weights(), identity, device=args.device)
    print(f"device {embedder.device}; TensorFlow {tf.__version__}; {'official' if args.models else 'random'} weights")

    rng = np.random.default_rng(0)
    pool = rng.uniform(-4.6, 3.0, (max(args.batch_sizes) * 2, params.EXAMPLE_FRAMES, params.NUM_MEL_BINS))
    pool = pool.astype(np.float32)

    clip = pool[:EXAMPLES_PER_CLIP]
    per_clip = "one call per clip"
    configs = {per_clip: (lambda: embedder.model(tf.constant(clip)).numpy(), EXAMPLES_PER_CLIP)}
    for batch_size in args.batch_sizes:
        configs[f"batch {batch_size}"] = (embed_with_batch(embedder, batch_size, pool), batch_size * 2)
    rates = best_rates(configs, args.seconds, args.rounds)

    print(f"{per_clip} ({EXAMPLES_PER_CLIP} examples a call): {rates[per_clip]:8.1f} examples/s")
    for batch_size in args.batch_sizes:
        measured = rates[f"batch {batch_size}"]
        print(f"Embedder.embed, batch {batch_size:4d}:            {measured:8.1f} examples/s  ({measured / rates[per_clip]:.2f}x)")
    best = max(rates[f"batch {b}"] for b in args.batch_sizes)
    print(f"best batched / one call per clip: {best / rates[per_clip]:.2f}x")


def embed_with_batch(embedder, batch_size: int, pool: np.ndarray):
    """Two full batches through `Embedder.embed` at `batch_size`."""
    examples = pool[: batch_size * 2]

    def run_once() -> None:
        embedder.batch_size = batch_size
        embedder.embed(examples)

    return run_once


if __name__ == "__main__":
    main()
