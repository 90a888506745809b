"""Files fetched from their public URLs: AudioSet metadata (and any other fixed file set).

`download_file` is a resumable HTTP download: bytes go to `NAME.partial` beside the target
(kept across interruptions and resumed with a Range request), and the target name only
appears once the whole file is there and has passed its checks (size, checksum, structure).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

log = logging.getLogger(__name__)

CSV_BASE_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/"
ONTOLOGY_BASE_URL = "https://raw.githubusercontent.com/audioset/ontology/master/"
PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 16


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(remote: RemoteFile, path: Path) -> None:
    if remote.check is not None:
        remote.check(path)
    if remote.sha256 is not None:
        actual = sha256_of(path)
        if actual != remote.sha256:
            # The structure is fine, so the publisher changed the file: warn, do not refuse.
            log.warning("%s: sha256 %s differs from the released file's %s (updated upstream?)",
                        path, actual, remote.sha256)


def download_file(url: str, dest: Path, *, timeout: float = 60.0, retries: int = 3, progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming `dest.partial` if an earlier attempt left one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    last_error: Exception | None = None
    for _attempt in range(retries + 1):
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = response.status == 206
                mode = "ab" if resumed else "wb"
                length = response.headers.get("Content-Length")
                total = (int(length) + (have if resumed else 0)) if length else None
                with open(partial, mode) as out, tqdm(total=total, initial=have if resumed else 0, unit="B",
                                                      unit_scale=True, desc=dest.name, disable=not progress,
                                                      leave=False) as bar:
                    while block := response.read(CHUNK):
                        out.write(block)
                        bar.update(len(block))
                    out.flush()
                    os.fsync(out.fileno())
                if total is not None and partial.stat().st_size != total:
                    raise FetchError(f"{url}: got {partial.stat().st_size} of {total} bytes")
            os.replace(partial, dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # our partial file is already complete (or bogus): start over
                partial.unlink()
            elif exc.code in (404, 410, 403):
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            last_error = exc
        except (urllib.error.URLError, OSError, FetchError) as exc:
            last_error = exc
        log.info("%s: retrying after %s", url, last_error)
    raise FetchError(f"{url}: download failed after {retries + 1} attempts: {last_error} "
                     f"(the partial file {partial} is kept; run the command again to resume)")


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
        download_file(url, dest, progress=progress)
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
