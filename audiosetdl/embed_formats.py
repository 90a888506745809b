"""`embed`'s shard files: TFRecord (the released schemas), npz or parquet, each written atomically.

A shard holds whole records (one per input file), as built by the model adapter
(`audiosetdl.extract_models`): `record.video_id`, `.start`, `.end`, `.embedding` (N, D) and,
for YAMNet, `.scores` (N, 521). Layouts:

- `tfrecord`: `tfrecords.write` (VGGish) or `yamnet_tfrecords.write` (YAMNet), as `extract`.
- `npz`: `video_id` (R,) str, `start_seconds` / `end_seconds` (R,) float64, `offsets` (R + 1,)
  int64 (record r's frames are rows `offsets[r]:offsets[r + 1]`), `frame_start_seconds` (F,)
  float64 (each frame's start in its file), `embedding` (F, 128) uint8 or (F, 1024) float32
  (float16 with `--yamnet-dtype float16`), and for YAMNet `scores` (F, 521).
- `parquet`: one row per frame: `video_id` string, `frame` int32, `start_seconds` float64,
  `embedding` fixed-size list (128 uint8 or 1024 floats), and for YAMNet `scores` (521 floats).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosetdl.rundir import atomic_open, atomic_path
from audiosetdl.vggish.params import SAMPLE_RATE

SUFFIXES = {"tfrecord": ".tfrecord", "npz": ".npz", "parquet": ".parquet"}


def _frames(records: list, hop_seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(r.embedding) for r in records])]).astype(np.int64)
    embedding = np.concatenate([r.embedding for r in records])
    scores = np.concatenate([r.scores for r in records]) if hasattr(records[0], "scores") else None
    starts = np.concatenate([np.arange(len(r.embedding)) * hop_seconds for r in records]).astype(np.float64)
    return offsets, embedding, scores, starts


def _write_npz(path: Path, records: list, hop_seconds: float) -> None:
    offsets, embedding, scores, starts = _frames(records, hop_seconds)
    arrays = {
        "video_id": np.array([r.video_id for r in records], dtype=str),
        "start_seconds": np.array([r.start for r in records], np.float64),
        "end_seconds": np.array([r.end for r in records], np.float64),
        "offsets": offsets, "frame_start_seconds": starts, "embedding": embedding,
    }
    if scores is not None:
        arrays["scores"] = scores
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _write_parquet(path: Path, records: list, hop_seconds: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets, embedding, scores, starts = _frames(records, hop_seconds)
    counts = np.diff(offsets)
    columns = {
        "video_id": pa.array(np.repeat(np.array([r.video_id for r in records], dtype=object), counts), pa.string()),
        "frame": pa.array(np.concatenate([np.arange(n) for n in counts]).astype(np.int32)),
        "start_seconds": pa.array(starts),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), embedding.shape[1]),
    }
    if scores is not None:
        columns["scores"] = pa.FixedSizeListArray.from_arrays(pa.array(scores.reshape(-1)), scores.shape[1])
    with atomic_path(path) as temporary:
        pq.write_table(pa.table(columns), str(temporary))


def write_shard(path: Path, records: list, fmt: str, adapter) -> None:
    """Write `records` to the shard `path` in format `fmt`, atomically."""
    hop_seconds = adapter.hop_samples / SAMPLE_RATE
    if fmt == "tfrecord":
        adapter.write(path, records)
    elif fmt == "npz":
        _write_npz(path, records, hop_seconds)
    else:
        _write_parquet(path, records, hop_seconds)
