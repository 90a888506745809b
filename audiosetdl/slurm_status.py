"""What SLURM says about a run's jobs: RUN/slurm/jobs.json, and their states from sacct or squeue.

`audiosetdl submit` records each submission in RUN/slurm/jobs.json; `slurm_report` maps the
states of those jobs' array tasks onto the plan's tasks (sacct, or squeue where sacct is missing
or has no accounting), and `active_tasks` says which tasks still have a job queued or running.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

from audiosetdl.rundir import RunDir

JOBS_FILE = "jobs.json"  # under RUN/slurm/: one record per `audiosetdl submit`
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                           "PREEMPTED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"})


def jobs_path(run: RunDir) -> Path:
    return run.slurm_dir / JOBS_FILE


def read_submissions(run: RunDir) -> list[dict]:
    """RUN/slurm/jobs.json: [{"at", "stages", "resume", "jobs": [{"stage", "job_id", "tasks", ...}]}]."""
    try:
        return json.loads(jobs_path(run).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


_ARRAY_ROW = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


def _expand(job_id: str) -> list[str]:
    """'12_[0-2,5%2]' -> ['12_0', '12_1', '12_2', '12_5']; anything else as it is."""
    m = _ARRAY_ROW.match(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_states(text: str) -> dict[str, str]:
    """`JobID|State` lines (sacct -P, or squeue -o '%i|%T') -> {"12_0": "RUNNING", "13": "PENDING"}."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        job_id, sep, state = line.strip().partition("|")
        if sep and job_id and "." not in job_id:  # no job steps
            for key in _expand(job_id):
                states[key] = (state.split() or ["UNKNOWN"])[0]  # "CANCELLED by 0" -> CANCELLED
    return states


def slurm_states(job_ids: list[str]) -> tuple[str | None, dict[str, str]]:
    """(source, states) for these jobs: sacct's view, else squeue's (jobs that left the queue are absent)."""
    if not job_ids:
        return None, {}
    if shutil.which("sacct"):
        res = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode == 0:
            return "sacct", parse_states(res.stdout)
    if shutil.which("squeue"):
        res = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, timeout=60,
                             check=False)
        if res.returncode == 0:
            wanted = set(job_ids)
            return "squeue", {k: v for k, v in parse_states(res.stdout).items() if k.split("_")[0] in wanted}
    return None, {}


def parse_reasons(text: str) -> dict[str, str]:
    """`JobID|Reason` lines (squeue -o '%i|%r') -> {"12_3": "Resources", "13": "ReqNodeNotAvail, ..."}."""
    reasons: dict[str, str] = {}
    for line in text.splitlines():
        job_id, sep, reason = line.strip().partition("|")
        if sep and job_id and reason.strip() and reason.strip() != "None":
            for key in _expand(job_id):
                reasons[key] = reason.strip()
    return reasons


def pending_reasons(job_ids: list[str]) -> dict[str, str]:
    """Why SLURM holds these jobs' pending tasks (squeue's %r: Resources, Dependency, PartitionConfig, ...)."""
    if not job_ids or not shutil.which("squeue"):
        return {}
    res = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-j", ",".join(job_ids), "-o", "%i|%r"],
                         capture_output=True, text=True, timeout=60, check=False)
    return parse_reasons(res.stdout) if res.returncode == 0 else {}


def array_key(job: dict, position: int) -> str:
    """SLURM's ID of the job's `position`-th task: submitit submits one task alone as a plain job."""
    return job["job_id"] if len(job["tasks"]) == 1 else f"{job['job_id']}_{position}"


def slurm_report(run: RunDir, query=None) -> tuple[dict | None, dict[int, dict]]:
    """The `slurm` part of the report, and {task: {stage: {"job", "state"}}} from the latest submission."""
    submissions = read_submissions(run)
    if not submissions:
        return None, {}
    source, states = (query or slurm_states)([job["job_id"] for sub in submissions for job in sub["jobs"]])
    waiting = sorted({key.split("_")[0] for key, state in states.items() if state == "PENDING"})
    reasons = pending_reasons(waiting) if waiting else {}
    missing = "NOT_QUEUED" if source == "squeue" else "UNKNOWN"
    jobs, per_task = [], defaultdict(dict)
    for sub in submissions:
        for job in sub["jobs"]:
            counts: Counter = Counter()
            for position, task in enumerate(job["tasks"]):
                key = array_key(job, position)
                state = states.get(key, missing) if source else None
                counts[state or "UNKNOWN"] += 1
                per_task[task][job["stage"]] = {"job": key, "state": state,
                                                "reason": reasons.get(key) if state == "PENDING" else None}
            jobs.append({"job_id": job["job_id"], "stage": job["stage"], "tasks": job["tasks"],
                         "submitted_at": sub["at"], "begin": job.get("begin"), "dependency": job.get("dependency"),
                         "logs": job.get("logs"), "states": dict(sorted(counts.items()))})
    return {"source": source, "submissions": len(submissions), "jobs": jobs}, per_task


def active_tasks(run: RunDir, query=None, recent_s: float = 300.0) -> set[int]:
    """Tasks with a job of any stage still queued or running in SLURM (or submitted too recently for
    sacct to know it): submitting them again would give them two writers."""
    slurm, per_task = slurm_report(run, query)
    if not slurm:
        return set()
    submitted = {job["job_id"]: job["submitted_at"] for job in slurm["jobs"]}
    now = time.time()
    return {task for task, stages in per_task.items() for job in stages.values()
            if job["state"] in ACTIVE_STATES or (job["state"] in (None, "UNKNOWN")
                                                 and now - submitted[job["job"].split("_")[0]] < recent_s)}
