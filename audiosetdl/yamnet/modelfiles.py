"""Where the official YAMNet files live, and fetching them.

Owns the two file names and their sources: `yamnet.h5` from storage.googleapis.com/audioset/
and `yamnet_class_map.csv` from the tensorflow/models repository. They live in the same
models directory as VGGish's (`vggish.modelfiles.models_dir`: `--models DIR`, else
`$AUDIOSETDL_MODELS`, else `~/.cache/audiosetdl/models`). `fetch_models` downloads whichever
is missing through `audiosetdl.fetch.download_file` (resumable from `NAME.partial`), checks
the weights file's size and that the class map parses with its 521 rows, and removes a file
that fails. Shapes are checked where the weights are loaded (`weightsfile.read_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from audiosetdl.fetch import FetchError, Progress, download_file
from audiosetdl.vggish.modelfiles import ModelFilesError, models_dir
from audiosetdl.yamnet import params
from audiosetdl.yamnet.weightsfile import FETCH_HINT

# Plausible sizes (bytes, inclusive): the weights file holds 3,751,369 float32 values plus
# HDF5's headers; the class map is 521 short CSV rows (about 14 KB).
_WEIGHTS_MIN = 4 * params.NUM_PARAMETERS
OFFICIAL_SIZES: Mapping[str, tuple[int, int]] = {
    params.WEIGHTS_FILENAME: (_WEIGHTS_MIN, _WEIGHTS_MIN + (4 << 20)),
    params.CLASS_MAP_FILENAME: (8 << 10, 64 << 10),
}
OFFICIAL_URLS: Mapping[str, str] = {
    params.WEIGHTS_FILENAME: params.WEIGHTS_URL,
    params.CLASS_MAP_FILENAME: params.CLASS_MAP_URL,
}


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    weights: Path
    class_map: Path


def model_files(directory: str | Path | None = None) -> ModelFiles:
    """The paths the two files have (or will have) in the models directory; checks nothing."""
    root = models_dir(directory)
    return ModelFiles(root, root / params.WEIGHTS_FILENAME, root / params.CLASS_MAP_FILENAME)


def locate_models(directory: str | Path | None = None) -> ModelFiles:
    """The two YAMNet files in the models directory; `ModelFilesError` if either is missing."""
    files = model_files(directory)
    missing = [str(path) for path in (files.weights, files.class_map) if not path.is_file()]
    if missing:
        raise ModelFilesError(f"YAMNet model files not found: {', '.join(missing)}. {FETCH_HINT}")
    return files


def _check(path: Path, sizes: Mapping[str, tuple[int, int]]) -> str | None:
    """What is wrong with a downloaded file, or None."""
    low, high = sizes[path.name]
    size = path.stat().st_size
    if not low <= size <= high:
        return f"{path.name} has {size} bytes, expected {low}..{high}"
    if path.name == params.CLASS_MAP_FILENAME:
        from audiosetdl.yamnet.classmap import ClassMapError, load_class_map

        try:
            load_class_map(path)
        except ClassMapError as exc:
            return str(exc)
    return None


def fetch_models(
    directory: str | Path | None = None,
    *,
    urls: Mapping[str, str] = OFFICIAL_URLS,
    sizes: Mapping[str, tuple[int, int]] = OFFICIAL_SIZES,
    attempts: int = 5,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> ModelFiles:
    """Download whichever of `yamnet.h5` and `yamnet_class_map.csv` is missing or implausible.

    A file already in place that passes the checks is kept. Downloads resume from their
    `.partial` file, across calls too; `attempts` bounds the tries per file.
    """
    files = model_files(directory)
    files.directory.mkdir(parents=True, exist_ok=True)
    for final in (files.weights, files.class_map):
        if final.is_file() and _check(final, sizes) is None:
            continue
        try:
            download_file(urls[final.name], final, attempts=attempts, timeout=timeout, progress=progress)
        except FetchError as exc:
            raise ModelFilesError(str(exc)) from None
        problem = _check(final, sizes)
        if problem is not None:
            final.unlink()
            raise ModelFilesError(f"downloaded {problem}; removed it")
    return files
