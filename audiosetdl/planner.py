"""Building a plan: segment CSVs -> N tasks with disjoint output keys, nothing written yet.

The CSVs are read into one Arrow table; rows are selected by class, duplicates (same subset,
ID, start and end) dropped keeping the first, and `--limit` applied. Each key (subset, first
two characters of the ID) goes to one task (`audiosetdl.balance`), and each task's rows become
one AudioSet-format CSV (`audiosetdl.task_csvs`). `audiosetdl.plan` writes the result
(`audiosetdl.split` is marl/audiosetdl's older way of sharding a CSV).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audiosetdl.balance import BALANCE_TARGET, assign_keys, lower_bound
from audiosetdl.config import PlanOptions
from audiosetdl.metadata.ontology import (
    LABELS_FILENAME, ONTOLOGY_FILENAME, ClassIndex, ClassSelection, Ontology, select_classes,
)
from audiosetdl.metadata.segment_table import SegmentTable, read_segment_table
from audiosetdl.metadata.segments import subset_name
from audiosetdl.plan import InputFile, Plan, PlanError, PlannedRun, TaskSpec
from audiosetdl.rundir import RunDir, sha256_of, task_name
from audiosetdl.task_csvs import Key, shard_rows, task_files


def build_plan(csvs: list[str | Path], options: PlanOptions) -> PlannedRun:
    """Read, validate, select and shard the segments; nothing is written."""
    csvs = _checked_csv_paths(csvs, options)
    index, ontology, labels_path = find_metadata(options, csvs)
    notes = _check_labels(options, csvs, index)
    selection = select_classes(options.classes, options.exclude_classes, index=index, ontology=ontology,
                               with_descendants=options.with_descendants)
    notes.extend(selection.notes)
    subset_names = sorted({subset_name(path) for path in csvs})
    known = frozenset(index.mids) if index is not None else None
    inputs, rows = _read_inputs(csvs, subset_names, known, options.skip_bad_rows, notes)
    total_rows = rows.num_rows
    rows = _keep_selected_classes(rows, selection)
    selected = rows.num_rows
    rows, ytid_codes, duplicates = _first_of_each_segment(rows, options.limit)
    if rows.num_rows == 0:
        raise PlanError("no segments left to plan (check --classes / --exclude-classes / --limit)")

    keys, key_index = _keys_of_rows(rows, subset_names)
    counts = dict(zip(keys, np.bincount(key_index, minlength=len(keys)).tolist()))
    n_tasks = options.tasks
    if n_tasks > len(counts):
        notes.append(f"{n_tasks} tasks requested but only {len(counts)} (subset, prefix) keys exist: "
                     f"planned {len(counts)} tasks")
        n_tasks = len(counts)
    bins = assign_keys(counts, n_tasks)
    task_of_key = {key: i for i, members in enumerate(bins) for key in members}
    task_of_row = np.array([task_of_key[key] for key in keys], dtype=np.int64)[key_index]
    shards = shard_rows(rows, ytid_codes, task_of_row, n_tasks, len(subset_names))
    del rows  # the task CSVs are built from `shards` alone; the table can go first
    task_csvs, tasks = task_files(shards, bins, subset_names)

    summary = _summary(inputs, total_rows, selected, duplicates, counts, tasks, notes)
    plan = Plan(inputs, _plan_options(options, selection, index), summary, tasks)
    return PlannedRun(plan, task_csvs, labels_path, notes)


def _checked_csv_paths(csvs: list[str | Path], options: PlanOptions) -> list[Path]:
    if options.tasks < 1:
        raise PlanError(f"--tasks must be at least 1, got {options.tasks}")
    if options.limit < 0:
        raise PlanError(f"--limit must be 0 (no limit) or positive, got {options.limit}")
    csvs = [Path(c) for c in csvs]
    if not csvs:
        raise PlanError("no segment CSV given")
    return csvs


def find_metadata(options: PlanOptions, csvs: list[Path]) -> tuple[ClassIndex | None, Ontology | None, Path | None]:
    directory = Path(options.metadata) if options.metadata else csvs[0].parent
    if options.metadata and not directory.is_dir():
        raise PlanError(f"--metadata {directory}: no such directory")
    labels_path = directory / LABELS_FILENAME
    ontology_path = directory / ONTOLOGY_FILENAME
    index = ClassIndex.load(labels_path) if labels_path.exists() else None
    ontology = Ontology.load(ontology_path) if ontology_path.exists() else None
    return index, ontology, labels_path if index is not None else None


def _check_labels(options: PlanOptions, csvs: list[Path], index: ClassIndex | None) -> list[str]:
    """Refuses to plan labelled records without a class index; returns the notes --no-labels gives."""
    notes: list[str] = []
    if index is None and options.labels:
        looked = (Path(options.metadata) if options.metadata else csvs[0].parent) / LABELS_FILENAME
        raise PlanError(f"{looked} not found: extract needs the class index to write each record's labels. Run "
                        "`audiosetdl fetch-metadata DIR` and plan with --metadata DIR, or plan with --no-labels "
                        "to write records without labels")
    if not options.labels:
        notes.append("--no-labels: records will be written without labels"
                     + ("" if index else "; label MIDs are not checked (no class_labels_indices.csv)"))
    return notes


def _read_inputs(csvs: list[Path], subset_names: list[str], known: frozenset[str] | None, skip_bad_rows: bool,
                 notes: list[str]) -> tuple[list[InputFile], pa.Table]:
    """Each CSV's description, and all their rows in one table with a `subset` column (the index
    into `subset_names`); notes on skipped bad rows go to `notes`."""
    inputs, tables = [], []
    for path in csvs:
        table: SegmentTable = read_segment_table(path, known_mids=known, skip_bad_rows=skip_bad_rows)
        inputs.append(InputFile(path.name, table.subset, sha256_of(path), len(table) + len(table.bad_rows),
                                len(table.bad_rows)))
        notes += [f"skipped {bad.path}:{bad.lineno}: {bad.problem}" for bad in table.bad_rows[:20]]
        if len(table.bad_rows) > 20:
            notes.append(f"... and {len(table.bad_rows) - 20} more bad rows in {path}")
        code = np.full(len(table), subset_names.index(table.subset), dtype=np.int32)
        tables.append(table.columns.append_column("subset", pa.array(code)))
    return inputs, pa.concat_tables(tables).combine_chunks()


def _keep_selected_classes(rows: pa.Table, selection: ClassSelection) -> pa.Table:
    if selection.include is not None:
        rows = rows.filter(_has_label(rows["labels"], selection.include))
    if selection.exclude:
        rows = rows.filter(pc.invert(_has_label(rows["labels"], selection.exclude)))
    return rows


def _has_label(labels: pa.Array, mids: frozenset[str]) -> pa.Array:
    """Rows whose comma-joined label list contains any of `mids`."""
    return pc.match_substring_regex(labels, "(^|,)(" + "|".join(re.escape(m) for m in sorted(mids)) + ")(,|$)")


def _first_of_each_segment(rows: pa.Table, limit: int) -> tuple[pa.Table, np.ndarray, int]:
    """The rows left after dropping duplicates and applying `limit` (0: none), each row's ID as a
    code, and how many duplicates were dropped."""
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
    if limit:
        first &= np.cumsum(first) <= limit
    if not first.all():
        rows = rows.filter(pa.array(first))
        ytid_codes = ytid_codes[first]
    return rows, ytid_codes, duplicates


def _keys_of_rows(rows: pa.Table, subset_names: list[str]) -> tuple[list[Key], np.ndarray]:
    """The distinct keys, and each row's key as an index into them."""
    key_of_row = pc.binary_join_element_wise(pc.cast(rows["subset"], pa.string()),
                                             pc.utf8_slice_codeunits(rows["ytid"], 0, 2), "/")
    encoded = pc.dictionary_encode(key_of_row).combine_chunks()
    key_index, key_names = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
    keys = [(subset_names[int(code)], prefix) for code, prefix in (name.split("/", 1) for name in key_names)]
    return keys, key_index


def _summary(inputs: list[InputFile], total_rows: int, selected: int, duplicates: int, counts: dict[Key, int],
             tasks: list[TaskSpec], notes: list[str]) -> dict:
    """plan.json's summary: rows at each step, and how balanced the tasks are (with a note in
    `notes` when the balance target is missed, saying why)."""
    n_tasks = len(tasks)
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
    return summary


def _plan_options(options: PlanOptions, selection: ClassSelection, index: ClassIndex | None) -> dict:
    """The options plan.json records (those that change which segments go where, and how)."""
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
    return plan_options


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
