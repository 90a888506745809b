"""AudioSet segment CSVs: parsing, validation and writing, exactly in the released format.

A released segment file looks like this (LF line ends, `, ` separators, quoted label list):

    # Segments csv created Sun Mar  5 10:54:25 2017
    # num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804
    # YTID, start_seconds, end_seconds, positive_labels
    --4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/0jbk"

Real quirks handled here: IDs may start with `-` (392 in eval), segments may be shorter
than 10 s (361 in eval). A malformed row raises `SegmentFormatError` naming file and line,
or is collected as a `BadRow` when the caller asks to skip bad rows. Whole files are read by
`segment_table` (columnar, for the 2-million-row list).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Iterator


YTID_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}")
MID_PATTERN = re.compile(r"/[a-z]/[A-Za-z0-9_]+")
HEADER_COLUMNS = "# YTID, start_seconds, end_seconds, positive_labels"

# Released file names -> the subset names used by the released features' folders.
SUBSET_BY_FILENAME = {
    "eval_segments.csv": "eval",
    "balanced_train_segments.csv": "bal_train",
    "unbalanced_train_segments.csv": "unbal_train",
}


def subset_name(path: str | Path) -> str:
    """`eval_segments.csv` -> `eval`, ...; any other CSV -> its stem."""
    path = Path(path)
    return SUBSET_BY_FILENAME.get(path.name, path.stem)


@dataclass(slots=True)
class Segment:
    """One 10-second (or shorter) piece of one YouTube video, with its positive labels (MIDs)."""

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...]
    subset: str = ""

    @property
    def prefix(self) -> str:
        """First two characters of the ID: the output key inside a subset."""
        return self.ytid[:2]

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def key(self) -> tuple[str, str, float, float]:
        """Identity of a segment inside a plan."""
        return (self.subset, self.ytid, self.start, self.end)


class SegmentFormatError(ValueError):
    """A malformed row; the message names the file and line."""

    def __init__(self, path: str | Path, lineno: int, problem: str, line: str = ""):
        self.path, self.lineno, self.problem, self.line = str(path), lineno, problem, line
        shown = f": {line.strip()[:120]!r}" if line else ""
        super().__init__(f"{path}:{lineno}: {problem}{shown}")


@dataclass(frozen=True)
class BadRow:
    path: str
    lineno: int
    problem: str


def _split_row(line: str) -> list[str]:
    # Fast path for the released layout; csv handles anything else (other spacing, quoting).
    parts = line.split(", ", 3)
    if len(parts) == 4 and len(parts[3]) >= 2 and parts[3][0] == '"' and parts[3][-1] == '"' \
            and '"' not in parts[3][1:-1]:
        parts[3] = parts[3][1:-1]
        return parts
    try:  # strict: otherwise csv quietly closes a quote left open at the end of the line
        fields = next(csv.reader([line], skipinitialspace=True, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise ValueError('unterminated quote: the row ends inside a "quoted" field (a truncated line?)') from None
        fields = next(csv.reader([line], skipinitialspace=True))  # e.g. a space after a closing quote: tolerated
    return [p.strip() for p in fields]


def _parse_time(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{what} {text!r} is negative")
    return value


def parse_row(line: str, subset: str = "", known_mids: Collection[str] | None = None) -> Segment:
    """Parse one data row; raise ValueError describing the problem (without file/line)."""
    parts = _split_row(line)
    if len(parts) != 4:
        raise ValueError(f"expected 4 fields (YTID, start, end, \"labels\"), found {len(parts)}")
    ytid, start_text, end_text, label_text = parts
    if not YTID_PATTERN.fullmatch(ytid):
        raise ValueError(f"bad YouTube ID {ytid!r} (11 characters of A-Z a-z 0-9 _ -)")
    start = _parse_time(start_text, "start")
    end = _parse_time(end_text, "end")
    if end <= start:
        raise ValueError(f"end {end_text} is not after start {start_text}")
    labels = tuple(label.strip() for label in label_text.split(",")) if label_text.strip() else ()
    if not labels:
        raise ValueError("no labels")
    for label in labels:
        if known_mids is not None:
            if label not in known_mids:
                raise ValueError(f"unknown label {label!r} (not in the class label index)")
        elif not MID_PATTERN.fullmatch(label):
            raise ValueError(f"bad label {label!r} (expected a MID such as /m/09x0r)")
    return Segment(ytid, start, end, labels, subset)


def iter_rows(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, row text) for every data row; comment and blank lines are skipped."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            yield lineno, line


def format_time(value: float) -> str:
    """Seconds as the released files write them (`30.000`), without losing finer values."""
    text = f"{value:.3f}"
    return text if float(text) == value else repr(value)


def format_row(segment: Segment) -> str:
    return f'{segment.ytid}, {format_time(segment.start)}, {format_time(segment.end)}, "{",".join(segment.labels)}"'


def header_lines(segments: Iterable[Segment], title: str) -> list[str]:
    """The three `#` lines of a segment CSV, with the counts the released files carry."""
    segments = list(segments)
    labels = [label for s in segments for label in s.labels]
    return [
        f"# {title}",
        f"# num_ytids={len({s.ytid for s in segments})}, num_segs={len(segments)}, "
        f"num_unique_labels={len(set(labels))}, num_positive_labels={len(labels)}",
        HEADER_COLUMNS,
    ]


def render_csv(segments: Iterable[Segment], title: str) -> str:
    """A complete segment CSV in the released format (LF line ends)."""
    segments = list(segments)
    lines = header_lines(segments, title) + [format_row(s) for s in segments]
    return "\n".join(lines) + "\n"
