"""Where a run stands, read from the run directory alone: per-task outcomes from the ledgers.

A segment is `ok` when its last ledger record is ok, `failed` (by reason) when its last record
is a failure, and `pending` when it has no record yet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from audiosetdl.ledger import OK, latest, read_ledger
from audiosetdl.plan import Plan, load_plan
from audiosetdl.rundir import RunDir


@dataclass
class TaskStatus:
    index: int
    segments: int
    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    first_attempt: float | None = None
    last_attempt: float | None = None

    @property
    def pending(self) -> int:
        return self.segments - self.ok - sum(self.failed.values())


@dataclass
class RunStatus:
    tasks: list[TaskStatus]

    @property
    def segments(self) -> int:
        return sum(t.segments for t in self.tasks)

    @property
    def ok(self) -> int:
        return sum(t.ok for t in self.tasks)

    @property
    def failed(self) -> Counter:
        total: Counter = Counter()
        for t in self.tasks:
            total.update(t.failed)
        return total

    @property
    def pending(self) -> int:
        return sum(t.pending for t in self.tasks)


def task_status(run: RunDir, plan: Plan, index: int) -> TaskStatus:
    spec = plan.tasks[index]
    status = TaskStatus(index, spec.segments)
    keys = set(spec.keys)
    records = list(read_ledger(run.ledger_path(index)))
    for record in latest(records).values():
        if (record.subset, record.ytid[:2]) not in keys:
            continue
        if record.outcome == OK:
            status.ok += 1
        else:
            status.failed[record.reason or "unknown"] += 1
    if records:
        status.first_attempt = min(r.timestamp for r in records)
        status.last_attempt = max(r.timestamp for r in records)
    return status


def run_status(run: RunDir, indices: list[int] | None = None) -> RunStatus:
    plan = load_plan(run)
    indices = range(len(plan.tasks)) if indices is None else indices
    return RunStatus([task_status(run, plan, i) for i in indices])


def outcome_table(status: RunStatus) -> list[str]:
    """Outcomes by reason, as aligned text lines."""
    rows = [("ok", status.ok)] + sorted(status.failed.items(), key=lambda kv: (-kv[1], kv[0])) + \
        [("pending", status.pending)]
    total = max(status.segments, 1)
    width = max(len(name) for name, _ in rows)
    lines = [f"{'outcome':<{width}}  {'segments':>9}  {'share':>6}"]
    lines += [f"{name:<{width}}  {count:>9}  {100 * count / total:5.1f}%" for name, count in rows if count or name == "ok"]
    lines.append(f"{'total':<{width}}  {status.segments:>9}")
    return lines
