"""`audiosetdl status`: aggregation from hand-made ledgers, state files and markers; what counts as
finished for `submit --resume`; SLURM states mapped onto plan tasks; the JSON schema; the plot."""

import json
import time

import pytest

from audiosetdl import slurm_status, status
from audiosetdl.cli import main
from audiosetdl.config import PlanOptions
from audiosetdl.ledger import FAILED, OK, Attempt, LedgerWriter
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir, write_json_atomic

IDS = {"aa": ["aa000000000", "aa000000001", "aa000000002"], "bb": ["bb000000000", "bb000000001", "bb000000002"],
       "cc": ["cc000000000", "cc000000001"]}
T0 = 1_700_000_000.0
TOP_KEYS = {"version", "run", "at", "segments", "ok", "failed", "pending", "clips_per_hour", "tasks_total",
            "tasks_finished", "tasks", "extract", "by_client", "notes", "slurm"}
TASK_KEYS = {"index", "segments", "ok", "failed", "pending", "state", "finished", "first_attempt", "last_attempt",
             "clips_per_hour", "extract", "slurm"}


def attempt(ytid: str, outcome: str = OK, t: float = T0, **kw) -> Attempt:
    return Attempt(ytid, "eval", 0.0, 10.0, outcome, timestamp=t, **kw)


@pytest.fixture
def made(tmp_path):
    """aa: all ok, finished, embedded. bb: a retry, a private video, one pending, stopped by a rate limit.
    cc: its state file says finished but the ledger misses a segment."""
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, 0.0, 10.0, ("/m/09x0r",)) for ids in IDS.values() for y in ids], "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=3, labels=False)))
    task = {prefix: index for (_, prefix), index in load_plan(run).task_of_key().items()}
    ledgers = {
        "aa": [attempt(y, t=T0 + 1800 * i) for i, y in enumerate(IDS["aa"])],
        "bb": [attempt("bb000000000", FAILED, reason="network", t=T0), attempt("bb000000000", t=T0 + 60, attempt=2),
               attempt("bb000000001", FAILED, reason="private", permanent=True, t=T0 + 120)],
        "cc": [attempt("cc000000000", t=T0, seconds=5.0)],
    }
    for prefix, records in ledgers.items():
        with LedgerWriter(run.ledger_path(task[prefix])) as ledger:
            for record in records:
                ledger.append(record)
    for prefix, state in (("aa", "finished"), ("bb", "rate_limited"), ("cc", "finished")):
        write_json_atomic(run.task_state_path(task[prefix]), {"state": state, "at": T0})
    write_json_atomic(run.embeddings_marker("eval", "aa"), {"fingerprint": "x"})
    return run, task


def test_counts_rates_and_finished(made):
    run, task = made
    doc = status.report(run)
    t = {prefix: doc["tasks"][index] for prefix, index in task.items()}
    assert (doc["segments"], doc["ok"], doc["failed"], doc["pending"]) == (8, 5, {"private": 1}, 2)
    assert (t["bb"]["ok"], t["bb"]["failed"], t["bb"]["pending"], t["bb"]["state"]) == (1, {"private": 1}, 1,
                                                                                      "rate_limited")
    assert t["aa"]["clips_per_hour"] == 3.0  # 3 clips between T0 and T0 + 1 h
    assert t["cc"]["first_attempt"] == T0 - 5.0  # when the first attempt began
    assert [t[p]["finished"] for p in ("aa", "bb", "cc")] == [True, False, False]  # cc: ledger incomplete
    assert doc["tasks_finished"] == 1 and doc["tasks_total"] == 3
    assert doc["extract"] == {"model": "vggish", "keys": 3, "done": 1, "tasks_finished": 1}
    assert t["aa"]["extract"] == {"keys": 1, "done": 1, "finished": True}
    assert doc["slurm"] is None and all(x["slurm"] == {} for x in doc["tasks"])
    assert set(doc) == TOP_KEYS and all(set(x) == TASK_KEYS for x in doc["tasks"])
    json.dumps(doc)  # JSON-ready as it is


def test_unfinished_is_read_from_the_run_directory(made):
    run, task = made
    plan = load_plan(run)
    assert status.unfinished(run, plan, "download") == sorted([task["bb"], task["cc"]])
    assert status.unfinished(run, plan, "extract") == sorted([task["bb"], task["cc"]])
    with LedgerWriter(run.ledger_path(task["cc"])) as ledger:
        ledger.append(attempt("cc000000001", FAILED, reason="unavailable", permanent=True))
    assert status.unfinished(run, plan, "download") == [task["bb"]]  # now every segment has a record
    run.task_state_path(task["aa"]).unlink()  # no state file: never known to have finished
    assert task["aa"] in status.unfinished(run, plan, "download")


def test_extract_progress_is_counted_for_the_model_asked(made):
    """`submit --resume --model yamnet` and `status --model yamnet` read RUN/yamnet/'s markers, not VGGish's."""
    run, task = made
    plan = load_plan(run)
    assert status.unfinished(run, plan, "extract", "yamnet") == sorted(task.values())  # only VGGish's aa marker
    write_json_atomic(run.embeddings_marker("eval", "cc", "yamnet"), {"fingerprint": "x"})
    assert status.unfinished(run, plan, "extract", "yamnet") == sorted([task["aa"], task["bb"]])
    assert status.unfinished(run, plan, "extract") == sorted([task["bb"], task["cc"]])
    doc = status.report(run, model="yamnet")
    assert doc["extract"] == {"model": "yamnet", "keys": 3, "done": 1, "tasks_finished": 1}
    assert doc["tasks"][task["cc"]]["extract"]["finished"] and not doc["tasks"][task["aa"]]["extract"]["finished"]
    assert "extract (yamnet): 1 of 3 keys written" in "\n".join(status.report_lines(doc))


def test_slurm_states_map_onto_plan_tasks(made, monkeypatch):
    run, task = made
    aa, bb, cc = task["aa"], task["bb"], task["cc"]
    write_json_atomic(slurm_status.jobs_path(run), [
        {"at": T0, "stages": ["download", "extract"], "resume": False, "jobs": [
            {"stage": "download", "job_id": "12", "tasks": [0, 1, 2]},
            {"stage": "extract", "job_id": "13", "tasks": [0, 1, 2], "dependency": "aftercorr:12"}]},
        {"at": T0 + 10, "stages": ["download"], "resume": True, "jobs": [
            {"stage": "download", "job_id": "20", "tasks": [bb], "begin": "now+1hour"}]},  # one task: a plain job
    ])
    asked = []

    def fake_sacct(job_ids):
        asked.append(job_ids)
        return "sacct", {"12_0": "COMPLETED", "12_1": "FAILED", "12_2": "COMPLETED", "13_0": "COMPLETED",
                         "13_1": "CANCELLED", "20": "PENDING"}

    monkeypatch.setattr(slurm_status, "slurm_states", fake_sacct)
    monkeypatch.setattr(slurm_status, "pending_reasons", lambda ids: asked.append(ids) or {"20": "BeginTime"})
    doc = status.report(run)
    assert asked == [["12", "13", "20"], ["20"]]  # reasons asked of squeue for the jobs with pending tasks only
    assert doc["slurm"]["source"] == "sacct" and doc["slurm"]["submissions"] == 2
    jobs = {job["job_id"]: job for job in doc["slurm"]["jobs"]}
    assert jobs["12"]["states"] == {"COMPLETED": 2, "FAILED": 1}
    assert jobs["13"]["states"] == {"CANCELLED": 1, "COMPLETED": 1, "UNKNOWN": 1}
    assert jobs["20"]["begin"] == "now+1hour" and jobs["13"]["dependency"] == "aftercorr:12"
    tasks = doc["tasks"]
    assert tasks[bb]["slurm"]["download"] == {"job": "20", "state": "PENDING", "reason": "BeginTime"}  # latest wins
    assert tasks[cc]["slurm"]["extract"] == {"job": "13_2", "state": "UNKNOWN", "reason": None}
    assert tasks[aa]["slurm"]["download"] == {"job": "12_0", "state": "COMPLETED", "reason": None}
    assert not status.is_settled(doc)
    text = "\n".join(status.report_lines(doc))
    assert "rate_limited" in text and "private" in text and "job 20 download: 1 tasks: 1 PENDING" in text
    assert "download 20 PENDING (BeginTime)" in text


def test_parse_sacct_and_squeue_lines():
    text = "12_0|COMPLETED\n12_1|CANCELLED by 0\n12_1.batch|CANCELLED\n12_[2-4,7%2]|PENDING\n15|RUNNING\n16|\n"
    assert slurm_status.parse_states(text) == {"12_0": "COMPLETED", "12_1": "CANCELLED", "12_2": "PENDING",
                                         "12_3": "PENDING", "12_4": "PENDING", "12_7": "PENDING", "15": "RUNNING",
                                         "16": "UNKNOWN"}
    text = "12_[2-3]|PartitionConfig\n13|ReqNodeNotAvail, UnavailableNodes:n1\n14|None\n"
    assert slurm_status.parse_reasons(text) == {"12_2": "PartitionConfig", "12_3": "PartitionConfig",
                                          "13": "ReqNodeNotAvail, UnavailableNodes:n1"}


def test_cli_json_watch_and_plot(made, monkeypatch, capsys, tmp_path):
    run, task = made
    write_json_atomic(slurm_status.jobs_path(run), [{"at": T0, "stages": ["download"], "resume": False, "jobs": [
        {"stage": "download", "job_id": "12", "tasks": [0, 1, 2]}]}])
    answers = iter([{"12_0": "RUNNING", "12_1": "RUNNING", "12_2": "PENDING"},
                    {"12_0": "COMPLETED", "12_1": "FAILED", "12_2": "COMPLETED"}])
    monkeypatch.setattr(slurm_status, "slurm_states", lambda ids: ("sacct", next(answers)))
    monkeypatch.setattr(slurm_status, "pending_reasons", lambda ids: {"12_2": "Resources"})
    png = tmp_path / "status.png"
    assert main(["status", str(run.root), "--json", "--watch", "0.01", "--plot", str(png)]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one document per line
    assert [d["slurm"]["jobs"][0]["states"] for d in docs] == [{"PENDING": 1, "RUNNING": 2},
                                                              {"COMPLETED": 2, "FAILED": 1}]
    assert set(docs[0]) == TOP_KEYS
    assert docs[0]["tasks"][2]["slurm"]["download"] == {"job": "12_2", "state": "PENDING", "reason": "Resources"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    monkeypatch.setattr(slurm_status, "slurm_states", lambda ids: (None, {}))  # no sacct, no squeue
    assert main(["status", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert "5" in out and "pending" in out and "slurm (no sacct or squeue here)" in out


def test_settled_when_every_task_is_done(made):
    run, task = made
    doc = status.report(run)
    assert not status.is_settled(doc)  # not submitted, not done: a local run may be going on
    for t in doc["tasks"]:
        t["finished"] = t["extract"]["finished"] = True
    assert status.is_settled(doc)


def test_active_tasks_are_not_submitted_twice(made, monkeypatch):
    run, task = made
    write_json_atomic(slurm_status.jobs_path(run), [{"at": T0, "stages": ["download", "extract"], "resume": False, "jobs": [
        {"stage": "download", "job_id": "12", "tasks": [0, 1, 2]},
        {"stage": "extract", "job_id": "13", "tasks": [0, 1, 2]}]}])
    monkeypatch.setattr(slurm_status, "slurm_states", lambda ids: ("sacct", {
        "12_0": "COMPLETED", "12_1": "COMPLETED", "12_2": "RUNNING", "13_0": "PENDING", "13_1": "COMPLETED"}))
    assert slurm_status.active_tasks(run) == {0, 2}  # 13_2 is unknown to sacct, but was submitted long ago
    write_json_atomic(slurm_status.jobs_path(run), [{"at": time.time(), "stages": ["download"], "resume": False, "jobs": [
        {"stage": "download", "job_id": "30", "tasks": [1]}]}])
    assert slurm_status.active_tasks(run) == {1}  # just submitted: sacct may not know it yet
    monkeypatch.setattr(slurm_status, "slurm_states", lambda ids: ("squeue", {}))
    assert slurm_status.active_tasks(run) == set()  # squeue: a job that left the queue is over


def test_damaged_and_torn_ledger_lines_are_skipped(made):
    run, task = made
    path = run.ledger_path(task["cc"])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("{not json\n" + attempt("cc000000001", FAILED, reason="network").to_json() + "\n" + '{"ytid": "cc0')
    t = status.report(run)["tasks"][task["cc"]]
    assert (t["ok"], t["failed"], t["pending"]) == (1, {"network": 1}, 0)
    assert status.ledger_frame(run.root / "no-such.jsonl").empty
