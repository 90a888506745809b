"""The planner: segment CSVs -> a run directory of N tasks with disjoint output keys.

A key is (subset, first two characters of the YouTube ID). Each key belongs to exactly one
task, so each output file `RUN/embeddings/<subset>/<XX>.tfrecord` has exactly one writer and
any task can run anywhere, any time. Keys are spread over the tasks by `audiosetdl.balance`.

Outputs (deterministic: the same inputs and options give byte-identical files):
  RUN/plan.json          version, inputs with checksums, options, summary, per-task keys
  RUN/tasks/NNNNN.csv    one AudioSet-format CSV per task, numbered from 0 (SLURM array index)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audiosetdl import __version__
from audiosetdl.balance import BALANCE_TARGET, assign_keys, lower_bound
from audiosetdl.config import PlanOptions
from audiosetdl.ledger import LedgerWriter, read_ledger
from audiosetdl.metadata.ontology import LABELS_FILENAME, ONTOLOGY_FILENAME, ClassIndex, Ontology, select_classes
from audiosetdl.metadata.segments import (
    HEADER_COLUMNS, Segment, SegmentTable, iter_rows, parse_row, read_segment_table, subset_name,
)
from audiosetdl.rundir import RunDir, sha256_of, task_name, write_bytes_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

PLAN_VERSION = 1


class PlanError(RuntimeError):
    pass


@dataclass(frozen=True)
class InputFile:
    name: str
    subset: str
    sha256: str
    rows: int
    bad_rows: int


@dataclass(frozen=True)
class TaskSpec:
    index: int
    keys: tuple[tuple[str, str], ...]  # (subset, prefix), sorted
    segments: int
    subset_rows: tuple[tuple[str, int], ...]  # rows per subset, in the CSV's order
    sha256: str  # of the task CSV

    @property
    def name(self) -> str:
        return task_name(self.index)


@dataclass
class Plan:
    inputs: list[InputFile]
    options: dict
    summary: dict
    tasks: list[TaskSpec]
    version: int = PLAN_VERSION
    created_by: str = f"audiosetdl {__version__}"

    def to_json(self) -> dict:
        data = asdict(self)
        for task in data["tasks"]:
            task["keys"] = [f"{s}/{p}" for s, p in task["keys"]]
            task["subset_rows"] = dict(task["subset_rows"])
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"plan.json has version {data.get('version')}, this audiosetdl reads version {PLAN_VERSION}")
        tasks = [
            TaskSpec(
                index=t["index"],
                keys=tuple(tuple(k.split("/", 1)) for k in t["keys"]),
                segments=t["segments"],
                subset_rows=tuple(t["subset_rows"].items()),
                sha256=t["sha256"],
            )
            for t in data["tasks"]
        ]
        return cls([InputFile(**i) for i in data["inputs"]], data["options"], data["summary"], tasks,
                   data["version"], data.get("created_by", ""))

    def task_of_key(self) -> dict[tuple[str, str], int]:
        return {key: task.index for task in self.tasks for key in task.keys}


# ------------------------------------------------------------------------- planning --

def _has_label(labels: pa.Array, mids: frozenset[str]) -> pa.Array:
    """Rows whose comma-joined label list contains any of `mids`."""
    return pc.match_substring_regex(labels, "(^|,)(" + "|".join(re.escape(m) for m in sorted(mids)) + ")(,|$)")


def _task_bodies(rows: pa.Table, order: np.ndarray, bounds: np.ndarray) -> list[bytes]:
    """The CSV rows of each task, newline-terminated, as bytes sliced out of one Arrow buffer."""
    lines = pc.take(pc.binary_join_element_wise(rows["line"], pa.scalar(""), "\n"), pa.array(order)).combine_chunks()
    offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=offset_type)[lines.offset: lines.offset + len(lines) + 1]
    data = memoryview(lines.buffers()[2])
    return [bytes(data[offsets[lo]: offsets[hi]]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _count_distinct_per_task(task: np.ndarray, value: np.ndarray, n_tasks: int) -> np.ndarray:
    pairs = np.sort(task.astype(np.int64) * (int(value.max()) + 1) + value)
    new = np.ones(len(pairs), dtype=bool)
    new[1:] = pairs[1:] != pairs[:-1]
    return np.bincount(pairs[new] // (int(value.max()) + 1), minlength=n_tasks)


def _task_header_stats(rows: pa.Table, ytid_codes: np.ndarray, task_of_row: np.ndarray,
                       n_tasks: int) -> list[tuple[int, int, int]]:
    """(distinct IDs, distinct labels, positive labels) per task, for the CSV header's counts."""
    ytids = _count_distinct_per_task(task_of_row, ytid_codes, n_tasks)
    label_lists = pc.split_pattern(rows["labels"], ",")
    label_codes = pc.dictionary_encode(pc.list_flatten(label_lists)).combine_chunks().indices.to_numpy().astype(np.int64)
    label_task = task_of_row[pc.list_parent_indices(label_lists).to_numpy()]
    positive = np.bincount(label_task, minlength=n_tasks)
    seen = np.zeros((n_tasks, int(label_codes.max()) + 1), dtype=bool)  # a few hundred classes: a bitmap
    seen[label_task, label_codes] = True
    distinct = seen.sum(axis=1)
    return list(zip(ytids.tolist(), distinct.tolist(), positive.tolist()))


def find_metadata(options: PlanOptions, csvs: list[Path]) -> tuple[ClassIndex | None, Ontology | None, Path | None]:
    directory = Path(options.metadata) if options.metadata else csvs[0].parent
    if options.metadata and not directory.is_dir():
        raise PlanError(f"--metadata {directory}: no such directory")
    labels_path = directory / LABELS_FILENAME
    ontology_path = directory / ONTOLOGY_FILENAME
    index = ClassIndex.load(labels_path) if labels_path.exists() else None
    ontology = Ontology.load(ontology_path) if ontology_path.exists() else None
    return index, ontology, labels_path if index is not None else None


@dataclass
class PlannedRun:
    """A plan and the text of its task CSVs, before anything is written."""

    plan: Plan
    task_csvs: list[bytes]
    labels_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def build_plan(csvs: list[str | Path], options: PlanOptions) -> PlannedRun:
    """Read, validate, select and shard the segments; nothing is written."""
    if options.tasks < 1:
        raise PlanError(f"--tasks must be at least 1, got {options.tasks}")
    if options.limit < 0:
        raise PlanError(f"--limit must be 0 (no limit) or positive, got {options.limit}")
    csvs = [Path(c) for c in csvs]
    if not csvs:
        raise PlanError("no segment CSV given")
    index, ontology, labels_path = find_metadata(options, csvs)
    notes: list[str] = []
    if index is None and options.labels:
        looked = (Path(options.metadata) if options.metadata else csvs[0].parent) / LABELS_FILENAME
        raise PlanError(f"{looked} not found: extract needs the class index to write each record's labels. Run "
                        "`audiosetdl fetch-metadata DIR` and plan with --metadata DIR, or plan with --no-labels "
                        "to write records without labels")
    if not options.labels:
        notes.append("--no-labels: records will be written without labels"
                     + ("" if index else "; label MIDs are not checked (no class_labels_indices.csv)"))
    selection = select_classes(options.classes, options.exclude_classes, index=index, ontology=ontology,
                               with_descendants=options.with_descendants)
    notes.extend(selection.notes)
    known = frozenset(index.mids) if index is not None else None

    subset_names = sorted({subset_name(path) for path in csvs})
    inputs, tables = [], []
    for path in csvs:
        table: SegmentTable = read_segment_table(path, known_mids=known, skip_bad_rows=options.skip_bad_rows)
        inputs.append(InputFile(path.name, table.subset, sha256_of(path), len(table) + len(table.bad_rows),
                                len(table.bad_rows)))
        notes += [f"skipped {bad.path}:{bad.lineno}: {bad.problem}" for bad in table.bad_rows[:20]]
        if len(table.bad_rows) > 20:
            notes.append(f"... and {len(table.bad_rows) - 20} more bad rows in {path}")
        code = np.full(len(table), subset_names.index(table.subset), dtype=np.int32)
        tables.append(table.columns.append_column("subset", pa.array(code)))
    rows = pa.concat_tables(tables).combine_chunks()
    del tables
    total_rows = rows.num_rows

    if selection.include is not None:
        rows = rows.filter(_has_label(rows["labels"], selection.include))
    if selection.exclude:
        rows = rows.filter(pc.invert(_has_label(rows["labels"], selection.exclude)))
    selected = rows.num_rows
    # Identity of a segment: (subset, ID, start, end); the first row of each identity is kept.
    ytid_codes = pc.dictionary_encode(rows["ytid"]).combine_chunks().indices.to_numpy().astype(np.int64)
    columns = (rows["end"].to_numpy(), rows["start"].to_numpy(), rows["subset"].to_numpy(), ytid_codes)
    by_identity = np.lexsort(columns)  # stable: equal identities keep input order, first one first
    same_as_previous = np.ones(len(by_identity), dtype=bool)
    same_as_previous[0] = False
    for column in columns:
        ordered = column[by_identity]
        same_as_previous[1:] &= ordered[1:] == ordered[:-1]
    first = np.ones(len(by_identity), dtype=bool)
    first[by_identity[same_as_previous]] = False
    del by_identity, same_as_previous, columns
    duplicates = int(len(first) - first.sum())
    if options.limit:
        first &= np.cumsum(first) <= options.limit
    if not first.all():
        rows = rows.filter(pa.array(first))
        ytid_codes = ytid_codes[first]
    if rows.num_rows == 0:
        raise PlanError("no segments left to plan (check --classes / --exclude-classes / --limit)")

    subset_of_row = rows["subset"].to_numpy()
    key_of_row = pc.binary_join_element_wise(pc.cast(rows["subset"], pa.string()),
                                             pc.utf8_slice_codeunits(rows["ytid"], 0, 2), "/")
    encoded = pc.dictionary_encode(key_of_row).combine_chunks()
    key_index, key_names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
    key_sizes = np.bincount(key_index, minlength=len(key_names))
    keys = [(subset_names[int(code)], prefix) for code, prefix in (name.split("/", 1) for name in key_names)]
    counts = dict(zip(keys, key_sizes.tolist()))
    n_tasks = options.tasks
    if n_tasks > len(counts):
        notes.append(f"{n_tasks} tasks requested but only {len(counts)} (subset, prefix) keys exist: "
                     f"planned {len(counts)} tasks")
        n_tasks = len(counts)
    bins = assign_keys(counts, n_tasks)
    task_of_key = {key: i for i, members in enumerate(bins) for key in members}
    task_of_row = np.array([task_of_key[key] for key in keys], dtype=np.int64)[key_index]
    # Rows of a task: grouped by subset (plan.json counts rows per subset), in input order.
    order = np.lexsort((subset_of_row, task_of_row))
    bounds = np.searchsorted(task_of_row[order], np.arange(n_tasks + 1))
    bodies = _task_bodies(rows, order, bounds)
    stats = _task_header_stats(rows, ytid_codes, task_of_row, n_tasks)
    subset_rows = np.bincount(task_of_row * len(subset_names) + subset_of_row,
                              minlength=n_tasks * len(subset_names)).reshape(n_tasks, len(subset_names))
    del rows

    task_csvs: list[bytes] = []
    tasks: list[TaskSpec] = []
    for i in range(n_tasks):
        ytid_count, unique_labels, positive_labels = stats[i]
        header = (f"# Segments csv created by audiosetdl for task {task_name(i)} of {n_tasks}\n"
                  f"# num_ytids={ytid_count}, num_segs={bounds[i + 1] - bounds[i]}, "
                  f"num_unique_labels={unique_labels}, num_positive_labels={positive_labels}\n{HEADER_COLUMNS}\n")
        text = header.encode() + bodies[i]
        task_csvs.append(text)
        tasks.append(TaskSpec(i, tuple(sorted(bins[i])), int(bounds[i + 1] - bounds[i]),
                              tuple((name, int(n)) for name, n in zip(subset_names, subset_rows[i]) if n),
                              hashlib.sha256(text).hexdigest()))

    loads = np.array([t.segments for t in tasks])
    mean = float(loads.mean())
    largest_key = max(counts.values())
    bound = lower_bound(list(counts.values()), n_tasks)
    summary = {
        "rows_read": total_rows + sum(i.bad_rows for i in inputs),
        "bad_rows_skipped": sum(i.bad_rows for i in inputs),
        "selected": selected,
        "duplicates_dropped": duplicates,
        "segments": int(loads.sum()),
        "keys": len(counts),
        "tasks": n_tasks,
        "task_segments_max": int(loads.max()),
        "task_segments_min": int(loads.min()),
        "task_segments_mean": round(mean, 3),
        "largest_key": int(largest_key),
        "balance": round(float(loads.max()) / mean, 4),
        "balance_lower_bound": round(bound / mean, 4),
        "balance_target_met": bool(loads.max() <= BALANCE_TARGET * mean),
    }
    if not summary["balance_target_met"]:
        notes.append(f"largest task has {loads.max()} segments, {summary['balance']:.3f} x the mean {mean:.1f}: "
                     f"keys cannot be split (largest key: {largest_key} segments, {len(counts)} keys for "
                     f"{n_tasks} tasks); no plan can get under {bound} ({bound / mean:.3f} x mean)")
    plan_options = {
        "tasks": options.tasks,
        "classes": selection.to_json(),
        "with_descendants": options.with_descendants,
        "limit": options.limit,
        "skip_bad_rows": options.skip_bad_rows,
        "labels_checked": index is not None,
    }
    if not options.labels:
        plan_options["labels"] = False  # only then: plans made before --no-labels existed stay identical
    plan = Plan(inputs, plan_options, summary, tasks)
    return PlannedRun(plan, task_csvs, labels_path, notes)


# -------------------------------------------------------------------------- writing --

def write_plan(run: RunDir, planned: PlannedRun, *, force: bool = False) -> str:
    """Write the plan into `run`; returns "created", "unchanged" or "replaced".

    An existing different plan is refused unless `force`. When replacing, the download ledgers
    are regrouped under the new task numbers, so finished work of unchanged keys stays usable
    (clip files and per-key embeddings are named by key, not by task).
    """
    new_json = planned.plan.to_json()
    if run.plan_path.exists():
        old = load_plan(run)
        if old.to_json() == new_json and all(
            run.task_csv(t.index).exists() and sha256_of(run.task_csv(t.index)) == t.sha256 for t in old.tasks
        ):
            return "unchanged"
        if not force:
            raise PlanError(f"{run.plan_path} already holds a different plan ({_describe_change(old, planned.plan)}); "
                            "use a new --out directory, or --force to replace it")
        _write_files(run, planned)
        _regroup_ledgers(run, old, planned.plan)
        return "replaced"
    _write_files(run, planned)
    return "created"


def _write_files(run: RunDir, planned: PlannedRun) -> None:
    run.tasks_dir.mkdir(parents=True, exist_ok=True)
    # Task files are renamed into place whole but not fsynced one by one (1,000 fsyncs cost more
    # than the planning): after a power loss, `load_task` finds any task file that does not match
    # plan.json (row counts, keys) and says so, and planning again restores it.
    for spec, text in zip(planned.plan.tasks, planned.task_csvs):
        write_bytes_atomic(run.task_csv(spec.index), text, fsync=False)
    wanted = {run.task_csv(t.index).name for t in planned.plan.tasks}
    for stale in run.tasks_dir.glob("*.csv"):
        if stale.name not in wanted:
            stale.unlink()
    if planned.labels_path is not None and planned.labels_path.resolve() != run.labels_path.resolve():
        shutil.copyfile(planned.labels_path, run.labels_path)
    write_json_atomic(run.plan_path, planned.plan.to_json())  # last: its presence means complete


def _describe_change(old: Plan, new: Plan) -> str:
    changes = []
    if [asdict(i) for i in old.inputs] != [asdict(i) for i in new.inputs]:
        changes.append("inputs differ")
    if old.options != new.options:
        diff = sorted(k for k in set(old.options) | set(new.options) if old.options.get(k) != new.options.get(k))
        changes.append("options differ: " + ", ".join(diff))
    if not changes:
        changes.append("tasks differ")
    return "; ".join(changes)


def _regroup_ledgers(run: RunDir, old: Plan, new: Plan) -> None:
    if not run.status_dir.exists():
        return
    task_of = new.task_of_key()
    records = defaultdict(list)
    old_files = sorted(run.status_dir.glob("*.jsonl"))
    for path in old_files:
        for record in read_ledger(path):
            index = task_of.get((record.subset, record.ytid[:2]))
            records[task_name(index) if index is not None else "unplanned"].append(record)
    staging = run.status_dir.with_name("status.regroup")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for name, items in records.items():
        with LedgerWriter(staging / f"{name}.jsonl") as writer:
            for record in sorted(items, key=lambda r: r.timestamp):
                writer.append(record)
    backup = run.status_dir.with_name("status.old")
    if backup.exists():
        shutil.rmtree(backup)
    run.status_dir.rename(backup)
    staging.rename(run.status_dir)
    shutil.rmtree(backup)


# -------------------------------------------------------------------------- reading --

def load_plan(run: RunDir) -> Plan:
    if not run.plan_path.exists():
        raise PlanError(f"{run.plan_path} not found: run `audiosetdl plan CSV --out {run.root}` first")
    try:
        return Plan.from_json(json.loads(run.plan_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{run.plan_path}: unreadable plan ({exc})") from None


def load_task(run: RunDir, plan: Plan, index: int) -> list[Segment]:
    """The segments of one task, each with its subset, checked against plan.json."""
    if not 0 <= index < len(plan.tasks):
        raise PlanError(f"task {index} does not exist: the plan has tasks 0-{len(plan.tasks) - 1}")
    spec = plan.tasks[index]
    path = run.task_csv(index)
    keys = set(spec.keys)
    subsets = [s for s, n in spec.subset_rows for _ in range(n)]
    segments: list[Segment] = []
    for lineno, line in iter_rows(path):
        if len(segments) >= len(subsets):
            raise PlanError(f"{path}:{lineno}: more rows than plan.json lists for task {index} (was the file edited?)")
        try:
            segment = parse_row(line, subsets[len(segments)])
        except ValueError as exc:
            raise PlanError(f"{path}:{lineno}: {exc}") from None
        if (segment.subset, segment.prefix) not in keys:
            raise PlanError(f"{path}:{lineno}: key {segment.subset}/{segment.prefix} is not one of task {index}'s keys "
                            "in plan.json (was the file edited?)")
        segments.append(segment)
    if len(segments) != spec.segments:
        raise PlanError(f"{path}: {len(segments)} rows, plan.json says {spec.segments} (was the file edited?)")
    return segments


def describe(planned: PlannedRun, run: RunDir, outcome: str) -> list[str]:
    """Human-readable summary of a plan, for the CLI."""
    plan, s = planned.plan, planned.plan.summary
    lines = [f"plan {outcome}: {run.plan_path}"]
    for item in plan.inputs:
        lines.append(f"  input  {item.name} ({item.subset}): {item.rows} rows"
                     + (f", {item.bad_rows} bad rows skipped" if item.bad_rows else ""))
    lines.append(f"  segments {s['segments']} (selected {s['selected']}, duplicates dropped {s['duplicates_dropped']})")
    lines.append(f"  keys {s['keys']} -> tasks {s['tasks']}: {s['task_segments_min']}-{s['task_segments_max']} "
                 f"segments per task (mean {s['task_segments_mean']:.1f}, largest/mean {s['balance']:.3f})")
    lines.append(f"  task files: {run.tasks_dir}/00000.csv ... {task_name(s['tasks'] - 1)}.csv")
    lines += [f"  note: {note}" for note in planned.notes]
    return lines


def split_csv(path: str | Path, parts: int, out_dir: str | Path | None = None) -> list[Path]:
    """marl/audiosetdl's `--split N`: N files `NAME.01`, `NAME.02`, ... (1-based, the SLURM array
    index of that script), contiguous runs of rows, each with the original `#` header lines."""
    path = Path(path)
    if parts < 1:
        raise PlanError(f"--split must be at least 1, got {parts}")
    out_dir = Path(out_dir) if out_dir else path.parent
    header, rows = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            (header if line.startswith("#") and not rows else rows).append(line if line.endswith("\n") else line + "\n")
    width = max(2, len(str(parts)))
    outputs = []
    for i in range(parts):
        chunk = rows[len(rows) * i // parts: len(rows) * (i + 1) // parts]
        target = out_dir / f"{path.name}.{i + 1:0{width}d}"
        write_text_atomic(target, "".join(header + chunk))
        outputs.append(target)
    return outputs
