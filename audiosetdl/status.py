"""Where a run stands, read from the run directory alone, plus what SLURM says about its jobs.

A segment is `ok` when its last ledger record is ok, `failed` (by reason) when its last record
is a failure, and `pending` when it has no record yet. A download task is finished when its
state file (RUN/status/NNNNN.state.json) says so and its ledger has a record of every segment;
an extract task when every key of the task has its done marker. `unfinished` answers which
tasks `submit --resume` sends again; `report` builds the document `audiosetdl status --json`
prints (schema in slurm/README.md) and `report_lines` its text form; `audiosetdl.status_plot`
draws its figure. The SLURM part of the report comes from `audiosetdl.slurm_status`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from audiosetdl.attempts import by_client, client_lines, note_counts
from audiosetdl.ledger import OK, SEGMENT_KEY, ledger_frame
from audiosetdl.plan import Plan, load_plan, load_task
from audiosetdl.rundir import RunDir, task_name
from audiosetdl.slurm_status import ACTIVE_STATES, slurm_report


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


def task_status(run: RunDir, plan: Plan, index: int, frame=None) -> TaskStatus:
    """Outcomes of one task's segments from its ledger (`frame`: the ledger, already read)."""
    spec = plan.tasks[index]
    status = TaskStatus(index, spec.segments)
    records = ledger_frame(run.ledger_path(index)) if frame is None else frame
    if len(records):
        last = records.drop_duplicates(SEGMENT_KEY, keep="last")
        last = last[(last.subset + "/" + last.ytid.str[:2]).isin([f"{s}/{p}" for s, p in spec.keys])]
        ok = last.outcome == OK
        status.ok = int(ok.sum())
        for reason, count in last.reason[~ok].fillna("").value_counts().items():
            status.failed[reason or "unknown"] += int(count)
        status.first_attempt = float((records.timestamp - records.seconds.fillna(0.0)).min())  # first attempt began
        status.last_attempt = float(records.timestamp.max())
    return status


def run_status(run: RunDir, indices: list[int] | None = None, frames: dict | None = None) -> RunStatus:
    """Outcomes of the tasks `indices` (default all); `frames`: their ledgers, already read."""
    plan = load_plan(run)
    indices = range(len(plan.tasks)) if indices is None else indices
    return RunStatus([task_status(run, plan, i, (frames or {}).get(i)) for i in indices])


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


# ------------------------------------------------------------------ finished or not --

STAGES = ("download", "extract")


def task_state(run: RunDir, index: int) -> dict | None:
    """The download task's state file ({"state": "finished" | "rate_limited" | "interrupted", ...}), if any."""
    try:
        return json.loads(run.task_state_path(index).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def download_finished(run: RunDir, plan: Plan, index: int) -> bool:
    """The task's last download run ended with nothing left to try, and the ledger has every segment."""
    if (task_state(run, index) or {}).get("state") != "finished":
        return False
    records = ledger_frame(run.ledger_path(index))
    recorded = set(zip(records.subset, records.ytid, records.start, records.end))
    return all(segment.key in recorded for segment in load_task(run, plan, index))


def extract_keys_done(run: RunDir, plan: Plan, index: int, model: str = "vggish") -> int:
    """Keys of the task whose `model` output (RUN/embeddings/ or RUN/yamnet/) has its done marker."""
    return sum(run.embeddings_marker(subset, prefix, model).exists() for subset, prefix in plan.tasks[index].keys)


def extract_finished(run: RunDir, plan: Plan, index: int, model: str = "vggish") -> bool:
    return extract_keys_done(run, plan, index, model) == len(plan.tasks[index].keys)


def unfinished(run: RunDir, plan: Plan, stage: str, model: str = "vggish") -> list[int]:
    """Tasks of `stage` the run directory does not show as finished (SLURM's memory is not consulted);
    for extract, finished with `model`."""
    if stage == "download":
        return [task.index for task in plan.tasks if not download_finished(run, plan, task.index)]
    return [task.index for task in plan.tasks if not extract_finished(run, plan, task.index, model)]


# ----------------------------------------------------------------------------- report --

REPORT_VERSION = 1


def _per_hour(count: int, first: float | None, last: float | None) -> float | None:
    if first is None or last is None or last <= first:
        return None
    return round(count * 3600.0 / (last - first), 1)


def report(run: RunDir, *, query=None, model: str = "vggish") -> dict:
    """Everything `status` shows, as one JSON-ready document (see slurm/README.md for the schema);
    the extract figures are `model`'s."""
    plan = load_plan(run)
    frames = {i: ledger_frame(run.ledger_path(i)) for i in range(len(plan.tasks))}
    status = run_status(run, frames=frames)
    slurm, slurm_tasks = slurm_report(run, query)
    tasks = []
    for t in status.tasks:
        keys = len(plan.tasks[t.index].keys)
        done_keys = extract_keys_done(run, plan, t.index, model)
        state = (task_state(run, t.index) or {}).get("state")
        tasks.append({
            "index": t.index, "segments": t.segments, "ok": t.ok, "failed": dict(sorted(t.failed.items())),
            "pending": t.pending, "state": state,
            "finished": state == "finished" and t.pending == 0,  # (unfinished() also checks each segment's key)
            "first_attempt": t.first_attempt, "last_attempt": t.last_attempt,
            "clips_per_hour": _per_hour(t.ok, t.first_attempt, t.last_attempt),
            "extract": {"keys": keys, "done": done_keys, "finished": done_keys == keys},
            "slurm": slurm_tasks.get(t.index, {}),
        })
    firsts = [t.first_attempt for t in status.tasks if t.first_attempt is not None]
    lasts = [t.last_attempt for t in status.tasks if t.last_attempt is not None]
    return {
        "version": REPORT_VERSION, "run": str(run.root), "at": time.time(),
        "segments": status.segments, "ok": status.ok, "failed": dict(sorted(status.failed.items())),
        "pending": status.pending,
        "clips_per_hour": _per_hour(status.ok, min(firsts, default=None), max(lasts, default=None)),
        "tasks_total": len(tasks), "tasks_finished": sum(t["finished"] for t in tasks),
        "tasks": tasks,
        "extract": {"model": model, "keys": sum(t["extract"]["keys"] for t in tasks),
                    "done": sum(t["extract"]["done"] for t in tasks),
                    "tasks_finished": sum(t["extract"]["finished"] for t in tasks)},
        "by_client": by_client(frames.values()), "notes": note_counts(frames.values()),
        "slurm": slurm,
    }


def is_settled(doc: dict, recent_s: float = 300.0) -> bool:
    """Nothing more will happen by itself: every task done, or no job of the run queued or running
    (a job sacct does not know yet counts as active for `recent_s` after its submission)."""
    if all(t["finished"] and t["extract"]["finished"] for t in doc["tasks"]):
        return True
    if not doc.get("slurm"):
        return False
    for job in doc["slurm"]["jobs"]:
        if any(s in ACTIVE_STATES or (s == "UNKNOWN" and doc["at"] - job["submitted_at"] < recent_s)
               for s in job["states"]):
            return False
    return True


def report_lines(doc: dict, max_rows: int = 40) -> list[str]:
    """The report as text: totals, outcomes by reason, unfinished tasks, extract, SLURM jobs."""
    rate = f", {doc['clips_per_hour']:.0f} clips/h" if doc["clips_per_hour"] else ""
    lines = [f"{doc['run']}: {doc['segments']} segments in {doc['tasks_total']} tasks, "
             f"{doc['tasks_finished']} tasks downloaded{rate}", ""]
    lines += outcome_table(RunStatus([TaskStatus(-1, doc["segments"], doc["ok"], Counter(doc["failed"]))]))
    lines += client_lines(doc.get("by_client", []), doc.get("notes", {}))
    shown = [t for t in doc["tasks"] if not (t["finished"] and t["extract"]["finished"])]
    if shown:
        lines += ["", f"{'task':<5}  {'segs':>6}  {'ok':>6}  {'failed':>6}  {'pending':>7}  {'state':<12}  "
                      f"{'clips/h':>7}  {'keys':>7}  slurm"]
        for t in shown[:max_rows]:
            jobs = ", ".join(f"{stage} {j['job']} {j['state'] or '?'}" + (f" ({j['reason']})" if j.get("reason") else "")
                             for stage, j in t["slurm"].items())
            lines.append(f"{task_name(t['index'])}  {t['segments']:>6}  {t['ok']:>6}  {sum(t['failed'].values()):>6}  "
                         f"{t['pending']:>7}  {t['state'] or '-':<12}  {t['clips_per_hour'] or 0:>7.0f}  "
                         f"{t['extract']['done']:>3}/{t['extract']['keys']:<3}  {jobs}")
        if len(shown) > max_rows:
            lines.append(f"... and {len(shown) - max_rows} more unfinished tasks (--json lists every task)")
    ex = doc["extract"]
    lines += ["", f"extract ({ex.get('model', 'vggish')}): {ex['done']} of {ex['keys']} keys written, {ex['tasks_finished']} of "
                  f"{doc['tasks_total']} tasks complete"]
    if doc["slurm"]:
        lines.append(f"slurm ({doc['slurm']['source'] or 'no sacct or squeue here'}):")
        for job in doc["slurm"]["jobs"]:
            states = ", ".join(f"{n} {s}" for s, n in job["states"].items())
            lines.append(f"  job {job['job_id']} {job['stage']}: {len(job['tasks'])} tasks: {states}")
    return lines
