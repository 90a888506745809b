"""The run directory: every path a stage reads or writes, and atomic writes.

The run directory is the only state shared between stages, so any stage can run on any
machine that mounts it, and be rerun:

    RUN/plan.json                              the plan (see `audiosetdl.plan`)
    RUN/class_labels_indices.csv               label index copied at planning (for extract)
    RUN/tasks/NNNNN.csv                        one AudioSet-format CSV per task
    RUN/audio/<subset>/<XX>/<YTID>_<s_ms>_<e_ms>.flac
    RUN/status/NNNNN.jsonl                     per-task download ledger
    RUN/status/NNNNN.state.json                how the task's last download run ended
    RUN/embeddings/<subset>/<XX>.tfrecord      one TFRecord per (subset, prefix) key
    RUN/embeddings/<subset>/<XX>.done.json     completion marker of that key
    RUN/yamnet/<subset>/<XX>.tfrecord, .done.json   the same for YAMNet (`extract --model yamnet`)
    RUN/pacing/<identity>/NNNNNNNNNNNN         egress budget tickets (see `audiosetdl.download.pacing`)
    RUN/logs/, RUN/slurm/                      logs

Every file is written under a temporary name in the same directory and renamed into place,
so a killed process never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

TEMP_MARK = ".part-"  # every temporary file's name contains this; sweep_temp() removes them
# Embedding model (`extract --model`) -> the run directory's folder of its TFRecords.
EMBEDDINGS_DIRS = {"vggish": "embeddings", "yamnet": "yamnet"}


def task_name(index: int) -> str:
    """Zero-padded task number used for file names (also the SLURM array index)."""
    return f"{index:05d}"


def clip_stem(ytid: str, start: float, end: float) -> str:
    """`<YTID>_<start_ms>_<end_ms>`: the file name stem of one segment's clip."""
    return f"{ytid}_{round(start * 1000)}_{round(end * 1000)}"


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- planning ---
    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def labels_path(self) -> Path:
        return self.root / "class_labels_indices.csv"

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    def task_csv(self, index: int) -> Path:
        return self.tasks_dir / f"{task_name(index)}.csv"

    # --- download ---
    def audio_dir(self, subset: str, prefix: str) -> Path:
        return self.root / "audio" / subset / prefix

    def clip_path(self, subset: str, ytid: str, start: float, end: float, suffix: str = ".flac") -> Path:
        return self.audio_dir(subset, ytid[:2]) / (clip_stem(ytid, start, end) + suffix)

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    def ledger_path(self, index: int) -> Path:
        return self.status_dir / f"{task_name(index)}.jsonl"

    def task_state_path(self, index: int) -> Path:
        """How the download task's last run ended (see `audiosetdl.download.resume.TaskSummary`)."""
        return self.status_dir / f"{task_name(index)}.state.json"

    @property
    def pacing_dir(self) -> Path:
        """The run-wide egress budget's tickets, one directory per identity."""
        return self.root / "pacing"

    # --- extract ---
    def embeddings_path(self, subset: str, prefix: str, model: str = "vggish") -> Path:
        return self.root / EMBEDDINGS_DIRS[model] / subset / f"{prefix}.tfrecord"

    def embeddings_marker(self, subset: str, prefix: str, model: str = "vggish") -> Path:
        return self.root / EMBEDDINGS_DIRS[model] / subset / f"{prefix}.done.json"

    # --- logs ---
    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"


class DirectoryBusy(RuntimeError):
    """Another process holds the lock `exclusive` asked for."""


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on `lock_path` for the block, or raise DirectoryBusy
    naming the process that holds it. The kernel drops the lock when its holder dies, even by SIGKILL,
    so a stale file never blocks a rerun."""
    import fcntl

    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DirectoryBusy(f"{lock_path.parent} is in use by {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    The temporary name keeps `final`'s suffix (tools such as ffmpeg pick the format from it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=final.stem + TEMP_MARK, suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(final: Path, mode: str = "w", fsync: bool = True, **kwargs) -> Iterator[IO]:
    """Open a temporary file beside `final` for writing; (fsync and) rename it into place on success."""
    with atomic_path(final) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def write_json_atomic(path: Path, obj) -> None:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline), written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scratch_beside(beside: Path, suffix: str) -> Path:
    """A new empty temporary file beside `beside` (named so that `sweep_temp` finds a leftover)."""
    fd, name = tempfile.mkstemp(prefix=f"{beside.stem.split(TEMP_MARK)[0]}{TEMP_MARK}cut-", suffix=f".{suffix}",
                                dir=beside.parent)
    os.close(fd)
    return Path(name)


def sweep_temp(directory: Path) -> int:
    """Remove temporary files a killed process left under `directory`; return how many."""
    removed = 0
    if not Path(directory).exists():
        return 0
    for path in Path(directory).rglob(f"*{TEMP_MARK}*"):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
