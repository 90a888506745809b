"""Where the official VGGish model files live, and fetching them from Google's bucket.

Owns the models directory (an explicit `--models DIR`, else `$AUDIOSETDL_MODELS`, else
`~/.cache/audiosetdl/models`), the two file names, and `fetch_models`, which downloads
`vggish_model.ckpt` and `vggish_pca_params.npz` from storage.googleapis.com/audioset/ with
urllib: into `<name>.partial`, resuming with an HTTP Range request after an interruption,
checking the length the server announced and a plausible size, then renaming into place.
Content checks (variable shapes, PCA shapes) happen where the files are loaded
(`model.read_checkpoint`, `postprocess.PCAParams.load`); each error there names the command
that fixes it.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from audiosetdl.vggish import params

FETCH_HINT = "Run `audiosetdl fetch-models DIR` to download the official VGGish files (then pass --models DIR or set AUDIOSETDL_MODELS)"
PARTIAL_SUFFIX = ".partial"
CHUNK_BYTES = 1 << 20

# Plausible sizes (bytes, inclusive). The checkpoint holds 72,141,184 float32 values plus
# a little index; the PCA file is a 128x128 and a 128x1 array.
_CHECKPOINT_MIN = 4 * params.NUM_PARAMETERS
OFFICIAL_SIZES: Mapping[str, tuple[int, int]] = {
    params.CHECKPOINT_FILENAME: (_CHECKPOINT_MIN, _CHECKPOINT_MIN + (16 << 20)),
    params.PCA_PARAMS_FILENAME: (16 << 10, 1 << 20),
}


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable, or lacks a VGGish variable of the right shape."""


class ModelFilesError(FileNotFoundError):
    """A model file is missing, or a download failed or gave an implausible file."""


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    checkpoint: Path
    pca_params: Path


def models_dir(explicit: str | Path | None = None) -> Path:
    """The models directory: `explicit`, else $AUDIOSETDL_MODELS, else ~/.cache/audiosetdl/models."""
    chosen = explicit or os.environ.get(params.MODELS_DIR_ENV) or params.DEFAULT_MODELS_DIR
    return Path(chosen).expanduser()


def model_files(directory: str | Path | None = None) -> ModelFiles:
    """The paths the two files have (or will have) in the models directory; checks nothing."""
    root = models_dir(directory)
    return ModelFiles(root, root / params.CHECKPOINT_FILENAME, root / params.PCA_PARAMS_FILENAME)


def locate_models(directory: str | Path | None = None) -> ModelFiles:
    """The two model files in the models directory; `ModelFilesError` if either is missing."""
    files = model_files(directory)
    missing = [str(path) for path in (files.checkpoint, files.pca_params) if not path.is_file()]
    if missing:
        raise ModelFilesError(f"VGGish model files not found: {', '.join(missing)}. {FETCH_HINT}")
    return files


def fetch_models(
    directory: str | Path | None = None,
    *,
    base_url: str = params.MODELS_BASE_URL,
    sizes: Mapping[str, tuple[int, int]] = OFFICIAL_SIZES,
    attempts: int = 5,
    timeout: float = 60.0,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> ModelFiles:
    """Download whichever of the two files is missing into the models directory.

    A file already in place with a plausible size is kept. Each download resumes from its
    `.partial` file, across calls too; `attempts` bounds the tries per file. `progress`, if
    given, is called with (file name, bytes so far, total or None) after each chunk.
    """
    files = model_files(directory)
    files.directory.mkdir(parents=True, exist_ok=True)
    for final in (files.checkpoint, files.pca_params):
        low, high = sizes[final.name]
        if final.is_file() and low <= final.stat().st_size <= high:
            continue
        _download(base_url.rstrip("/") + "/" + final.name, final, attempts, timeout, progress)
        size = final.stat().st_size
        if not low <= size <= high:
            final.unlink()
            raise ModelFilesError(f"downloaded {final.name} has {size} bytes, expected {low}..{high}; removed it")
    return files


def _download(
    url: str,
    final: Path,
    attempts: int,
    timeout: float,
    progress: Callable[[str, int, int | None], None] | None,
) -> None:
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    last_error: Exception | None = None
    attempts = max(1, attempts)
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(30.0, 2.0**attempt / 4))
        try:
            _fetch_once(url, partial, timeout, progress)
            os.replace(partial, final)
            return
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (403, 404):
                break  # not there: retrying will not help
    raise ModelFilesError(f"could not download {url} after {attempt + 1} attempt(s): {last_error}")


def _fetch_once(
    url: str, partial: Path, timeout: float, progress: Callable[[str, int, int | None], None] | None
) -> None:
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
            while chunk := response.read(CHUNK_BYTES):
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
