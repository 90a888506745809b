"""YAMNet TFRecords: one `tf.train.SequenceExample` per segment, with YAMNet's own feature lists.

Owns the on-disk format `audiosetdl extract --model yamnet` and `embed --model yamnet` write:

    context       video_id, start_time_seconds, end_time_seconds, labels, id (optional):
                  exactly the AudioSet context of `audiosetdl.tfrecords`
    feature list  yamnet_embedding  one bytes feature per patch (0.96 s of audio, one every
                                    0.48 s; patch i starts at 0.48 i s into the segment):
                                    1024 little-endian floats, float32 (4096 bytes, the default)
                                    or float16 (2048 bytes, `--yamnet-dtype float16`)
                  yamnet_scores     one bytes feature per patch, aligned with the embeddings:
                                    the 521 sigmoid class scores, same float type, in the
                                    column order of yamnet_class_map.csv (`yamnet.classmap`
                                    maps them to AudioSet's 527 label indices)

The float type is told by the byte length (4096 or 2048 per embedding), so a reader needs no
option. float32 is the default because it is what the network computes (the reference's
outputs, unrounded); float16 halves the files (a 10 s clip: 20 patches, 62 KB instead of
124 KB) at a relative error up to 2^-11 (about 5e-4; an absolute one under 6e-8 for scores
below float16's normal range, 6e-5). Unlike the released VGGish bytes there is no PCA
and no 8-bit quantization: the reference defines none for YAMNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from audiosetdl import tfrecords
from audiosetdl.tfenv import import_tensorflow
from audiosetdl.yamnet.params import EMBEDDING_SIZE, NUM_CLASSES, OUTPUT_DTYPES

tf = import_tensorflow()  # quietly (audiosetdl.tfenv)

YAMNET_EMBEDDING = "yamnet_embedding"
YAMNET_SCORES = "yamnet_scores"
DTYPES = {name: np.dtype(name).newbyteorder("<") for name in OUTPUT_DTYPES}  # little-endian


@dataclass(frozen=True, eq=False)
class YAMNetRecord:
    """One segment's YAMNet output: embedding (patches, 1024) and scores (patches, 521), float32 or float16."""

    video_id: str
    start: float
    end: float
    labels: tuple[int, ...]
    embedding: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(sorted(int(label) for label in self.labels)))
        embedding, scores = np.asarray(self.embedding), np.asarray(self.scores)
        if embedding.dtype not in DTYPES.values() or scores.dtype != embedding.dtype:
            raise ValueError(f"{self.video_id}: embedding and scores must share float32 or float16, "
                             f"got {embedding.dtype} and {scores.dtype}")
        if embedding.shape != (len(embedding), EMBEDDING_SIZE) or scores.shape != (len(embedding), NUM_CLASSES):
            raise ValueError(f"{self.video_id}: expected (N, {EMBEDDING_SIZE}) and (N, {NUM_CLASSES}), "
                             f"got {embedding.shape} and {scores.shape}")
        object.__setattr__(self, "embedding", embedding.astype(embedding.dtype.newbyteorder("<"), copy=False))
        object.__setattr__(self, "scores", scores.astype(scores.dtype.newbyteorder("<"), copy=False))

    @property
    def num_frames(self) -> int:
        return len(self.embedding)


def serialize(record: YAMNetRecord, *, include_id: bool = True) -> bytes:
    example = tfrecords.write_context(tf.train.SequenceExample(), record, include_id=include_id)
    for name, values in ((YAMNET_EMBEDDING, record.embedding), (YAMNET_SCORES, record.scores)):
        frames = example.feature_lists.feature_list[name].feature
        for row in values:
            frames.add().bytes_list.value.append(row.tobytes())
    return example.SerializeToString()


def _frames(example: tf.train.SequenceExample, name: str, width: int, video_id: str) -> np.ndarray:
    values = [feature.bytes_list.value for feature in example.feature_lists.feature_list[name].feature]
    if any(len(value) != 1 for value in values):
        raise ValueError(f"{video_id}: {name} frames must hold one bytes value each")
    sizes = {len(value[0]) for value in values}
    by_size = {width * dtype.itemsize: dtype for dtype in DTYPES.values()}
    if len(sizes) > 1 or not sizes <= set(by_size):
        raise ValueError(f"{video_id}: {name} frames of {sorted(sizes)} bytes, expected {sorted(by_size)}")
    dtype = by_size[sizes.pop()] if sizes else DTYPES["float32"]
    return np.frombuffer(b"".join(value[0] for value in values), dtype=dtype).reshape(len(values), width)


def parse(serialized: bytes) -> YAMNetRecord:
    example = tf.train.SequenceExample.FromString(serialized)
    video_id, start, end, labels = tfrecords.read_context(example)
    for name in (YAMNET_EMBEDDING, YAMNET_SCORES):
        if name not in example.feature_lists.feature_list:
            raise ValueError(f"{video_id}: not a YAMNet record (feature list {name!r} is missing)")
    embedding = _frames(example, YAMNET_EMBEDDING, EMBEDDING_SIZE, video_id)
    return YAMNetRecord(video_id, start, end, labels, embedding, _frames(example, YAMNET_SCORES, NUM_CLASSES, video_id))


def write(path: str | Path, records: Iterable[YAMNetRecord], *, include_id: bool = True) -> int:
    """Write records to one TFRecord file, atomically; return how many were written."""
    return tfrecords.write_serialized(path, (serialize(record, include_id=include_id) for record in records))


def read(paths: str | Path | Iterable[str | Path]) -> Iterator[YAMNetRecord]:
    """Every record of one file or several, in file order."""
    for serialized in tfrecords.read_serialized(paths):
        yield parse(serialized)


def parse_sequence_example(serialized: tf.Tensor, dtype: str = "float32") -> dict[str, tf.Tensor]:
    """For `TFRecordDataset.map`: video_id, start, end, labels, embedding (N, 1024) and scores
    (N, 521) as `dtype` (the float type the files were written with)."""
    context, sequences = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            tfrecords.VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
            tfrecords.START_TIME: tf.io.FixedLenFeature([], tf.float32),
            tfrecords.END_TIME: tf.io.FixedLenFeature([], tf.float32),
            tfrecords.LABELS: tf.io.VarLenFeature(tf.int64),
        },
        sequence_features={name: tf.io.FixedLenSequenceFeature([], tf.string)
                           for name in (YAMNET_EMBEDDING, YAMNET_SCORES)},
    )
    out_type = tf.as_dtype(dtype)

    def decode(name: str, width: int) -> tf.Tensor:
        return tf.reshape(tf.io.decode_raw(sequences[name], out_type, little_endian=True), [-1, width])

    return {
        "video_id": context[tfrecords.VIDEO_ID],
        "start": context[tfrecords.START_TIME],
        "end": context[tfrecords.END_TIME],
        "labels": tf.sparse.to_dense(context[tfrecords.LABELS]),
        "embedding": decode(YAMNET_EMBEDDING, EMBEDDING_SIZE),
        "scores": decode(YAMNET_SCORES, NUM_CLASSES),
    }
