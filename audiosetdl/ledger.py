"""The status ledger: one append-only JSON-lines file per task, `RUN/status/NNNNN.jsonl`.

Every download attempt of every segment appends one `Attempt` record and flushes it, so a
crash loses at most the attempt in flight. The ledger is what resume decisions, `status` and
the final report are made from; later records of a segment supersede earlier ones.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class Attempt:
    """What happened to one segment in one attempt."""

    ytid: str
    subset: str
    start: float
    end: float
    outcome: str  # OK or FAILED
    reason: str = ""  # a `download.errors.Reason` code when failed
    permanent: bool = False
    message: str = ""  # the source's text, the ID stripped
    attempt: int = 1
    bytes: int = 0  # bytes fetched from the source
    seconds: float = 0.0
    timestamp: float = field(default_factory=time.time)
    padded: float = 0.0  # seconds of silence added because the video ended before the segment
    client: str = ""  # the YouTube player client that made the clip or met the failure ("" elsewhere)
    format_id: str = ""  # the format it was cut from (or failed on)
    method: str = ""  # how: "index" (DASH index), "hls", "fallback" (chunking proxy), "ytdlp" (yt-dlp's downloader)
    notes: str = ""  # what yt-dlp said about formats it skipped (PO token, SABR), "; "-separated
    final: bool = False  # a failure that settled the segment for this run (its retries spent)

    @property
    def key(self) -> tuple[str, str, float, float]:
        return (self.subset, self.ytid, self.start, self.end)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


_FIELDS = {f.name for f in fields(Attempt)}


def read_ledger(path: str | Path) -> Iterator[Attempt]:
    """Every record of a ledger, oldest first. A torn last line (a crash mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # torn write: the process died mid-record
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            yield Attempt(**{k: v for k, v in raw.items() if k in _FIELDS})


def latest(records: Iterable[Attempt]) -> dict[tuple[str, str, float, float], Attempt]:
    """The last record of each segment."""
    result: dict[tuple[str, str, float, float], Attempt] = {}
    for record in records:
        result[record.key] = record
    return result


LEDGER_COLUMNS = ("ytid", "subset", "start", "end", "outcome", "reason", "message", "seconds", "timestamp",
                  "client", "method", "notes")
SEGMENT_KEY = ["subset", "ytid", "start", "end"]


def ledger_frame(path: str | Path):
    """A ledger's records (LEDGER_COLUMNS) as a pandas DataFrame, oldest first.

    Arrow's JSON reader parses millions of records in seconds; a torn last line is ignored, and
    a damaged line anywhere sends the file through `read_ledger`, which skips it.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        data = b""
    data = data[: data.rfind(b"\n") + 1]
    if data:
        schema = pa.schema([(c, pa.float64() if c in ("start", "end", "seconds", "timestamp") else pa.string())
                            for c in LEDGER_COLUMNS])
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        try:
            return pa_json.read_json(io.BytesIO(data), parse_options=options).to_pandas()
        except pa.ArrowInvalid:
            pass
    return pd.DataFrame([[getattr(r, c) for c in LEDGER_COLUMNS] for r in read_ledger(path)], columns=LEDGER_COLUMNS)


class LedgerWriter:
    """Appends records to one task's ledger, flushed and fsynced per record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        # A crash mid-write leaves a last line without "\n": cut it so the next record starts clean.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def append(self, record: Attempt) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "LedgerWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
