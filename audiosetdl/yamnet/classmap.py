"""YAMNet's 521 classes (`yamnet_class_map.csv`) and their place among AudioSet's 527.

Owns the class map file (`index,mid,display_name`, rows 0..520 in output order, the format
of `class_labels_indices.csv`, read by the same parser) and the mapping by MID between the
model's 521 score columns and the 527 AudioSet label indices of the released TFRecords.

YAMNet's README says six AudioSet classes were dropped on its fairness reviewers' advice: the
gendered kinds of speech and singing, Battle cry and Funny music. Checked against the
released files, they are (AudioSet index, MID, name):

     1  /m/05zppz   Male speech, man speaking
     2  /m/02zsn    Female speech, woman speaking
    12  /m/04gy_2   Battle cry
    32  /t/dd00003  Male singing
    33  /t/dd00004  Female singing
   277  /t/dd00032  Funny music

Every other AudioSet class is in the map, in AudioSet's order, so YAMNet column i is AudioSet
index i + (how many of the six come before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.yamnet import params

# The six AudioSet classes YAMNet has no output for: MID -> display name.
ABSENT_CLASSES: dict[str, str] = {
    "/m/05zppz": "Male speech, man speaking",
    "/m/02zsn": "Female speech, woman speaking",
    "/m/04gy_2": "Battle cry",
    "/t/dd00003": "Male singing",
    "/t/dd00004": "Female singing",
    "/t/dd00032": "Funny music",
}


class ClassMapError(ValueError):
    """The class map is unreadable, or does not fit AudioSet's class index."""


@dataclass(frozen=True)
class ClassMap:
    """The model's output columns: `mids[i]` and `names[i]` describe score column i."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.mids)

    def top(self, scores: np.ndarray, n: int = 5) -> list[tuple[str, float]]:
        """The `n` best (name, score) of one row of scores (or of a clip's mean scores), best first."""
        scores = np.asarray(scores)
        order = np.argsort(scores)[::-1][:n]
        return [(self.names[i], float(scores[i])) for i in order]

    def audioset_indices(self, audioset: ClassIndex) -> np.ndarray:
        """int64 (521,): the AudioSet label index of each column, checking the six-class gap.

        `ClassMapError` if a column's MID is not an AudioSet class, or if the AudioSet classes
        without a column are not exactly `ABSENT_CLASSES`.
        """
        index_of = audioset.index_of
        unknown = [mid for mid in self.mids if mid not in index_of]
        if unknown:
            raise ClassMapError(f"class map MIDs not in AudioSet's class index: {unknown[:5]}")
        uncovered = set(audioset.mids) - set(self.mids)
        if uncovered != set(ABSENT_CLASSES):
            raise ClassMapError(f"AudioSet classes without a YAMNet column: {sorted(uncovered)}, "
                                f"expected the six {sorted(ABSENT_CLASSES)}")
        return np.array([index_of[mid] for mid in self.mids], dtype=np.int64)

    def scores_to_audioset(self, scores: np.ndarray, audioset: ClassIndex) -> np.ndarray:
        """(N, 521) scores -> float32 (N, 527) in AudioSet's columns; NaN for the six absent classes."""
        scores = np.asarray(scores, dtype=np.float32)
        out = np.full(scores.shape[:-1] + (len(audioset),), np.nan, dtype=np.float32)
        out[..., self.audioset_indices(audioset)] = scores
        return out


def load_class_map(path: str | Path) -> ClassMap:
    """Read `yamnet_class_map.csv`; `ClassMapError` unless it has the header and 521 rows 0..520."""
    path = Path(path)
    try:
        table = ClassIndex.load(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ClassMapError(f"cannot read the YAMNet class map {path}: {exc}") from None
    if len(table) != params.NUM_CLASSES:
        raise ClassMapError(f"{path}: {len(table)} classes, expected {params.NUM_CLASSES}")
    if len(set(table.mids)) != len(table.mids):
        raise ClassMapError(f"{path}: repeated MIDs")
    return ClassMap(table.mids, table.names)
