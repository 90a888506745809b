"""A run's plan on disk: plan.json's model, writing it (and its task CSVs), reading a task back.

A plan gives each key (subset, first two characters of the YouTube ID) to exactly one task,
so each output file `RUN/embeddings/<subset>/<XX>.tfrecord` has exactly one writer and any task
can run anywhere, any time. `audiosetdl.planner` builds a plan from segment CSVs; this module
writes it, replaces it (regrouping the download ledgers under the new task numbers) and loads it.

Files (deterministic: the same inputs and options give byte-identical files):
  RUN/plan.json          version, inputs with checksums, options, summary, per-task keys
  RUN/tasks/NNNNN.csv    one AudioSet-format CSV per task, numbered from 0 (SLURM array index)
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audiosetdl import __version__
from audiosetdl.ledger import LedgerWriter, read_ledger
from audiosetdl.metadata.segments import Segment, iter_rows, parse_row
from audiosetdl.rundir import RunDir, sha256_of, task_name, write_bytes_atomic, write_json_atomic

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


@dataclass
class PlannedRun:
    """A plan and the text of its task CSVs, before anything is written."""

    plan: Plan
    task_csvs: list[bytes]
    labels_path: Path | None = None
    notes: list[str] = field(default_factory=list)


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
