"""Each task's AudioSet-format CSV and its plan.json entry, from the planned rows and the keys
each task owns, in two steps (`shard_rows`, then `task_files`, so that the planner can let the
table go in between): the rows put in task order (grouped by subset, input order kept), cut into one
byte string per task out of one Arrow buffer, with the header line of counts that
marl/audiosetdl's CSVs carry (distinct IDs, segments, distinct and positive labels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audiosetdl.metadata.segments import HEADER_COLUMNS
from audiosetdl.plan import TaskSpec
from audiosetdl.rundir import task_name

Key = tuple[str, str]  # (subset, prefix)


@dataclass
class Shards:
    """What the task files are made of, task by task."""

    bodies: list[bytes]  # the task's CSV rows, newline-terminated
    bounds: np.ndarray  # task i has rows bounds[i]:bounds[i + 1] of the rows in task order
    header_stats: list[tuple[int, int, int]]  # (distinct IDs, distinct labels, positive labels)
    subset_rows: np.ndarray  # [task, subset] -> rows


def shard_rows(rows: pa.Table, ytid_codes: np.ndarray, task_of_row: np.ndarray, n_tasks: int,
               n_subsets: int) -> Shards:
    """The rows put in task order and cut into each task's part."""
    subset_of_row = rows["subset"].to_numpy()
    # Rows of a task: grouped by subset (plan.json counts rows per subset), in input order.
    order = np.lexsort((subset_of_row, task_of_row))
    bounds = np.searchsorted(task_of_row[order], np.arange(n_tasks + 1))
    return Shards(
        _task_bodies(rows, order, bounds),
        bounds,
        _task_header_stats(rows, ytid_codes, task_of_row, n_tasks),
        np.bincount(task_of_row * n_subsets + subset_of_row,
                    minlength=n_tasks * n_subsets).reshape(n_tasks, n_subsets),
    )


def task_files(shards: Shards, bins: list[list[Key]], subset_names: list[str]) -> tuple[list[bytes], list[TaskSpec]]:
    """Each task's CSV (header lines, then its rows) and its entry in plan.json."""
    n_tasks = len(bins)
    bounds, bodies, stats, subset_rows = shards.bounds, shards.bodies, shards.header_stats, shards.subset_rows
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
    return task_csvs, tasks


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
