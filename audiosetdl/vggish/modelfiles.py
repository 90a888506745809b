"""Where the official VGGish model files live, and fetching them from Google's bucket.

Owns the models directory (an explicit `--models DIR`, else `$AUDIOSETDL_MODELS`, else
`~/.cache/audiosetdl/models`), the two file names, and `fetch_models`, which downloads
`vggish_model.ckpt` and `vggish_pca_params.npz` from storage.googleapis.com/audioset/ through
`audiosetdl.fetch.download_file` (resumable), then checking each file has a plausible size.
Content checks (variable shapes, PCA shapes) happen where the files are loaded
(`model.read_checkpoint`, `postprocess.PCAParams.load`); each error there names the command
that fixes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from audiosetdl.fetch import PARTIAL_SUFFIX, FetchError, Progress, download_file  # noqa: F401 (PARTIAL_SUFFIX: re-exported)
from audiosetdl.vggish import params

FETCH_HINT = "Run `audiosetdl fetch-models DIR` to download the official VGGish files (then pass --models DIR or set AUDIOSETDL_MODELS)"

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
    progress: Progress | None = None,
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
        try:
            download_file(base_url.rstrip("/") + "/" + final.name, final, attempts=attempts, timeout=timeout,
                          progress=progress)
        except FetchError as exc:
            raise ModelFilesError(str(exc)) from None
        size = final.stat().st_size
        if not low <= size <= high:
            final.unlink()
            raise ModelFilesError(f"downloaded {final.name} has {size} bytes, expected {low}..{high}; removed it")
    return files
