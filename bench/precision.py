"""Benchmark: how far `--precision tf32` and `bf16` move VGGish and YAMNet outputs from fp32, and their speed.

For each model, the same inputs (log-mel of varied synthetic audio: tones, chirps, noises, clicks,
silence and their mixes) go through an Embedder built at each precision on the chosen device:

- VGGish: the released bytes (PCA, clip to [-2, 2], 8-bit quantization), reported as the share of
  bytes identical to fp32's and the largest byte difference; also the largest difference of the
  raw 128-d embedding, relative to fp32's largest magnitude. The PCA is fitted to these inputs'
  fp32 embeddings (as Google fitted theirs to AudioSet's) and scaled so that the bytes spread as
  the released ones do: std 77.5 (bal_train: mean 126.5, 9.3% at 0, 8.8% at 255). A random PCA
  would clip most values and make the bytes agree by accident.
- YAMNet: the largest difference of the 1024-d embeddings (relative to fp32's largest magnitude)
  and of the 521 scores, and the share of float32 values bit-identical to fp32's.
- Speed: examples (patches) per second at each precision, best of interleaved rounds; fp32 is
  the baseline measured in the same run.

Weights are random with the official shapes unless `--models DIR` holds the real files (then the
real PCA is used as it is): the real files cannot be downloaded here. Random weights exercise the
arithmetic at the real layer sizes, but their embeddings' spectrum is not the real one, and the
whitening amplifies errors along weak directions: with the real model the byte figures will differ.

    .venv/bin/python bench/precision.py [--device /GPU:0] [--clips 60] [--batch-size 128] [--models DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_model import random_official_weights  # noqa: E402
from extract_yamnet import random_yamnet_weights  # noqa: E402

from audiosetdl.precision import PRECISIONS  # noqa: E402
from audiosetdl.vggish import features as vggish_features  # noqa: E402
from audiosetdl.vggish.model import Embedder as VGGishEmbedder  # noqa: E402
from audiosetdl.vggish.postprocess import PCAParams, postprocess  # noqa: E402
from audiosetdl.yamnet import features as yamnet_features  # noqa: E402
from audiosetdl.yamnet.model import Embedder as YAMNetEmbedder  # noqa: E402

RELEASED_BYTE_STD = 77.5  # bal_train's released embedding bytes (42,531 records' first 200 files)
SAMPLE_RATE = 16_000


def synthetic_audio(seconds: float, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` clips mixing tones, chirps, noise bands and clicks at random levels (some silent)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for i in range(count):
        f0, f1 = rng.uniform(60, 6000, 2)
        tone = np.sin(2 * np.pi * (f0 + (f1 - f0) * t / seconds / 2) * t) * rng.uniform(0, 0.5)
        noise = np.convolve(rng.standard_normal(len(t)), np.ones(rng.integers(1, 32)), "same") * rng.uniform(0, 0.05)
        clicks = np.where(rng.random(len(t)) < rng.uniform(0, 0.003), rng.uniform(-0.9, 0.9, len(t)), 0.0)
        clip = tone + noise + clicks * (i % 3 == 0)
        clips.append(np.zeros_like(t) if i % 17 == 0 else np.clip(clip, -1, 1))
    return clips


def fitted_pca(embeddings: np.ndarray) -> PCAParams:
    """PCA of `embeddings` scaled so that the quantized bytes have the released bytes' spread."""
    means = embeddings.mean(axis=0, dtype=np.float64)[:, None]
    _, vectors = np.linalg.eigh(np.cov(embeddings.T.astype(np.float64)))
    rotated = vectors.T[::-1] @ (embeddings.T - means)
    scale = (RELEASED_BYTE_STD / 255 * 4) / rotated.std(axis=1, keepdims=True)  # std in [-2, 2] units
    return PCAParams(vectors.T[::-1] * scale, means)


def rate(run_once, count: int, seconds: float) -> float:
    done, began = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - began < seconds:
        run_once()
        done += count
    return done / (time.perf_counter() - began)


def best_rates(embedders: dict, inputs: np.ndarray, seconds: float, rounds: int) -> dict[str, float]:
    best = {name: 0.0 for name in embedders}
    for _ in range(rounds):  # interleaved: a busy machine slows every precision alike
        for name, embedder in embedders.items():
            best[name] = max(best[name], rate(lambda: embedder.embed(inputs), len(inputs), seconds))
    return best


def vggish_embedders(models: str | None, device, batch_size) -> dict:
    if models:
        return {p: VGGishEmbedder.from_models_dir(models, batch_size=batch_size, device=device, precision=p)
                for p in PRECISIONS}
    weights = random_official_weights()
    return {p: VGGishEmbedder.from_weights(weights, PCAParams(np.eye(128), np.zeros((128, 1))),
                                           batch_size=batch_size, device=device, precision=p)
            for p in PRECISIONS}


def vggish_rows(clips, models, device, batch_size, seconds, rounds) -> list[str]:
    examples = np.concatenate([vggish_features.waveform_to_examples(c) for c in clips])
    embedders = vggish_embedders(models, device, batch_size)
    raw = {p: e.embed(examples) for p, e in embedders.items()}
    pca = embedders["fp32"].pca if models else fitted_pca(raw["fp32"])
    exact_bytes = postprocess(raw["fp32"], pca).astype(int)
    rates = best_rates(embedders, examples[:batch_size * 2], seconds, rounds)
    rows = []
    for p in PRECISIONS:
        got = postprocess(raw[p], pca).astype(int)
        relative = np.abs(raw[p] - raw["fp32"]).max() / np.abs(raw["fp32"]).max()
        off = np.abs(got - exact_bytes)
        rows.append(f"vggish {p:5} {np.mean(off == 0):9.2%} {np.mean(off <= 1):7.2%} {off.mean():6.2f} {off.max():6d} "
                    f"{relative:10.2e} {'':>10} {rates[p]:8.1f} {rates[p] / rates['fp32']:6.2f}x")
    share_clipped = np.mean((exact_bytes == 0) | (exact_bytes == 255))
    rows.append(f"  ({len(examples)} examples; fp32 bytes: mean {exact_bytes.mean():.1f}, std {exact_bytes.std():.1f}, "
                f"{share_clipped:.1%} at 0 or 255)")
    return rows


def yamnet_rows(clips, models, device, batch_size, seconds, rounds) -> list[str]:
    patches = np.concatenate([yamnet_features.waveform_to_patches(c) for c in clips])
    if models and (Path(models) / "yamnet.h5").exists():
        embedders = {p: YAMNetEmbedder.from_models_dir(models, batch_size=batch_size, device=device, precision=p)
                     for p in PRECISIONS}
    else:
        weights = random_yamnet_weights()
        embedders = {p: YAMNetEmbedder.from_weights(weights, batch_size=batch_size, device=device, precision=p)
                     for p in PRECISIONS}
    outputs = {p: e.embed(patches) for p, e in embedders.items()}
    rates = best_rates(embedders, patches[:batch_size * 2], seconds, rounds)
    (embeddings, scores) = outputs["fp32"]
    rows = []
    for p in PRECISIONS:
        got_embeddings, got_scores = outputs[p]
        identical = np.mean(np.concatenate([(got_embeddings == embeddings).ravel(), (got_scores == scores).ravel()]))
        relative = np.abs(got_embeddings - embeddings).max() / np.abs(embeddings).max()
        rows.append(f"yamnet {p:5} {identical:9.2%} {'':>7} {'':>6} {'':>6} {relative:10.2e} "
                    f"{np.abs(got_scores - scores).max():10.2e} "
                    f"{rates[p]:8.1f} {rates[p] / rates['fp32']:6.2f}x")
    rows.append(f"  ({len(patches)} patches)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="TensorFlow device (default: the first GPU, else the CPU)")
    parser.add_argument("--clips", type=int, default=100, help="synthetic 10-s clips (10 VGGish examples each)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each speed measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", help="directory with the real model files (default: random official-shape "
                                         "weights)")
    args = parser.parse_args()
    clips = synthetic_audio(10.0, args.clips)
    header = (f"{'model':6} {'mode':5} {'identical':>9} {'<= 1':>7} {'mean Δ':>6} {'max Δ':>6} {'max rel':>10} "
              f"{'max score':>10} {'ex/s':>8} {'vs fp32':>7}")
    rows = vggish_rows(clips, args.models, args.device, args.batch_size, args.seconds, args.rounds)
    rows += yamnet_rows(clips, args.models, args.device, args.batch_size, args.seconds, args.rounds)
    print(f"device {args.device or 'default (first GPU, else CPU)'}, {'real' if args.models else 'random'} weights; "
          f"'<= 1', 'mean Δ', 'max Δ': bytes within 1 of fp32's, mean and largest byte difference; 'max rel': "
          f"largest embedding difference / fp32's largest |value|; 'max score': largest YAMNet score difference")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
