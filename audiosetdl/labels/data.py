"""AudioSet-schema TFRecords -> numpy arrays for the classifiers: frames, mask, multi-hot labels.

Owns the in-memory form of a labelled set. All records are read once (`tfrecords.read`; Google's
released files and ours alike) into

    ids       (N,)            str     video IDs
    starts    (N,)            float   segment start, seconds
    frames    (N, 10, 128)    uint8   the released bytes, zero-padded after the clip's last frame
    lengths   (N,)            int     true frame count, 1..10 (the mask is frames < length)
    labels    (N, classes)    uint8   multi-hot

Bytes stay uint8 here (22k clips are 28 MB); the classifier dequantizes them itself
(`model.py`), so a saved model takes the released bytes directly. Records with no frames are
skipped and records with more than `MAX_FRAMES` are cut to the segment's 10 s, both counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from audiosetdl import tfrecords
from audiosetdl.tfenv import import_tensorflow
from audiosetdl.labels import DataError
from audiosetdl.vggish.params import EMBEDDING_SIZE

tf = import_tensorflow()  # quietly, before anything else loads it

log = logging.getLogger(__name__)

MAX_FRAMES = 10  # an AudioSet segment is at most 10 s: ten 0.96 s embeddings
TFRECORD_PATTERN = "*.tfrecord"


@dataclass(frozen=True, eq=False)
class LabelledSet:
    ids: np.ndarray
    starts: np.ndarray
    frames: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    skipped_empty: int = 0
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def mask(self) -> np.ndarray:
        """(N, MAX_FRAMES) float32: 1 for a real frame, 0 for padding."""
        return mask_from_lengths(self.lengths, self.frames.shape[1])

    def subset(self, indices: np.ndarray) -> "LabelledSet":
        return LabelledSet(self.ids[indices], self.starts[indices], self.frames[indices], self.lengths[indices],
                           self.labels[indices])


def mask_from_lengths(lengths: np.ndarray, frames: int = MAX_FRAMES) -> np.ndarray:
    return (np.arange(frames)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


def tfrecord_files(sources: Iterable[str | Path]) -> list[Path]:
    """The TFRecord files named, and every `*.tfrecord` inside the directories named, sorted."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(path.glob(TFRECORD_PATTERN))
            if not found:
                raise DataError(f"{path}: no {TFRECORD_PATTERN} files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not files:
        raise DataError("no TFRecord files given")
    return files


def pad_frames(embeddings: Sequence[np.ndarray], max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length uint8 (frames, 128) arrays -> (N, max_frames, 128) zero-padded, and lengths."""
    out = np.zeros((len(embeddings), max_frames, EMBEDDING_SIZE), np.uint8)
    lengths = np.zeros(len(embeddings), np.int64)
    for row, embedding in enumerate(embeddings):
        embedding = np.asarray(embedding)
        if embedding.ndim != 2 or embedding.shape[1] != EMBEDDING_SIZE:
            raise DataError(f"embedding {row}: expected (frames, {EMBEDDING_SIZE}), got {embedding.shape}")
        count = min(len(embedding), max_frames)
        out[row, :count] = embedding[:count]
        lengths[row] = count
    return out, lengths


def _read_all(files: list[Path]) -> list[tfrecords.EmbeddingRecord]:
    """Every record, read through one TensorFlow reader (one reader per file costs ~0.1 s each);
    on a bad file, the files are read one by one to name it."""
    try:
        return list(tfrecords.read(files))
    except (tf.errors.OpError, ValueError):
        for path in files:
            try:
                list(tfrecords.read(path))
            except tf.errors.OpError as exc:
                raise DataError(f"{path}: not a readable TFRecord file ({exc.message.splitlines()[0]})") from None
            except ValueError as exc:
                raise DataError(f"{path}: {exc}") from None
        raise


def load(sources: Iterable[str | Path], num_classes: int) -> LabelledSet:
    """Every record of the files (or directories of `*.tfrecord`), in sorted file order."""
    ids, starts, embeddings, label_lists = [], [], [], []
    skipped = truncated = 0
    for record in _read_all(tfrecord_files(sources)):
        if record.num_frames == 0:
            skipped += 1
            continue
        if record.labels and (record.labels[0] < 0 or record.labels[-1] >= num_classes):
            raise DataError(f"record {record.video_id} (start {record.start:g}) has label {record.labels[-1]}, "
                            f"outside the {num_classes} classes of the label index")
        truncated += record.num_frames > MAX_FRAMES
        ids.append(record.video_id)
        starts.append(record.start)
        embeddings.append(record.embedding)
        label_lists.append(record.labels)
    if not ids:
        raise DataError("the TFRecord files hold no record with frames")
    if skipped or truncated:
        log.warning("%d records without frames skipped, %d longer than %d frames cut", skipped, truncated, MAX_FRAMES)
    frames, lengths = pad_frames(embeddings)
    labels = np.zeros((len(ids), num_classes), np.uint8)
    for row, labels_of in enumerate(label_lists):
        labels[row, list(labels_of)] = 1
    return LabelledSet(np.array(ids), np.array(starts, np.float64), frames, lengths, labels, skipped, truncated)


def split_holdout(data: LabelledSet, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet | None]:
    """(train, held-out): a seeded random `fraction` of the records held out (None when 0)."""
    if fraction <= 0:
        return data, None
    if fraction >= 1:
        raise DataError(f"holdout fraction must be below 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(data))
    count = int(round(fraction * len(data)))
    return data.subset(np.sort(order[count:])), data.subset(np.sort(order[:count]))
