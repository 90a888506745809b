"""AudioSet segment CSVs: parsing, validation and writing, exactly in the released format.

A released segment file looks like this (LF line ends, `, ` separators, quoted label list):

    # Segments csv created Sun Mar  5 10:54:25 2017
    # num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804
    # YTID, start_seconds, end_seconds, positive_labels
    --4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/0jbk"

Real quirks handled here: IDs may start with `-` (392 in eval), segments may be shorter
than 10 s (361 in eval). A malformed row raises `SegmentFormatError` naming file and line,
or is collected as a `BadRow` when the caller asks to skip bad rows.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

YTID_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}")
MID_PATTERN = re.compile(r"/[a-z]/[A-Za-z0-9_]+")
HEADER_COLUMNS = "# YTID, start_seconds, end_seconds, positive_labels"
# A row exactly as released: `YTID, start, end, "labels"` (the fast path's whole-file check).
_RELEASED_ROW = r'^(?P<ytid>[A-Za-z0-9_-]{11}), (?P<start>[^,"]*), (?P<end>[^,"]*), "(?P<labels>[^"]*)"$'

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


@dataclass
class SegmentTable:
    """A parsed segment CSV as Arrow columns: `ytid`, `start`, `end` (float64), `labels` (the
    comma-joined MIDs) and `line` (the row's text). The planner works on these, so 2 million
    rows never become 2 million Python objects."""

    path: Path
    subset: str
    columns: pa.Table
    bad_rows: list[BadRow] = field(default_factory=list)

    def __len__(self) -> int:
        return self.columns.num_rows

    def segments(self) -> Iterator[Segment]:
        columns = self.columns.select(["ytid", "start", "end", "labels"]).to_pydict()
        for ytid, start, end, labels in zip(columns["ytid"], columns["start"], columns["end"], columns["labels"]):
            yield Segment(ytid, start, end, tuple(labels.split(",")), self.subset)


@dataclass
class SegmentFile:
    """The parsed contents of one segment CSV."""

    path: Path
    subset: str
    segments: list[Segment]
    bad_rows: list[BadRow] = field(default_factory=list)


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


def _read_rows_exact(path: Path, subset: str, known_mids, skip_bad_rows: bool) -> tuple[list[Segment], list[BadRow]]:
    """Row-by-row parse: slow, but names the file and line of every problem."""
    segments: list[Segment] = []
    bad: list[BadRow] = []
    for lineno, line in iter_rows(path):
        try:
            segments.append(parse_row(line, subset, known_mids))
        except ValueError as exc:
            if not skip_bad_rows:
                raise SegmentFormatError(path, lineno, str(exc), line) from None
            bad.append(BadRow(str(path), lineno, str(exc)))
    return segments, bad


def _header_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.startswith(b"#"):
                break
            count += 1
    return count


def _read_table_fast(path: Path, known_mids) -> pa.Table | None:
    """Columnar parse with Arrow; None if any row might be malformed.

    Accepts only rows in the released layout that `parse_row` accepts, or gives up, so the
    caller falls back to the exact parser, which then names the bad line. Planning the
    2-million-row unbalanced list depends on this path (see bench/plan.py).
    """
    try:
        lines = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=["line"], skip_rows=_header_lines(path), block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
        ).column("line").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
        return None
    if len(lines) == 0:
        return pa.table({"ytid": pa.array([], pa.string()), "start": pa.array([], pa.float64()),
                         "end": pa.array([], pa.float64()), "labels": pa.array([], pa.string()), "line": lines})
    # One pass checks the released layout and the ID; rows that do not match come back null.
    fields = pc.extract_regex(lines, _RELEASED_ROW)
    if fields.null_count:
        return None
    ytid, start_text, end_text, labels = (fields.field(name) for name in ("ytid", "start", "end", "labels"))
    try:
        start, end = pc.cast(start_text, pa.float64()), pc.cast(end_text, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    start_np, end_np = start.to_numpy(), end.to_numpy()
    if not (np.isfinite(start_np).all() and np.isfinite(end_np).all() and (start_np >= 0).all()
            and (end_np > start_np).all()):
        return None
    distinct = set(pc.unique(pc.list_flatten(pc.split_pattern(labels, ","))).to_pylist())
    if known_mids is not None:
        if not distinct <= known_mids:
            return None
    elif not all(MID_PATTERN.fullmatch(label) for label in distinct):
        return None  # also catches empty lists, empty labels and space-padded ones
    return pa.table({"ytid": ytid, "start": start, "end": end, "labels": labels, "line": lines})


def read_segment_table(
    path: str | Path,
    *,
    subset: str | None = None,
    known_mids: Collection[str] | None = None,
    skip_bad_rows: bool = False,
) -> SegmentTable:
    """Read and validate a whole segment CSV into columns (fast path for big files).

    `known_mids`: when given (the class label index is loaded), unknown label MIDs are errors.
    `skip_bad_rows`: collect malformed rows as `BadRow`s instead of raising `SegmentFormatError`.
    """
    path = Path(path)
    subset = subset if subset is not None else subset_name(path)
    if not path.is_file():
        raise FileNotFoundError(f"segment CSV not found: {path}")
    if known_mids is not None and not isinstance(known_mids, (set, frozenset, dict)):
        known_mids = frozenset(known_mids)
    table = _read_table_fast(path, known_mids)
    bad: list[BadRow] = []
    if table is None:
        segments, bad = _read_rows_exact(path, subset, known_mids, skip_bad_rows)
        table = pa.table({
            "ytid": pa.array([s.ytid for s in segments], pa.string()),
            "start": pa.array([s.start for s in segments], pa.float64()),
            "end": pa.array([s.end for s in segments], pa.float64()),
            "labels": pa.array([",".join(s.labels) for s in segments], pa.string()),
            "line": pa.array([format_row(s) for s in segments], pa.string()),
        })
    return SegmentTable(path, subset, table, bad)


def read_segments(path: str | Path, **kwargs) -> SegmentFile:
    """Read and validate a whole segment CSV into `Segment`s (see `read_segment_table`)."""
    table = read_segment_table(path, **kwargs)
    return SegmentFile(table.path, table.subset, list(table.segments()), table.bad_rows)


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
