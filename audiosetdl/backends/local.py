"""The local backend: run tasks one after another in this process, each through the stages.

Each task already spreads its own work over worker processes (download) or batches (extract),
so tasks run in sequence; Ctrl-C stops after the current task's clips in flight, resumably.
"""

from __future__ import annotations

import os
from typing import Callable

from audiosetdl.plan import load_plan
from audiosetdl.rundir import RunDir


def task_indices(run: RunDir, task: int | None, all_tasks: bool) -> list[int]:
    """`--task I`, else `$SLURM_ARRAY_TASK_ID` (unless `--all`), else every task of the plan."""
    n_tasks = len(load_plan(run).tasks)
    if task is None and not all_tasks and os.environ.get("SLURM_ARRAY_TASK_ID", "").isdigit():
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if task is None:
        return list(range(n_tasks))
    return [task]


def run_pipeline(run: RunDir, stages: list[tuple[Callable, object]], indices: list[int]) -> list[list]:
    """Each task through every stage in turn (download task i, then extract task i, ...), so a
    task's embeddings exist as soon as its audio does. Stops after a task whose stage stopped
    (rate-limited or interrupted: `summary.stopped`), leaving everything resumable."""
    done: list[list] = []
    for index in indices:
        summaries = []
        for stage, options in stages:
            summary = stage(run, index, options)
            summaries.append(summary)
            if getattr(summary, "stopped", None):
                done.append(summaries)
                return done
        done.append(summaries)
    return done
