"""Benchmark: `audiosetdl embed` (user files -> shards) against bare inference and one model call per file.

(a) bare model inference: pre-computed examples through `Embedder.embed` at the chosen batch size;
(b) the full path: N 10-s 44.1 kHz stereo FLAC files (`--files`, `--seconds`, `--rate`, `--container`)
    -> decoding in threads, a window at a time (PCM files in process by `audiosetdl.pcm`, exactly as
    ffmpeg would; anything else by ffmpeg), log-mel, batches spanning files, PCA and quantization ->
    TFRecord shards (`audiosetdl.embed.embed_paths`);
(c) the old `embed`: per file, decode with ffmpeg, features and one model call;
(d) one model call per file, decoding as (b) does: what batching and overlap alone give.
Targets (issue 9): (b) >= 0.9 x (a) and (b) >= 2 x (c). Each round runs (a), (b), (a) again, (c)
and (d); each ratio is the median over `--rounds` rounds of the ratio within a round ((b) against
the two bare runs around it), and each figure the median of its runs. Weights are random with the
official shapes (speed does not depend on their values).

    .venv/bin/python bench/embed.py [--files 240] [--seconds 10] [--rate 44100] [--container flac]
                                    [--batch-size 128] [--device gpu] [--precision tf32]
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
from extract_model import add_device_options, random_embedder  # noqa: E402

from audiosetdl.audio import decode_any, stream_audio  # noqa: E402
from audiosetdl.config import EmbedOptions, ExtractOptions  # noqa: E402
from audiosetdl.embed import embed_paths  # noqa: E402
from audiosetdl.vggish import waveform_to_examples  # noqa: E402


def make_files(root: Path, count: int, seconds: float = 10.0, rate: int = 44_100, container: str = "flac",
               channels: int = 2) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        path = root / f"{i % 7}" / f"clip{i:05d}.{container}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * (100 + 7 * i) * t)
        audio = np.stack([tone + 0.05 * rng.standard_normal(len(t)) for _ in range(channels)], axis=1)
        soundfile.write(str(path), audio.astype(np.float32), rate, subtype="PCM_16", format=container.upper())
        paths.append(path)
    return paths


def timed(run) -> float:
    """Examples per second of `run()`, which returns how many examples it made."""
    began = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - began)


def one_call_per_file(embedder, paths, decode) -> int:
    count = 0
    for path in paths:
        file_examples = waveform_to_examples(decode(path))
        embedder.postprocess(embedder.embed(file_examples))
        count += len(file_examples)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each file")
    parser.add_argument("--rate", type=int, default=44_100, help="sample rate of the files")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--container", default="flac", choices=("flac", "wav"))
    parser.add_argument("--batch-size", type=int, default=ExtractOptions().batch_size)
    parser.add_argument("--decode-threads", type=int, default=ExtractOptions().decode_threads)
    parser.add_argument("--rounds", type=int, default=3)
    add_device_options(parser)
    args = parser.parse_args()
    embedder = random_embedder(args)
    options = ExtractOptions(batch_size=args.batch_size, decode_threads=args.decode_threads)
    rounds = []  # per round: (a before b, b, a after b, c, d) in examples/s
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp) / "in", args.files, args.seconds, args.rate, args.container, args.channels)
        per_file = len(waveform_to_examples(decode_any(paths[0])))
        examples = np.concatenate([waveform_to_examples(decode_any(p))
                                   for p in paths[: -(-args.batch_size // max(1, per_file))]])[: args.batch_size]
        embedder.embed(examples)  # warm up (graph tracing); (a) runs whole batches of the chosen size
        total = per_file * len(paths)

        def bare() -> int:
            done = 0
            while done < total:
                embedder.embed(examples)
                done += len(examples)
            return done

        for round_index in range(args.rounds):
            out = Path(tmp) / f"out{round_index}"
            rounds.append((
                timed(bare),
                timed(lambda: embed_paths([Path(tmp) / "in"], out, options, EmbedOptions(shard_size=50),
                                          embedder=embedder, progress=False).frames),
                timed(bare),
                timed(lambda: one_call_per_file(embedder, paths, decode_any)),
                timed(lambda: one_call_per_file(embedder, paths,
                                                lambda p: np.concatenate(list(stream_audio(p, 16000 * 60))))),
            ))
    figures = np.array(rounds)
    median = {"a": np.median(figures[:, [0, 2]]), "b": np.median(figures[:, 1]), "c": np.median(figures[:, 3]),
            "d": np.median(figures[:, 4])}
    # Each ratio is taken within its round, (b) against the bare runs just before and after it: this
    # machine's speed drifts by a quarter from one minute to the next.
    ratio_a = np.median(figures[:, 1] / figures[:, [0, 2]].mean(axis=1))
    ratio_c, ratio_d = np.median(figures[:, 1] / figures[:, 3]), np.median(figures[:, 1] / figures[:, 4])
    print(f"files: {args.files} x {args.seconds:g} s ({args.rate} Hz, {args.channels} channels, {args.container}), "
          f"batch size {args.batch_size}, {args.decode_threads} decode threads, {embedder.device}, {args.precision}, "
          f"medians of {args.rounds} rounds")
    print(f"(a) bare model inference              : {median['a']:7.1f} examples/s")
    print(f"(b) files -> TFRecord shards          : {median['b']:7.1f} examples/s")
    print(f"(c) one call per file, ffmpeg decoding: {median['c']:7.1f} examples/s  (the old embed)")
    print(f"(d) one call per file, (b)'s decoding : {median['d']:7.1f} examples/s")
    print(f"ratios (medians of each round's): (b)/(a) = {ratio_a:.3f} (target >= 0.9), (b)/(c) = {ratio_c:.2f} "
          f"(target >= 2), (b)/(d) = {ratio_d:.2f}")
    print("rounds (a, b, a, c, d): " + "; ".join(" ".join(f"{x:.0f}" for x in r) for r in rounds))


if __name__ == "__main__":
    main()
