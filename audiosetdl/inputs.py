"""A user's audio inputs for `embed` and `label`: files, directories and list files -> named inputs.

Each input gets an ID that cannot collide: its path relative to the common root of all inputs
(the deepest directory holding every one of them), in POSIX form with its extension, e.g.
`dogs/a.wav` and `cats/a.wav`; a single file is named by its file name. Directories are searched
recursively for the `--glob` patterns (case-insensitive); `--from-list FILE` names one path per
line, and a path there that does not exist is an error naming FILE:LINE. A file named twice is
taken once.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


class EmbedError(ValueError):
    """Inputs or an output directory that `embed` / `label` cannot use (the message says why)."""


class InputError(FileNotFoundError):
    """An input path that does not exist (the message names it, and FILE:LINE for a list)."""


@dataclass(frozen=True)
class Input:
    path: Path  # absolute
    id: str  # relative to the common root (the records' video_id)

    def stat_key(self) -> dict:
        """What a rerun compares to tell an unchanged file (size and modification time)."""
        stat = self.path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _matches(name: str, patterns: Iterable[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def _expand(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and _matches(p.name, patterns))
    return [path]


def read_list(list_file: str | Path) -> list[Path]:
    """The paths of a list file, checked to exist (relative ones: to the list file's directory)."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"--from-list {list_file}: cannot read it: {exc.strerror or exc}") from None
    paths = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if not path.exists():
            raise InputError(f"{list_file}:{number}: {text}: no such file or directory")
        paths.append(path)
    return paths


def resolve_inputs(paths: Iterable[str | Path], patterns: tuple[str, ...], from_list: str | None = None) -> list[Input]:
    """Every input file, in order (command line first, then the list), each with its ID."""
    given = [Path(p).expanduser() for p in paths]
    for path in given:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
    if from_list:
        given += read_list(from_list)
    files: list[Path] = []
    seen: set[Path] = set()
    for path in given:
        for file in _expand(path, patterns):
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(resolved)
    if not files:
        return []
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return [Input(f, f.relative_to(root).as_posix()) for f in files]
