"""`embed`'s output directory: the shards, what each one holds, and what a rerun may skip.

    OUT/shard-NNNNN.tfrecord (or .npz, .parquet)   whole records, written atomically
    OUT/_inputs/shard-NNNNN.json                   the inputs that shard holds (path, ID, size,
                                                   modification time, frames): its commit record
    OUT/_manifest.json                             the settings, each shard's record and frame
                                                   counts, files too short, files that failed

A shard is written under a temporary name and renamed, then its `_inputs` file is written (also
atomically): a shard counts once its `_inputs` file exists, and a shard file without one (a run
killed between the two writes) is removed when the directory is opened again. `_manifest.json`
is rewritten after each shard, but holds one line per shard, not per input: rewriting every
input at every shard made a 1M-file run spend hours serialising JSON (quadratic in the number of
shards). The names start with `_`, which dataset readers skip (`pandas.read_parquet(OUT)`,
pyarrow, Spark), so the directory reads as a dataset.

A directory written before this layout (one `manifest.json` listing every shard's inputs) is
converted when it is opened: nothing is embedded again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from audiosetdl.config import EmbedOptions
from audiosetdl.embed_formats import SUFFIXES, write_shard
from audiosetdl.inputs import EmbedError
from audiosetdl.rundir import sweep_temp, write_json_atomic

MANIFEST = "_manifest.json"
LEGACY_MANIFEST = "manifest.json"  # before the `_inputs` journal: every shard's inputs in one file
INPUTS_DIR = "_inputs"
SHARD_PATTERN = "shard-{:05d}"
_SHARD_NAME = re.compile(r"^shard-(\d{5})\.(tfrecord|npz|parquet)$")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EmbedError(f"{path}: unreadable ({exc}); remove it to embed into this directory afresh") from None


def manifest_path(out: Path) -> Path | None:
    """The directory's manifest (the current name, else the legacy one), or None."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        if (Path(out) / name).exists():
            return Path(out) / name
    return None


def check_output(out: Path, signature: dict) -> None:
    """Refuse an output directory whose manifest was made with other settings (reads only)."""
    path = manifest_path(out)
    if path is not None:
        made = _read_json(path).get("signature")
        if made != signature:
            raise EmbedError(f"{out} holds embeddings made with {made}, not {signature}: choose another --out")


class ShardDirectory:
    """The output directory of one run: shards kept from earlier runs, and the shard being filled."""

    def __init__(self, out: Path, signature: dict, embed: EmbedOptions):
        self.out, self.signature, self.embed, self.adapter = out, signature, embed, None
        self.suffix = SUFFIXES[embed.format]
        self.inputs_dir = out / INPUTS_DIR
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        sweep_temp(out)
        self.manifest = {"signature": signature, "too_short": [], "failed": []}
        self.shards: dict[str, list[dict]] = {}  # shard file name -> its inputs' entries (kept until `prune`)
        self.counts: dict[str, dict] = {}  # shard file name -> its records and frames
        self._load()
        self.pending: list = []
        self.pending_entries: list[dict] = []

    def _load(self) -> None:
        legacy = self.out / LEGACY_MANIFEST
        if (self.out / MANIFEST).exists():
            self.manifest.update(_read_json(self.out / MANIFEST))
        elif legacy.exists():
            self._convert(_read_json(legacy))
        for journal in sorted(self.inputs_dir.glob("shard-*.json")):
            shard = journal.stem + self.suffix
            if (self.out / shard).exists():
                self.shards[shard] = _read_json(journal)["inputs"]
                self._commit(shard, self.shards[shard])
            else:
                journal.unlink()
        for stray in self.out.iterdir():
            if _SHARD_NAME.match(stray.name) and stray.name not in self.counts:
                stray.unlink()  # written by a run killed before its `_inputs` file
        self._write_manifest()
        legacy.unlink(missing_ok=True)

    def _convert(self, old: dict) -> None:
        """Take over a legacy manifest: its shards' inputs become `_inputs` files."""
        self.manifest.update(too_short=old.get("too_short", []), failed=old.get("failed", []))
        for shard in old.get("shards", []):
            journal = self.inputs_dir / (Path(shard["file"]).stem + ".json")
            if not journal.exists():
                write_json_atomic(journal, {"inputs": shard["inputs"]})

    def _commit(self, shard: str, entries: list[dict]) -> None:
        self.counts[shard] = {"records": len(entries), "frames": sum(e["frames"] for e in entries)}

    def _drop(self, shard: str) -> None:
        (self.inputs_dir / (Path(shard).stem + ".json")).unlink(missing_ok=True)  # uncommitted first
        (self.out / shard).unlink(missing_ok=True)
        del self.shards[shard], self.counts[shard]  # (only `prune` drops shards)

    def prune(self, current: dict[str, dict]) -> set[str]:
        """Drop shards holding an input that changed (or vanished from disk); return the paths still done."""
        def fresh(entry: dict) -> bool:
            stat = current.get(entry["path"])
            if stat is None:
                return Path(entry["path"]).exists()  # not an input this time: kept as it is
            return stat == {"size": entry["size"], "mtime_ns": entry["mtime_ns"]}

        for shard, entries in list(self.shards.items()):
            if not all(fresh(e) for e in entries):
                self._drop(shard)
        self.manifest["too_short"] = [e for e in self.manifest["too_short"] if fresh(e)]
        self._write_manifest()
        done = {e["path"] for entries in self.shards.values() for e in entries}
        self.shards = {}  # not needed again: the manifest needs only the counts
        return done | {e["path"] for e in self.manifest["too_short"]}

    def add(self, record, entry: dict) -> None:
        self.pending.append(record)
        self.pending_entries.append({**entry, "frames": len(record.embedding)})
        if len(self.pending) >= self.embed.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the shard being filled (if any) and its `_inputs` file, then the manifest."""
        if self.pending:
            order = sorted(range(len(self.pending)), key=lambda i: self.pending[i].video_id)  # files finish in any order
            records = [self.pending[i] for i in order]
            entries = [self.pending_entries[i] for i in order]
            used = [int(_SHARD_NAME.match(name).group(1)) for name in self.counts]
            name = SHARD_PATTERN.format(max(used, default=-1) + 1)
            write_shard(self.out / (name + self.suffix), records, self.embed.format, self.adapter)
            write_json_atomic(self.inputs_dir / (name + ".json"), {"inputs": entries})
            self._commit(name + self.suffix, entries)
            self.pending, self.pending_entries = [], []
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.manifest["shards"] = [{"file": name, **counts, "inputs": f"{INPUTS_DIR}/{Path(name).stem}.json"}
                                   for name, counts in sorted(self.counts.items())]
        write_json_atomic(self.out / MANIFEST, self.manifest)
