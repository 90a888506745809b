"""`audiosetdl submit` on a real SLURM cluster (tests/slurm_fixtures.py), `status` on what it
submitted, the raw sbatch scripts, and the dry run.

SLURM jobs import this module (ScriptedDownload), so that the download stage runs inside them
with tests/scripted_fetcher.py's fetcher: it counts every fetch, which shows that a resumed
task fetches exactly what was missing. The real fetcher against the loopback media server runs
in `test_real_fetcher_through_sbatch_and_submit`.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from audiosetdl import slurm_status, status
from audiosetdl.audio import clip_is_valid
from audiosetdl.backends.slurm import StageTask, minutes, parameters, submit
from audiosetdl.cli import main
from audiosetdl.config import ConfigError, DownloadOptions, PlanOptions, SlurmOptions
from audiosetdl.download.stage import run_task
from audiosetdl.ledger import OK, Attempt, LedgerWriter, read_ledger
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import TEMP_MARK, RunDir, write_json_atomic
from tests.scripted_fetcher import calls, factory
from tests.slurm_fixtures import REPO

SLURM = SlurmOptions(partition="debug", cpus_per_task=1, mem="500M", time="10", gpus_per_task=0,
                     extract_cpus_per_task=1, extract_mem="3G", extract_time="10")
CLI = [sys.executable, "-m", "audiosetdl"]


class ScriptedDownload:
    """The download stage with the scripted fetcher (per-task delay, per-ID outcomes), run inside SLURM jobs."""

    def __init__(self, log_dir: Path, delays: dict[int, float] | None = None, script: dict | None = None):
        self.log_dir, self.delays, self.script = str(log_dir), delays or {}, script or {}

    def __call__(self, run: RunDir, index: int, options: DownloadOptions):
        return run_task(run, index, options, progress=False,
                        fetcher_factory=factory(Path(self.log_dir), self.script, self.delays.get(index, 0.0)))


def make_run(tmp_path: Path, counts: dict[str, int], tasks: int, labels: Path | None = None) -> RunDir:
    """IDs `<prefix><9 digits>`, `counts[prefix]` of each, 2 s segments; one key per prefix."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / "eval_segments.csv"
    ids = [f"{prefix}{i:09d}" for prefix, n in counts.items() for i in range(n)]
    csv.write_text(render_csv([Segment(y, 0.0, 2.0, ("/m/09x0r",)) for y in ids], "t"))
    if labels is not None:
        (tmp_path / "class_labels_indices.csv").write_bytes((labels / "class_labels_indices.csv").read_bytes())
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=tasks, labels=labels is not None)))
    return run


def task_of(run: RunDir) -> dict[str, int]:
    return {prefix: index for (_, prefix), index in load_plan(run).task_of_key().items()}


def fetched(log_dir: Path) -> collections.Counter:
    return collections.Counter(c["ytid"] for c in calls(log_dir))


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status_json(run: RunDir) -> dict:
    res = subprocess.run([*CLI, "status", str(run.root), "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# ------------------------------------------------------------------------ on the cluster --

@pytest.mark.slow
def test_cancel_requeue_and_resume(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # jobs unpickle ScriptedDownload from this module
    run = make_run(tmp_path, {"-a": 8, "bb": 8, "cc": 2, "dd": 2}, tasks=4)
    task = task_of(run)
    cancelled, warned = task["-a"], task["bb"]
    stage = ScriptedDownload(tmp_path, delays={cancelled: 1.0, warned: 1.0},
                             script={"dd000000000": ["rate_limited", "ok"]})
    options = DownloadOptions(workers=1, max_rate=0, max_cooldowns=0)  # dd's task stops at its first refusal
    printed: list[str] = []
    (job,) = submit(run, ["download"], SLURM, options, None, stage_functions={"download": stage}, out=printed.append)
    job_id = job["job_id"]
    assert job["tasks"] == [0, 1, 2, 3] and slurm_status.read_submissions(run)[-1]["jobs"] == [job]
    assert f"{run.slurm_dir.resolve()}/{job_id}_%a_0_log.out" in "\n".join(printed)
    printed.clear()  # submitting again while the array is queued or running sends nothing twice
    assert submit(run, ["download"], SLURM, options, None, resume=True, dry_run=True, out=printed.append) == []
    assert printed[0] == "not submitting tasks still queued or running in SLURM (scancel them first): [0, 1, 2, 3]"

    # Both slow tasks are running: cancel one (SIGTERM), give the other SLURM's time-limit warning (USR2).
    wait_until(lambda: fetched(tmp_path)["-a000000002"] and fetched(tmp_path)["bb000000002"], what="slow tasks")
    slurm_cluster.scancel(f"{job_id}_{cancelled}")
    slurm_cluster.run("scancel", "--signal=USR2", f"{job_id}_{warned}")
    states = slurm_cluster.wait(job_id, timeout=180)
    assert states == {f"{job_id}_{cancelled}": "CANCELLED", f"{job_id}_{warned}": "COMPLETED",
                      f"{job_id}_{task['cc']}": "COMPLETED", f"{job_id}_{task['dd']}": "FAILED"}, states

    # The cancelled task stopped cleanly: no partial file, a ledger of whole lines matching the clips.
    # (SLURM marks a job CANCELLED at once; the task may still be finishing its clip in flight.)
    wait_until(lambda: status.task_state(run, cancelled), timeout=30, what="the cancelled task's state file")
    assert status.task_state(run, cancelled)["state"] == "interrupted"
    assert not [p for p in (run.root / "audio").rglob("*") if TEMP_MARK in p.name]
    lines = run.ledger_path(cancelled).read_text().splitlines(keepends=True)
    assert lines and all(line.endswith("\n") and json.loads(line)["outcome"] == OK for line in lines)
    done = {r.ytid for r in read_ledger(run.ledger_path(cancelled))}
    assert 3 <= len(done) < 8
    assert {p.name.split("_")[0] for p in run.audio_dir("eval", "-a").glob("*.flac")} == done
    plan = load_plan(run)
    for segment in load_task(run, plan, cancelled):
        assert (segment.ytid in done) == clip_is_valid(
            run.clip_path(segment.subset, segment.ytid, segment.start, segment.end), segment)
    # The warned task stopped cleanly too, was checkpointed and requeued, and finished by itself.
    assert "Requeued job" in (run.slurm_dir / f"{job_id}_{warned}_0_log.err").read_text()
    assert status.task_state(run, warned)["state"] == "finished"
    assert status.task_state(run, task["dd"])["state"] == "rate_limited"

    doc = status_json(run)
    assert doc["tasks"][cancelled]["slurm"]["download"] == {"job": f"{job_id}_{cancelled}", "state": "CANCELLED",
                                                            "reason": None}
    assert doc["tasks"][task["dd"]]["slurm"]["download"]["state"] == "FAILED"
    assert doc["slurm"]["source"] == "sacct" and doc["slurm"]["jobs"][0]["states"] == {
        "CANCELLED": 1, "COMPLETED": 2, "FAILED": 1}
    assert (doc["ok"], doc["failed"], doc["pending"]) == (len(done) + 10, {"rate_limited": 1}, 8 - len(done) + 1)
    assert doc["tasks_finished"] == 2

    # --resume: only the two unfinished tasks go, the rate-limited one as its own array starting later.
    resume_at = time.time()
    jobs = submit(run, ["download"], replace(SLURM, rate_limited_delay="now+3"), options, None, resume=True,
                  stage_functions={"download": stage})
    assert [(j["tasks"], j["begin"]) for j in jobs] == [([cancelled], None), ([task["dd"]], "now+3")]
    assert [s["resume"] for s in slurm_status.read_submissions(run)] == [False, True]
    states = slurm_cluster.wait(*[j["job_id"] for j in jobs], timeout=120)
    assert set(states.values()) == {"COMPLETED"}, states
    assert status.unfinished(run, plan, "download") == []
    counts = fetched(tmp_path)
    assert counts.pop("dd000000000") == 2  # refused once, then fetched
    assert len(counts) == 19 and set(counts.values()) == {1}  # nothing fetched twice
    dd_ok = [r for r in read_ledger(run.ledger_path(task["dd"])) if r.outcome == OK]
    assert min(r.timestamp - r.seconds for r in dd_ok) >= resume_at + 2  # --begin now+3 held it back
    doc = status_json(run)
    assert (doc["ok"], doc["pending"], doc["tasks_finished"]) == (20, 0, 4)
    printed.clear()
    assert submit(run, ["download"], SLURM, options, None, resume=True, out=printed.append) == []
    assert printed and printed[0].startswith("nothing to submit")


def sacct_times(*job_ids: str) -> dict[str, tuple[float, float]]:
    """{"12_0": (start, end)} in epoch seconds (sacct's 1 s resolution)."""
    res = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,Start,End", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True, timeout=60)
    parse = lambda text: time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))  # noqa: E731
    return {j: (parse(a), parse(b)) for j, a, b in (line.split("|") for line in res.stdout.split())}


@pytest.mark.slow
def test_extract_task_follows_its_own_download_task(slurm_cluster, tmp_path, monkeypatch, shared_audioset,
                                                    vggish_models):
    pytest.importorskip("audiosetdl.extract", reason="the extract stage (audiosetdl/extract.py) is not there yet")
    from audiosetdl import tfrecords
    from audiosetdl.config import ExtractOptions

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    run = make_run(tmp_path, {"aa": 2, "bb": 2, "cc": 2}, tasks=3, labels=shared_audioset)
    task = task_of(run)
    stage = ScriptedDownload(tmp_path, delays={task["cc"]: 10.0})  # one slow download task
    extract_options = ExtractOptions(models=str(vggish_models.directory), batch_size=8, device="/CPU:0")
    download, extract = submit(run, ["download", "extract"], SLURM, DownloadOptions(workers=1, max_rate=0),
                               extract_options, stage_functions={"download": stage}, out=lambda line: None)
    assert (download["stage"], extract["stage"]) == ("download", "extract")
    assert extract["tasks"] == download["tasks"] == [0, 1, 2]
    assert extract["dependency"] == f"aftercorr:{download['job_id']}"
    states = slurm_cluster.wait(download["job_id"], extract["job_id"], timeout=420)
    assert set(states.values()) == {"COMPLETED"} and len(states) == 6, states
    for prefix in ("aa", "bb", "cc"):
        records = list(tfrecords.read(run.embeddings_path("eval", prefix)))
        assert sorted(r.video_id for r in records) == [f"{prefix}000000000", f"{prefix}000000001"]
        assert all(r.embedding.shape == (2, 128) for r in records)  # 2 s clips: two 0.96 s examples
        assert run.embeddings_marker("eval", prefix).exists()
    # Each extract task waited for its own download task only, not for the slow one.
    times = sacct_times(download["job_id"], extract["job_id"])
    dl = {i: times[f"{download['job_id']}_{i}"] for i in range(3)}
    ex = {i: times[f"{extract['job_id']}_{i}"] for i in range(3)}
    assert all(ex[i][0] >= dl[i][1] for i in range(3)), (dl, ex)
    assert min(ex[i][0] for i in range(3) if i != task["cc"]) < dl[task["cc"]][1], (dl, ex)
    doc = status_json(run)
    assert doc["extract"] == {"model": "vggish", "keys": 3, "done": 3, "tasks_finished": 3}
    assert {t["slurm"]["extract"]["state"] for t in doc["tasks"]} == {"COMPLETED"}
    assert status.is_settled(doc)


STUB = """#!/bin/bash
# stands in for the venv's audiosetdl: records how it was called, and whether SIGTERM reached it
out="$STUB_OUT/task-$SLURM_ARRAY_TASK_ID"
printf '%s\n' "$@" > "$out.args"
trap 'echo TERM > "$out.term"; exit 0' TERM
if [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then touch "$out.running"; sleep 120 & wait; fi
"""


@pytest.mark.slow
def test_raw_sbatch_script_passes_arguments_and_signals(slurm_cluster, tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "audiosetdl").write_text(STUB)
    (venv / "bin" / "audiosetdl").chmod(0o755)
    monkeypatch.setenv("AUDIOSETDL_VENV", str(venv))
    monkeypatch.setenv("STUB_OUT", str(tmp_path))
    args = ["--url-template", "http://127.0.0.1:1/media/{ytid}.m4a", "--proxy", "-not-an-option", "--workers", "1"]
    job = slurm_cluster.sbatch("--array=0-1", "-p", "debug", "--mem=100M", "-o", str(tmp_path / "%A_%a.out"),
                               str(REPO / "slurm" / "download.sbatch"), "RUN DIR", *args, cwd=tmp_path)
    wait_until(lambda: (tmp_path / "task-1.running").exists(), what="array task 1")
    slurm_cluster.run("scancel", "--batch", "--signal=TERM", f"{job}_1")  # what --signal=B:TERM@120 sends
    states = slurm_cluster.wait(job, timeout=60)
    assert set(states.values()) == {"COMPLETED"}, states
    for i in (0, 1):
        assert (tmp_path / f"task-{i}.args").read_text().splitlines() == ["download", "RUN DIR", *args]
    assert (tmp_path / "task-1.term").read_text().strip() == "TERM"  # the script exec'd audiosetdl
    assert "download RUN DIR --url-template" in (tmp_path / f"{job}_0.out").read_text()


@pytest.mark.slow
def test_real_fetcher_through_sbatch_and_submit(slurm_cluster, tmp_path, media_server, media_60s):
    pytest.importorskip("audiosetdl.download.fetcher",
                        reason="the real clip fetcher (audiosetdl/download/fetcher.py) is not there yet")
    from tests.media import Shape

    counts = {"-x": 2, "yy": 2, "zz": 2}
    for prefix, n in counts.items():
        for i in range(n):
            media_server.add(f"{prefix}{i:09d}", media_60s[Shape.DASH_M4A].path)
    template = media_server.url_template("m4a")

    def check_all_ok(run: RunDir) -> None:
        plan = load_plan(run)
        for t in plan.tasks:
            for segment in load_task(run, plan, t.index):
                assert clip_is_valid(run.clip_path(segment.subset, segment.ytid, segment.start, segment.end), segment)
            assert {r.outcome for r in read_ledger(run.ledger_path(t.index))} == {OK}
        assert status.unfinished(run, plan, "download") == []

    # The plain sbatch script, run from elsewhere: it finds the checkout's venv by itself.
    first = make_run(tmp_path / "a", counts, tasks=3)
    job = slurm_cluster.sbatch("--array=0-2", "-p", "debug", "--mem=1G", "--cpus-per-task=1",
                               "-o", str(tmp_path / "sbatch-%A_%a.out"), str(REPO / "slurm" / "download.sbatch"),
                               str(first.root), "--url-template", template, "--workers", "1", "--max-rate", "0",
                               cwd=tmp_path)
    states = slurm_cluster.wait(job, timeout=180)
    assert set(states.values()) == {"COMPLETED"}, (states, (tmp_path / f"sbatch-{job}_0.out").read_text())
    check_all_ok(first)
    res = subprocess.run([*CLI, "submit", str(first.root), "--resume", "--stages", "download"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("nothing to submit"), res.stdout + res.stderr

    # `audiosetdl submit`, through submitit, with the real fetcher.
    second = make_run(tmp_path / "b", counts, tasks=3)
    media_server.reset_counters()
    res = subprocess.run([*CLI, "submit", str(second.root), "--stages", "download", "--partition", "debug",
                          "--cpus-per-task", "1", "--mem", "1G", "--time", "10", "--url-template", template,
                          "--max-rate", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (job,) = slurm_status.read_submissions(second)[-1]["jobs"]
    states = slurm_cluster.wait(job["job_id"], timeout=180)
    assert set(states.values()) == {"COMPLETED"}, states
    check_all_ok(second)
    assert {r.ytid for r in media_server.requests() if r.ytid} == {f"{p}{i:09d}" for p, n in counts.items()
                                                                   for i in range(n)}


@pytest.mark.slow
def test_requests_checked_against_the_nodes_and_pending_reasons_shown(slurm_cluster, tmp_path):
    from audiosetdl.backends.sinfo import query_nodes
    from audiosetdl.config import ExtractOptions

    run = make_run(tmp_path, {"aa": 1, "bb": 1}, tasks=2)
    too_many = max(n.cpus for n in query_nodes() if n.partition == "debug") + 1
    res = subprocess.run([*CLI, "submit", str(run.root), "--stages", "download", "--partition", "debug",
                          "--cpus-per-task", str(too_many)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"download array: no node of partition 'debug' has {too_many} CPUs (--cpus-per-task)" in res.stderr
    with pytest.raises(ConfigError, match="extract array: no node of partition 'cpu' has 1 GPUs"):  # no GPU here
        submit(run, ["extract"], replace(SLURM, partition=None, gpus_per_task=1), None, ExtractOptions())
    with pytest.raises(ConfigError, match="partition 'gpu' .* does not exist"):
        submit(run, ["download"], replace(SLURM, partition="gpu"), DownloadOptions(), None)
    assert not slurm_status.jobs_path(run).exists()  # nothing was submitted

    # A held array: status shows SLURM's reason for each pending task.
    (job,) = submit(run, ["download"], replace(SLURM, sbatch_arg=("--hold",)), DownloadOptions(workers=1), None,
                    out=lambda line: None)
    try:
        wait_until(lambda: all(t["slurm"]["download"]["reason"] for t in status_json(run)["tasks"]), timeout=60,
                   what="pending reasons")
        doc = status_json(run)
        assert [t["slurm"]["download"] for t in doc["tasks"]] == [
            {"job": f"{job['job_id']}_{i}", "state": "PENDING", "reason": "JobHeldUser"} for i in range(2)]
        res = subprocess.run([*CLI, "status", str(run.root)], capture_output=True, text=True, timeout=120)
        assert f"download {job['job_id']}_1 PENDING (JobHeldUser)" in res.stdout, res.stdout
    finally:
        slurm_cluster.scancel(job["job_id"])


# ---------------------------------------------------------------------- no cluster needed --

def test_dry_run_prints_the_scripts(tmp_path, capsys):
    pytest.importorskip("audiosetdl.extract")
    run = make_run(tmp_path, {"aa": 1, "bb": 1, "cc": 1}, tasks=3)
    argv = ["submit", str(run.root), "--dry-run", "--partition", "debug", "--extract-partition", "gpu",
            "--array-parallelism", "2", "--time", "1-00:00:00", "--sbatch-arg=--mail-type=END", "--account", "ac"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    download, extract = out.split("extract: job ")
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=debug", "#SBATCH --time=1440", "#SBATCH --mem=4G",
                 "#SBATCH --signal=USR2@120", "#SBATCH --mail-type=END", "#SBATCH --account=ac",
                 f"#SBATCH --output={run.slurm_dir.resolve()}/%A_%a_0_log.out", "-m submitit.core._submit"):
        assert line in download.splitlines() or line in download, line
    assert "--gpus-per-task" not in download and "--dependency" not in download
    assert " --cpus-per-task 4 " in download  # srun's too: SLURM 22.05's srun does not inherit sbatch's
    for line in ("#SBATCH --dependency=aftercorr:DRYRUN1", "#SBATCH --kill-on-invalid-dep=yes",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --mem=16G"):
        assert line in extract.splitlines(), line
    assert not slurm_status.jobs_path(run).exists()  # nothing submitted, nothing recorded

    # --resume: task 1 finished downloading, so it goes only to extract, in an array without dependency.
    with LedgerWriter(run.ledger_path(1)) as ledger:
        for segment in load_task(run, load_plan(run), 1):
            ledger.append(Attempt(segment.ytid, segment.subset, segment.start, segment.end, OK))
    write_json_atomic(run.task_state_path(1), {"state": "finished", "at": 0})
    write_json_atomic(run.task_state_path(2), {"state": "rate_limited", "at": 0})
    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if ": job DRYRUN" in line]
    assert heads == ["download: job DRYRUN1, 1 task(s) [plan tasks 0]",
                     "extract: job DRYRUN2, 1 task(s) [plan tasks 0], after afterok:DRYRUN1",
                     "download: job DRYRUN3, 1 task(s) [plan tasks 2], begins now+1hour",
                     "extract: job DRYRUN4, 1 task(s) [plan tasks 2], after afterok:DRYRUN3",
                     "extract: job DRYRUN5, 1 task(s) [plan tasks 1]"]
    assert "#SBATCH --begin=now+1hour" in out


def test_options_become_sbatch_parameters(tmp_path):
    assert [minutes(t) for t in ("90", "5:30", "24:00:00", "1-12", "1-00:30", "2-00:00:01")] == [
        90, 6, 1440, 2160, 1470, 2881]
    with pytest.raises(ConfigError, match="SLURM time"):
        minutes("a day")
    run = RunDir(tmp_path / "r")
    slurm = SlurmOptions(partition="cpu", constraint="intel", extract_constraint="a100", gpus_per_task=2, qos="q",
                         sbatch_arg=("--exclusive", "--mail-type=END"))
    dl = parameters("download", slurm, 10, run, begin="now+1hour")
    ex = parameters("extract", slurm, 10, run, dependency="aftercorr:5")
    assert (dl["partition"], dl["constraint"], dl["time"], dl["array_parallelism"], "gpus_per_task" in dl) == (
        "cpu", "intel", 1440, 10, False)
    assert dl["additional_parameters"] == {"begin": "now+1hour", "exclusive": True, "mail-type": "END"}
    assert (ex["partition"], ex["constraint"], ex["gpus_per_task"], ex["qos"], ex["mem"]) == (
        "cpu", "a100", 2, "q", "16G")
    assert ex["additional_parameters"]["kill-on-invalid-dep"] == "yes"
    with pytest.raises(ConfigError, match="long form"):
        parameters("download", replace(slurm, sbatch_arg=("-x node1",)), 1, run)
    with pytest.raises(ConfigError, match="--stages"):
        submit(run, ["download,embed"], slurm, None, None, dry_run=True)


def test_time_limit_warning_stops_the_stage_then_requeues():
    """SLURM's USR2 becomes the stage's clean stop (SIGTERM); submitit's requeue runs after the stage returned."""
    events: list[str] = []
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR2, signal.SIGTERM)}
    signal.signal(signal.SIGUSR2, lambda s, f: events.append("requeue"))  # submitit's handlers, as in a job
    signal.signal(signal.SIGTERM, lambda s, f: events.append("ignored"))

    def listening_stage(run, index, options):  # like the download pool: SIGTERM means stop after the clip
        previous = signal.signal(signal.SIGTERM, lambda s, f: events.append("stop"))
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        events.append("flushed")
        signal.signal(signal.SIGTERM, previous)
        return SimpleNamespace(stopped="interrupted")

    def deaf_stage(run, index, options):  # no SIGTERM handler of its own: requeue at once
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        return SimpleNamespace(stopped=None)

    try:
        with pytest.raises(RuntimeError, match=r"task 00003 stopped \(interrupted\).*--resume"):
            StageTask(listening_stage, "/runs/r", None)(3)
        assert events == ["stop", "flushed", "requeue"]
        events.clear()
        assert StageTask(deaf_stage, "/runs/r", None)(3).stopped is None
        assert events == ["requeue"]
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    task = StageTask(deaf_stage, "/runs/r", DownloadOptions())
    delayed = task.checkpoint(7)  # what submitit pickles for the requeued job: the same call
    assert delayed.function is task and delayed.args == (7,)
