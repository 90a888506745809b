"""Files fetched from their public URLs: AudioSet metadata (and any other fixed file set).

`download_file` is a resumable HTTP download: bytes go to `NAME.partial` beside the target
(kept across interruptions and resumed with a Range request), and the target name only
appears once the whole file is there and has passed its checks (size, checksum, structure).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from audiosetdl.rundir import sha256_of

log = logging.getLogger(__name__)

CSV_BASE_URL = "https://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/"
ONTOLOGY_BASE_URL = "https://raw.githubusercontent.com/audioset/ontology/master/"
PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 16  # small reads: a transfer cut mid-way keeps what arrived


class FetchError(RuntimeError):
    pass


def _check_segment_csv(path: Path) -> None:
    """The released CSVs state their row count in line 2 (`num_segs=N`): a cheap completeness check."""
    with open(path, encoding="utf-8") as fh:
        head = [next(fh, "") for _ in range(3)]
        rows = sum(1 for line in fh if line.strip() and not line.startswith("#"))
    if not head[0].startswith("# Segments csv") or "num_segs=" not in head[1]:
        raise FetchError(f"{path}: not an AudioSet segment CSV (unexpected header {head[0].strip()!r})")
    expected = int(head[1].split("num_segs=")[1].split(",")[0])
    if rows != expected:
        raise FetchError(f"{path}: {rows} rows, but its header says num_segs={expected} (incomplete download?)")


def _check_labels(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "index,mid,display_name" or len(lines) != 528:
        raise FetchError(f"{path}: expected the header 'index,mid,display_name' and 527 classes")


def _check_ontology(path: Path) -> None:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FetchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list) or not all("id" in e and "child_ids" in e for e in entries):
        raise FetchError(f"{path}: not an AudioSet ontology (a list of entries with 'id' and 'child_ids')")


@dataclass(frozen=True)
class RemoteFile:
    name: str
    base_url: str
    sha256: str | None = None  # known checksum of the released file, when we have one
    check: Callable[[Path], None] | None = None  # structural check


METADATA_FILES = (
    RemoteFile("eval_segments.csv", CSV_BASE_URL,
               "f7055f53935f70e74e39494a5c8c4c78f1700fce275028bd36e31186f33d45db", _check_segment_csv),
    RemoteFile("balanced_train_segments.csv", CSV_BASE_URL,
               "3b83e5ff9ed72cfda37d4e36ce08250e107c1ea70f109f6ab6668ac200db5e94", _check_segment_csv),
    RemoteFile("unbalanced_train_segments.csv", CSV_BASE_URL, None, _check_segment_csv),
    RemoteFile("class_labels_indices.csv", CSV_BASE_URL,
               "cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429", _check_labels),
    RemoteFile("ontology.json", ONTOLOGY_BASE_URL,
               "9c685f4403eecc3ca9be37fd7285cf212feaaea6ff7229d3e7ca89e0d1f2d15d", _check_ontology),
)


def _verify(remote: RemoteFile, path: Path) -> None:
    if remote.check is not None:
        remote.check(path)
    if remote.sha256 is not None:
        actual = sha256_of(path)
        if actual != remote.sha256:
            # The structure is fine, so the publisher changed the file: warn, do not refuse.
            log.warning("%s: sha256 %s differs from the released file's %s (updated upstream?)",
                        path, actual, remote.sha256)


Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes so far, total or None)


def download_file(url: str, dest: Path, *, attempts: int = 5, timeout: float = 60.0,
                  progress: Progress | None = None) -> Path:
    """Download `url` to `dest`, resuming `dest.partial` if an earlier attempt left one.

    Each attempt sends `Range: bytes=<have>-` when part of the file is there; a server that
    answers 200 instead restarts the file, one that answers 416 for a partial already whole
    finishes it. 403/404/410 are not retried.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    last_error: Exception | None = None
    attempt = 0
    for attempt in range(1, max(1, attempts) + 1):
        if attempt > 1:
            time.sleep(min(30.0, 2.0 ** attempt / 4))
        try:
            _fetch_once(url, partial, timeout, progress)
            os.replace(partial, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (403, 404, 410):
                break  # not there: retrying will not help
            log.info("%s: attempt %d failed (%s)", url, attempt, exc)
    raise FetchError(f"could not download {url} after {attempt} attempt(s): {last_error} "
                     + (f"(the partial file {partial} is kept: run the command again to resume)"
                        if partial.exists() else ""))


def _fetch_once(url: str, partial: Path, timeout: float, progress: Progress | None) -> None:
    """One request, appending to `partial`; raises unless `partial` then holds the whole file."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "audiosetdl"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            complete = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
            if complete and int(complete.group(1)) == have:
                return  # the partial was already whole (stopped before its rename)
            partial.unlink()  # longer than the file, or unknown: start over
        raise
    with response:
        total: int | None
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                partial.unlink()
                raise ValueError(f"server resumed at an unexpected place: {response.headers.get('Content-Range')!r}")
            total = None if match.group(2) == "*" else int(match.group(2))
            mode = "ab"
        else:  # a full response: the server ignored the Range header, or there was none
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            have, mode = 0, "wb"
        with open(partial, mode) as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                have += len(chunk)
                if progress:
                    progress(partial.name.removesuffix(PARTIAL_SUFFIX), have, total)
            out.flush()
            os.fsync(out.fileno())
    if total is not None and have != total:
        if have > total:
            partial.unlink()
            raise ValueError(f"received {have} bytes, more than the {total} announced")
        raise ValueError(f"connection ended after {have} of {total} bytes")


class TqdmProgress:
    """A `Progress` callback drawing one tqdm bar per file."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, name: str, have: int, total: int | None) -> None:
        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)
        bar.update(have - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def fetch_files(files: tuple[RemoteFile, ...], directory: Path, *, mirror: str | None = None,
                progress: bool = True) -> list[tuple[str, str]]:
    """Fetch each file into `directory` unless a verified copy is there; returns (name, what happened)."""
    directory = Path(directory)
    results = []
    for remote in files:
        dest = directory / remote.name
        if dest.exists():
            try:
                _verify(remote, dest)
                results.append((remote.name, "present"))
                continue
            except FetchError as exc:
                log.warning("%s; downloading it again", exc)
                dest.unlink()
        url = (mirror.rstrip("/") + "/" if mirror else remote.base_url) + remote.name
        bars = TqdmProgress() if progress else None
        try:
            download_file(url, dest, progress=bars)
        finally:
            if bars:
                bars.close()
        try:
            _verify(remote, dest)
        except FetchError:
            bad = dest.with_name(dest.name + ".bad")
            shutil.move(dest, bad)
            raise
        results.append((remote.name, "downloaded"))
    return results


def fetch_metadata(directory: Path, *, mirror: str | None = None, include_unbalanced: bool = True,
                   progress: bool = True) -> list[tuple[str, str]]:
    files = tuple(f for f in METADATA_FILES if include_unbalanced or f.name != "unbalanced_train_segments.csv")
    return fetch_files(files, directory, mirror=mirror, progress=progress)
