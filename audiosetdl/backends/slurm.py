"""The SLURM backend: each stage's tasks as a submitit job array, one array task per plan task.

Extract task i waits for download task i only (`--dependency=aftercorr`, cancelled if it fails).
`resume` sends only tasks the run directory shows unfinished (`status.unfinished`); rate-limited
download tasks go as their own array with `--begin`, extract-only tasks without dependency;
tasks still queued or running are never sent twice. Array index i runs plan task `tasks[i]` of
its record in RUN/slurm/jobs.json; submitit's scripts, pickles and logs are in RUN/slurm/.

SIGTERM (scancel, preemption) makes the download stage finish its clips in flight and flush its
ledger. The time-limit warning (`--signal=USR2@120`) becomes that same clean stop, then submitit
checkpoints (the same call, which resumes) and requeues. A task stopped unfinished exits non-zero.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from typing import Callable

from audiosetdl.backends.sinfo import check_cluster
from audiosetdl.config import ConfigError, SlurmOptions
from audiosetdl.download.pacing import describe_budget
from audiosetdl.plan import load_plan
from audiosetdl.rundir import RunDir, write_json_atomic
from audiosetdl.slurm_status import active_tasks, jobs_path, read_submissions
from audiosetdl.status import STAGES, run_status, task_state, unfinished

SIGNAL_DELAY_S = 120  # the time-limit warning comes this long before the limit
MAX_REQUEUES = 3  # requeues after time limits (submitit's max_num_timeout)


class StageTask:
    """`stage(run, index, options)` as submitit runs it: picklable, and checkpointable (a rerun resumes)."""

    def __init__(self, stage: Callable, run_root, options) -> None:
        self.stage, self.run_root, self.options = stage, str(run_root), options

    def __call__(self, index: int):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(processName)s %(name)s: "
                                                       "%(message)s")
        requeue, idle_term, main = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM), os.getpid()
        warned = []  # "stop" once the stage was asked to stop, "requeued" once submitit requeued

        def time_limit_warning(signum, frame):
            if os.getpid() != main or warned or not callable(requeue):  # forked workers inherit this handler
                return
            if signal.getsignal(signal.SIGTERM) is idle_term:  # the stage is not listening: requeue now
                warned.append("requeued")
                requeue(signum, frame)
            else:
                warned.append("stop")
                os.kill(main, signal.SIGTERM)  # the stage's clean stop; requeued once it returns

        signal.signal(signal.SIGUSR2, time_limit_warning)
        try:
            summary = self.stage(RunDir(self.run_root), index, self.options)
        finally:
            if requeue is not None:
                signal.signal(signal.SIGUSR2, requeue)
        if warned == ["stop"]:
            requeue(signal.SIGUSR2, None)  # submitit: checkpoint, scontrol requeue, exit
        if getattr(summary, "stopped", None):
            raise RuntimeError(f"task {index:05d} stopped ({summary.stopped}); resumable: audiosetdl submit "
                               f"{self.run_root} --resume")
        return summary

    def checkpoint(self, index: int):
        import submitit

        return submitit.helpers.DelayedSubmission(self, index)


def minutes(text: str) -> int:
    """A SLURM time (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, rounded up."""
    try:
        days, _, rest = text.strip().rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if len(parts) > 3:
            raise ValueError
        h, m, s = (parts + [0, 0])[:3] if days or len(parts) == 3 else [0, *parts, 0][:3]
        return int(days or 0) * 1440 + h * 60 + m + (s > 0)
    except ValueError:
        raise ConfigError(f"time limit {text!r}: expected a SLURM time such as 24:00:00 or 1-12:00:00") from None


def parameters(stage: str, slurm: SlurmOptions, n_tasks: int, run: RunDir, *, begin=None, dependency=None) -> dict:
    """submitit's sbatch parameters for one array of `stage`."""
    extract = stage == "extract"
    raw = {"begin": begin} if begin else {}
    if dependency:
        raw["kill-on-invalid-dep"] = "yes"  # a failed download task cancels its extract task
    for arg in slurm.sbatch_arg:
        if not arg.startswith("--"):
            raise ConfigError(f"--sbatch-arg {arg!r}: give sbatch's long form, --name=value or --flag")
        name, eq, value = arg[2:].partition("=")
        raw[name] = value if eq else True
    cpus = slurm.extract_cpus_per_task if extract else slurm.cpus_per_task
    params = dict(
        job_name=f"audiosetdl-{stage}-{run.root.name}", dependency=dependency, account=slurm.account, qos=slurm.qos,
        partition=(slurm.extract_partition or slurm.partition) if extract else slurm.partition,
        time=minutes(slurm.extract_time if extract else slurm.time), mem=slurm.extract_mem if extract else slurm.mem,
        cpus_per_task=cpus, srun_args=["--cpus-per-task", str(cpus)],  # SLURM 22.05's srun does not inherit it
        constraint=slurm.extract_constraint if extract else slurm.constraint,
        gpus_per_task=(slurm.gpus_per_task or None) if extract else None, signal_delay_s=SIGNAL_DELAY_S,
        array_parallelism=slurm.array_parallelism or n_tasks, additional_parameters=raw)
    return {k: v for k, v in params.items() if v is not None}


def submit(run: RunDir, stages, slurm: SlurmOptions, download_options, extract_options, *, resume: bool = False,
           dry_run: bool = False, stage_functions: dict | None = None, out=print) -> list[dict]:
    """Submit the stages' arrays (only unfinished tasks with `resume`); returns the jobs recorded."""
    stages = [s for value in stages for s in value.split(",") if s]
    if not stages or set(stages) - set(STAGES):
        raise ConfigError(f"--stages {','.join(stages)}: choose from {', '.join(STAGES)}")
    plan = load_plan(run)
    if not dry_run:
        check_cluster(stages, slurm, out)  # a request no node can satisfy would pend forever
    busy = active_tasks(run)
    if busy:
        out(f"not submitting tasks still queued or running in SLURM (scancel them first): {sorted(busy)}")
    model = extract_options.model if extract_options else "vggish"  # whose markers say a task is extracted
    todo = {stage: [i for i in (unfinished(run, plan, stage, model) if resume else range(len(plan.tasks))) if i not in busy]
            for stage in stages}
    download = todo.get("download", [])
    extract = sorted(set(download) | set(todo["extract"])) if "extract" in stages else []
    late = [i for i in download if resume and (task_state(run, i) or {}).get("state") == "rate_limited"]
    groups = [(tasks, begin) for tasks, begin in (([i for i in download if i not in late], None),
                                                 (late, slurm.rate_limited_delay)) if tasks]
    if download and download_options is not None:  # the run-wide egress budget bounds the whole array
        parallel = min(slurm.array_parallelism or len(download), len(download))
        left = sum(t.segments - t.ok for t in run_status(run, download).tasks)  # clips not done yet
        for line in describe_budget(left, download_options, parallel):
            out(line)
    functions = {stage: (stage_functions or {}).get(stage) or _stage_function(stage) for stage in stages}
    options = {"download": download_options, "extract": extract_options}
    history = read_submissions(run) + [{"at": time.time(), "stages": stages, "resume": resume, "jobs": []}]
    jobs = history[-1]["jobs"]

    def send(stage: str, tasks: list[int], begin: str | None = None, after: str | None = None) -> str:
        dependency = after and f"{'aftercorr' if len(tasks) > 1 else 'afterok'}:{after}"
        params = parameters(stage, slurm, len(tasks), run, begin=begin, dependency=dependency)
        task = StageTask(functions[stage], run.root.resolve(), options[stage])
        job_id = f"DRYRUN{len(jobs) + 1}" if dry_run else _sbatch(run, params, task, tasks)
        logs = run.slurm_dir.resolve() / (f"{job_id}_%a_0_log" if len(tasks) > 1 else f"{job_id}_0_log")
        jobs.append({"stage": stage, "job_id": job_id, "tasks": tasks, "begin": begin, "dependency": dependency,
                     "logs": f"{logs}.out"})
        shown = ", ".join(map(str, tasks[:20])) + (", ..." if len(tasks) > 20 else "")
        out(f"{stage}: job {job_id}, {len(tasks)} task(s) [plan tasks {shown}]"
            + (f", after {dependency}" if dependency else "") + (f", begins {begin}" if begin else ""))
        out(f"  logs: {logs}.out and .err" + ("  (%a: array index i runs plan task tasks[i])" * (len(tasks) > 1)))
        if dry_run:
            out(_sbatch_text(run, params, len(tasks)))
        else:
            write_json_atomic(jobs_path(run), history)  # recorded as soon as submitted
        return job_id

    for tasks, begin in groups:
        job_id = send("download", tasks, begin)
        if extract:
            send("extract", tasks, after=job_id)
    rest = [i for i in extract if i not in download]
    if rest:
        send("extract", rest)
    if not jobs:
        out(f"nothing to submit: every task of {', '.join(stages)} is finished in {run.root}")
    elif not dry_run:
        out(f"job IDs recorded in {jobs_path(run)}; follow with: audiosetdl status {run.root} --watch 60")
    return jobs


def _stage_function(stage: str) -> Callable:
    if stage == "download":
        from audiosetdl.download.stage import run_task
    else:
        from audiosetdl.extract import run_task
    return run_task


def _sbatch(run: RunDir, params: dict, task: StageTask, tasks: list[int]) -> str:
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder=run.slurm_dir, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(**params)
        return executor.map_array(task, tasks)[0].job_id.split("_")[0]
    except RuntimeError as exc:  # no srun on this machine, or sbatch refused (submitit's FailedJobError)
        raise ConfigError(f"submission failed: {exc}") from None


def _sbatch_text(run: RunDir, params: dict, n_tasks: int) -> str:
    """The sbatch script submitit would submit for this array."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = run.slurm_dir.resolve()
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_tasks if n_tasks > 1 else None, **params)
