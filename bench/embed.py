"""Benchmark: `audiosetdl embed` (user files -> shards) against bare inference and one model call per file.

(a) bare model inference: pre-computed examples through `Embedder.embed` at the chosen batch size;
(b) the full path: N 10-s 44.1 kHz WAV files (`--seconds`, `--rate`) -> ffmpeg decoding (soxr to 16 kHz;
    16 kHz files are read by libsndfile) in threads, a window at a time, log-mel,
    batches spanning files, PCA and quantization -> TFRecord shards (`audiosetdl.embed.embed_paths`);
(c) the old `embed`: per file, decode, features and one model call.
Targets (issue 9): (b) >= 0.9 x (a) and (b) >= 2 x (c), as same-run ratios (the machine may be
loaded). Weights are random with the official shapes (speed does not depend on their values).

    .venv/bin/python bench/embed.py [--files 100] [--seconds 10] [--rate 44100] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_model import random_official_weights  # noqa: E402

from audiosetdl.audio import decode_any  # noqa: E402
from audiosetdl.config import EmbedOptions, ExtractOptions  # noqa: E402
from audiosetdl.embed import embed_paths  # noqa: E402
from audiosetdl.vggish import waveform_to_examples  # noqa: E402
from audiosetdl.vggish.model import Embedder  # noqa: E402
from audiosetdl.vggish.postprocess import PCAParams  # noqa: E402


def make_files(root: Path, count: int, seconds: float = 10.0, rate: int = 44_100) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        path = root / f"{i % 7}" / f"clip{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = 0.3 * np.sin(2 * np.pi * (100 + 7 * i) * t) + 0.05 * rng.standard_normal(len(t))
        soundfile.write(str(path), audio.astype(np.float32), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each file")
    parser.add_argument("--rate", type=int, default=44_100, help="sample rate of the WAV files (16000: no "
                                                                  "resampling, read without ffmpeg)")
    parser.add_argument("--batch-size", type=int, default=ExtractOptions().batch_size)
    parser.add_argument("--decode-threads", type=int, default=ExtractOptions().decode_threads)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    pca = PCAParams(rng.standard_normal((128, 128)) * 0.1, rng.standard_normal((128, 1)))
    embedder = Embedder.from_weights(random_official_weights(), pca, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp) / "in", args.files, args.seconds, args.rate)
        examples = np.concatenate([waveform_to_examples(decode_any(p)) for p in paths[:20]])
        embedder.embed(examples[: args.batch_size])  # warm up (graph tracing)

        began = time.perf_counter()
        n = 0
        while n < min(len(paths) * args.seconds, 1000):
            embedder.embed(examples)
            n += len(examples)
        bare = n / (time.perf_counter() - began)

        began = time.perf_counter()
        options = ExtractOptions(batch_size=args.batch_size, decode_threads=args.decode_threads)
        summary = embed_paths([Path(tmp) / "in"], Path(tmp) / "out", options, EmbedOptions(shard_size=50),
                              embedder=embedder, progress=False)
        full = summary.frames / (time.perf_counter() - began)

        began = time.perf_counter()
        n = 0
        for path in paths:
            file_examples = waveform_to_examples(decode_any(path))
            embedder.postprocess(embedder.embed(file_examples))
            n += len(file_examples)
        per_file = n / (time.perf_counter() - began)
    print(f"files: {args.files} x {args.seconds:g} s ({args.rate} Hz WAV), batch size {args.batch_size}, "
          f"{args.decode_threads} decode threads")
    print(f"(a) bare model inference       : {bare:7.1f} examples/s")
    print(f"(b) files -> TFRecord shards   : {full:7.1f} examples/s  ({summary.frames} examples, "
          f"{summary.shards} shards)")
    print(f"(c) one model call per file    : {per_file:7.1f} examples/s")
    print(f"ratios: (b)/(a) = {full / bare:.2f} (target >= 0.9), (b)/(c) = {full / per_file:.2f} (target >= 2)")


if __name__ == "__main__":
    main()
