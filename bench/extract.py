"""Benchmark: the extract stage's full path against bare inference and one model call per clip.

(a) bare model inference: pre-computed examples through `Embedder.embed` at the chosen batch size;
(b) the full path: 200 FLAC clips of a planned run -> decode, log-mel, batched VGGish, PCA and
    quantization -> per-key TFRecords (`audiosetdl.extract.run_task`);
(c) the reference demo's way: per clip, decode, features and one model call.
Targets (issue 4): (b) >= 0.9 x (a) and (b) >= 2 x (c). Weights are random with the official
shapes (speed does not depend on their values).

    .venv/bin/python bench/extract.py [--clips 200] [--batch-size 128] [--device gpu] [--precision tf32]

On a GPU machine, bench/gpu.sh runs this and bench/embed.py in fp32 and TF32, and bench/precision.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_model import add_device_options, random_embedder  # noqa: E402

from audiosetdl.audio import read_clip  # noqa: E402
from audiosetdl.config import ExtractOptions, PlanOptions  # noqa: E402
from audiosetdl.extract import run_task  # noqa: E402
from audiosetdl.metadata.segments import Segment, render_csv  # noqa: E402
from audiosetdl.plan import load_plan, load_task, write_plan  # noqa: E402
from audiosetdl.planner import build_plan  # noqa: E402
from audiosetdl.rundir import RunDir  # noqa: E402
from audiosetdl.vggish import waveform_to_examples  # noqa: E402

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset" / "class_labels_indices.csv"


def make_run(root: Path, clips: int) -> RunDir:
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789")
    segments = [Segment("".join(rng.choice(alphabet, 11)), 10.0 * (i % 3), 10.0 * (i % 3) + 10, ("/m/09x0r",))
                for i in range(clips)]
    csv = root / "eval_segments.csv"
    csv.write_text(render_csv(segments, "bench"))
    if LABELS.exists():
        shutil.copy(LABELS, root / "class_labels_indices.csv")
    else:
        (root / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n')
    run = RunDir(root / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=1, labels=False)))
    t = np.arange(160_000) / 16000
    for i, segment in enumerate(load_task(run, load_plan(run), 0)):
        path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = 0.3 * np.sin(2 * np.pi * (100 + 7 * i) * t) + 0.05 * rng.standard_normal(len(t))
        soundfile.write(str(path), audio.astype(np.float32), 16000, subtype="PCM_16", format="FLAC")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=ExtractOptions().batch_size)
    parser.add_argument("--decode-threads", type=int, default=ExtractOptions().decode_threads)
    add_device_options(parser)
    args = parser.parse_args()
    embedder = random_embedder(args)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), args.clips)
        segments = load_task(run, load_plan(run), 0)
        paths = [run.clip_path(s.subset, s.ytid, s.start, s.end) for s in segments]
        examples = np.concatenate([waveform_to_examples(read_clip(p)) for p in paths[:20]])
        embedder.embed(examples[: args.batch_size])  # warm up (graph tracing)

        began = time.perf_counter()
        n = 0
        while n < 10 * args.clips:
            embedder.embed(examples)
            n += len(examples)
        bare = n / (time.perf_counter() - began)

        began = time.perf_counter()
        summary = run_task(run, 0, ExtractOptions(batch_size=args.batch_size, decode_threads=args.decode_threads),
                           embedder=embedder, progress=False)
        full = summary.examples / (time.perf_counter() - began)

        began = time.perf_counter()
        n = 0
        for path in paths:
            clip_examples = waveform_to_examples(read_clip(path))
            embedder.postprocess(embedder.embed(clip_examples))
            n += len(clip_examples)
        per_clip = n / (time.perf_counter() - began)
    print(f"clips: {args.clips} x 10 s, batch size {args.batch_size}, {embedder.device}, {args.precision}")
    print(f"(a) bare model inference      : {bare:7.1f} examples/s")
    print(f"(b) FLAC clips -> TFRecords   : {full:7.1f} examples/s  ({summary.examples} examples, "
          f"{summary.keys_written} keys)")
    print(f"(c) one model call per clip   : {per_clip:7.1f} examples/s")
    print(f"ratios: (b)/(a) = {full / bare:.2f} (target >= 0.9), (b)/(c) = {full / per_clip:.2f} (target >= 2)")


if __name__ == "__main__":
    main()
