"""Whole segment CSVs read at once, as Arrow columns: the fast path that plans the 2-million-row
unbalanced list without 2 million Python objects, falling back to the row-by-row parser
(`segments.parse_row`), which names the file and line of a bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from audiosetdl.metadata.segments import (
    MID_PATTERN, BadRow, Segment, SegmentFormatError, format_row, iter_rows, parse_row, subset_name,
)

# A row exactly as released: `YTID, start, end, "labels"` (the fast path's whole-file check).
_RELEASED_ROW = r'^(?P<ytid>[A-Za-z0-9_-]{11}), (?P<start>[^,"]*), (?P<end>[^,"]*), "(?P<labels>[^"]*)"$'


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
