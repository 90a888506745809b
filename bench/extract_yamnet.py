"""Benchmark: YAMNet next to VGGish on this machine, bare and end to end, against what the CPU can do.

Owns one question: how fast each model turns audio into embeddings here, and how close that is
to the machine's own float32 rate. For each model:

(a) bare inference: pre-computed 96x64 inputs through `Embedder.embed` at the batch size
    (examples or patches per second, and the seconds of audio that covers: a VGGish example
    is 0.96 s of audio, a YAMNet patch advances by 0.48 s);
(b) end to end: FLAC clips of a planned run -> decode, front end, batched model -> per-key
    TFRecords (`audiosetdl.extract.run_task`), in seconds of audio per second;
(c) the work: multiply-adds per input counted from the layer shapes (YAMNet's README says
    69.2 M per patch; VGGish is ~0.86 G, i.e. ~1.7 GFLOP per example), the FLOP rate that
    implies, and its fraction of a large float32 matmul's rate on the same TensorFlow threads
    (the practical peak; a depthwise convolution cannot reach it), measured interleaved
    with the models so that a busy machine slows all of them alike.

Weights are random with the official shapes (speed does not depend on their values). Figures
are the best of interleaved rounds (bare and end to end alike), as bench/extract_model.py does,
in wall-clock time and also per CPU-second of this process: on a shared machine the second is
the steadier figure (it does not count time the process waits for a core).

    .venv/bin/python bench/extract_yamnet.py [--clips 40] [--seconds 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import make_run  # noqa: E402
from extract_model import random_official_weights  # noqa: E402

from audiosetdl.config import ExtractOptions  # noqa: E402
from audiosetdl.extract import run_task  # noqa: E402
from audiosetdl.rundir import EMBEDDINGS_DIRS  # noqa: E402
from audiosetdl.vggish import params as vggish_params  # noqa: E402
from audiosetdl.vggish.postprocess import PCAParams  # noqa: E402
from audiosetdl.yamnet import params as yamnet_params  # noqa: E402
from audiosetdl.yamnet.weightsfile import expected_weights  # noqa: E402

CLIP_SECONDS = 10.0  # make_run's clips
AUDIO_PER_INPUT = {"vggish": vggish_params.EXAMPLE_SECONDS, "yamnet": yamnet_params.PATCH_HOP_SECONDS}


def random_yamnet_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_weights().items():
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("kernel"):  # He-normal: activations keep their scale (no denormals)
            fan_in = shape[0] * shape[1] if "depthwise" in name else int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            value = 0.1 * rng.standard_normal(shape)
        weights[name] = value.astype(np.float32)
    return weights


def vggish_macs() -> int:
    """Multiply-adds of one VGGish example, from the layer shapes (SAME convs, 2x2 pools)."""
    h, w, total = vggish_params.EXAMPLE_FRAMES, vggish_params.NUM_MEL_BINS, 0
    for layer, shape in vggish_params.LAYERS:
        if len(shape) == 4:
            total += h * w * int(np.prod(shape))
            if layer in vggish_params.POOL_AFTER:
                h, w = -(-h // 2), -(-w // 2)
        else:
            total += int(np.prod(shape))
    return total


def yamnet_macs() -> int:
    """Multiply-adds of one YAMNet patch, from the layer shapes (what the README counts as 69.2 M)."""
    h, w, channels, total = yamnet_params.PATCH_FRAMES, yamnet_params.NUM_MEL_BINS, 1, 0
    for _name, kind, stride, filters in yamnet_params.LAYERS:
        h, w = -(-h // stride), -(-w // stride)
        if kind == yamnet_params.CONV:
            total += h * w * 9 * channels * filters
        else:
            total += h * w * (9 * channels + channels * filters)
        channels = filters
    return total + yamnet_params.EMBEDDING_SIZE * yamnet_params.NUM_CLASSES


MATMUL_SIZE = 2048


def matmul_config():
    """A large float32 matmul on TensorFlow's threads (its rate is the practical peak): (run, FLOP a run)."""
    import tensorflow as tf

    a = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE])
    b = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE])
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return (lambda: step().numpy(), 1), 2 * MATMUL_SIZE ** 3


def make_embedders(batch_size: int) -> dict:
    from audiosetdl.vggish.model import Embedder as VGGishEmbedder
    from audiosetdl.yamnet.model import Embedder as YAMNetEmbedder

    rng = np.random.default_rng(1)
    pca = PCAParams(rng.standard_normal((128, 128)) * 0.1, rng.standard_normal((128, 1)))
    return {"vggish": VGGishEmbedder.from_weights(random_official_weights(), pca, batch_size=batch_size),
            "yamnet": YAMNetEmbedder.from_weights(random_yamnet_weights(), batch_size=batch_size)}


def timed(run_once, seconds: float) -> tuple[int, float, float]:
    """Run `run_once` (returning how many units it did) for at least `seconds`: (units, wall s, CPU s)."""
    units, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds or units == 0:
        units += run_once()
    return units, time.perf_counter() - wall, time.process_time() - cpu


def best_of(configs: dict, seconds: float, rounds: int) -> dict[str, tuple[float, float]]:
    """name -> (best units per wall second, best units per CPU second) over interleaved rounds."""
    for run_once in configs.values():
        run_once()  # warm up: tracing, kernel selection
    best = {name: (0.0, 0.0) for name in configs}
    for _ in range(rounds):
        for name, run_once in configs.items():
            units, wall, cpu = timed(run_once, seconds)
            best[name] = (max(best[name][0], units / wall), max(best[name][1], units / cpu))
    return best


def counted(run_once, units: int):
    """`run_once` made to return how many units (inputs, matmuls) one call does."""
    def run() -> int:
        run_once()
        return units

    return run


def end_to_end(run, model: str, embedder, batch_size: int, decode_threads: int):
    """A full `run_task` from scratch, returning the seconds of audio it embedded (a `timed` unit)."""
    options = ExtractOptions(model=model, batch_size=batch_size, decode_threads=decode_threads)

    def run_once() -> int:
        shutil.rmtree(run.root / EMBEDDINGS_DIRS[model], ignore_errors=True)
        return int(run_task(run, 0, options, embedder=embedder, progress=False).clips * CLIP_SECONDS)

    return run_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="10 s FLAC clips for the end-to-end runs")
    parser.add_argument("--batch-size", type=int, default=ExtractOptions().batch_size)
    parser.add_argument("--decode-threads", type=int, default=ExtractOptions().decode_threads)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per bare configuration")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    embedders = make_embedders(args.batch_size)
    inputs = np.random.default_rng(0).uniform(-6.9, 3.0, (args.batch_size * 2, 96, 64)).astype(np.float32)
    (matmul, _), matmul_flop = matmul_config()
    configs = {name: counted(lambda e=e: e.embed(inputs), len(inputs)) for name, e in embedders.items()}
    configs["matmul"] = counted(matmul, 1)
    bare = best_of(configs, args.seconds, args.rounds)  # interleaved: the same noise for all three
    peak = tuple(rate * matmul_flop / 1e9 for rate in bare.pop("matmul"))
    macs = {"vggish": vggish_macs(), "yamnet": yamnet_macs()}
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), args.clips)
        full = best_of({name: end_to_end(run, name, e, args.batch_size, args.decode_threads)
                        for name, e in embedders.items()}, 0.0, max(1, args.rounds - 1))
    report(args, bare, full, peak, macs)


def report(args, bare, full, peak, macs) -> None:
    print(f"batch {args.batch_size}; {args.clips} clips x 10 s end to end; float32 matmul here: "
          f"{peak[0]:.1f} GFLOP/s wall, {peak[1]:.1f} per CPU-second")
    for column, label in ((0, "per wall-clock second"), (1, "per CPU-second of this process")):
        print(f"\n{label}:")
        print("model    bare inputs/s  bare audio s/s  e2e audio s/s  e2e/bare  MMAC/input  GFLOP/s  of matmul")
        for name in bare:
            audio = bare[name][column] * AUDIO_PER_INPUT[name]
            gflops = bare[name][column] * 2 * macs[name] / 1e9
            print(f"{name:7s}  {bare[name][column]:13.1f}  {audio:14.1f}  {full[name][column]:13.1f}  "
                  f"{full[name][column] / audio:8.2f}  {macs[name] / 1e6:10.1f}  {gflops:7.1f}  "
                  f"{gflops / peak[column]:9.1%}")
        audio_ratio = (bare["yamnet"][column] * AUDIO_PER_INPUT["yamnet"]
                       / (bare["vggish"][column] * AUDIO_PER_INPUT["vggish"]))
        print(f"yamnet / vggish in seconds of audio: bare {audio_ratio:.2f}x, "
              f"end to end {full['yamnet'][column] / full['vggish'][column]:.2f}x")


if __name__ == "__main__":
    main()
