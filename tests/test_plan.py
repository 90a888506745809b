"""The planner's invariants: coverage, disjoint keys, balance, determinism; replanning; split."""

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from audiosetdl.config import PlanOptions
from audiosetdl.ledger import FAILED, OK, Attempt, LedgerWriter, read_ledger
from audiosetdl.metadata.segment_table import read_segments
from audiosetdl.metadata.segments import render_csv, Segment
from audiosetdl.balance import assign_keys, lower_bound
from audiosetdl.plan import PlanError, load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir
from audiosetdl.split import split_csv

ALPHABET = "abAB01-_"


def make_csv(directory: Path, name: str, segments: list[tuple[str, float, float]]) -> Path:
    path = directory / name
    path.write_text(render_csv([Segment(y, s, e, ("/m/09x0r",)) for y, s, e in segments], "test"))
    return path


def random_segments(rng: random.Random, n: int, alphabet: str = ALPHABET) -> list[tuple[str, float, float]]:
    return [("".join(rng.choices(alphabet, k=11)), float(rng.randrange(0, 50) * 10), 0.0) for _ in range(n)]


def plan_into(run_dir: Path, csvs: list[Path], **options) -> tuple[RunDir, object]:
    """Plan into `run_dir`; without a class index beside the CSVs, as --no-labels."""
    run = RunDir(run_dir)
    options.setdefault("labels", (csvs[0].parent / "class_labels_indices.csv").exists())
    planned = build_plan(csvs, PlanOptions(**options))
    write_plan(run, planned)
    return run, planned


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), n_eval=st.integers(1, 300), n_bal=st.integers(0, 200), tasks=st.integers(1, 12))
def test_plan_invariants(tmp_path_factory, seed, n_eval, n_bal, tasks):
    rng = random.Random(seed)
    directory = tmp_path_factory.mktemp("in")
    inputs = {"eval": [(y, s, s + 10) for y, s, _ in random_segments(rng, n_eval)],
              "bal_train": [(y, s, s + 10) for y, s, _ in random_segments(rng, n_bal)]}
    csvs = [make_csv(directory, "eval_segments.csv", inputs["eval"])]
    if n_bal:
        csvs.append(make_csv(directory, "balanced_train_segments.csv", inputs["bal_train"]))
    run, planned = plan_into(tmp_path_factory.mktemp("run"), csvs, tasks=tasks)
    plan = load_plan(run)

    # Coverage: every distinct input segment lands in exactly one task.
    expected = {(subset, y, s, e) for subset, rows in inputs.items() for y, s, e in rows}
    planned_segments = [seg.key for t in plan.tasks for seg in load_task(run, plan, t.index)]
    assert len(planned_segments) == len(set(planned_segments))
    assert set(planned_segments) == expected
    assert plan.summary["segments"] == len(expected)

    # Disjoint keys, and every row belongs to a key of its own task.
    owners = {}
    for task in plan.tasks:
        for key in task.keys:
            assert key not in owners, f"key {key} in tasks {owners[key]} and {task.index}"
            owners[key] = task.index
        assert {(s.subset, s.prefix) for s in load_task(run, plan, task.index)} == set(task.keys)

    # Balance: never worse than greedy's guarantee, and within 1.1 x mean when keys are small.
    counts = {}
    for subset, y, _s, _e in expected:
        counts[(subset, y[:2])] = counts.get((subset, y[:2]), 0) + 1
    loads = [t.segments for t in plan.tasks]
    mean = sum(loads) / len(loads)
    assert len(loads) == min(tasks, len(counts))
    assert max(loads) <= mean + max(counts.values())
    assert max(loads) >= lower_bound(list(counts.values()), len(loads))
    if max(counts.values()) <= 0.1 * mean:
        assert max(loads) <= 1.1 * mean
    assert plan.summary["balance_target_met"] == (max(loads) <= 1.1 * mean)

    # Determinism: the same inputs and options give byte-identical files.
    run2, _ = plan_into(tmp_path_factory.mktemp("run"), csvs, tasks=tasks)
    for path in sorted(run.root.rglob("*")):
        if path.is_file():
            assert (run2.root / path.relative_to(run.root)).read_bytes() == path.read_bytes(), path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=1, max_size=200), st.integers(1, 40))
def test_assign_keys_partitions_and_balances(sizes, n_tasks):
    n_tasks = min(n_tasks, len(sizes))
    counts = {("s", f"{i:03d}"): size for i, size in enumerate(sizes)}
    bins = assign_keys(counts, n_tasks)
    assert sorted(k for b in bins for k in b) == sorted(counts)
    loads = [sum(counts[k] for k in b) for b in bins]
    assert loads == sorted(loads, reverse=True)  # task 0 holds the most work
    mean = sum(sizes) / n_tasks
    assert max(loads) <= mean + max(sizes)
    assert max(loads) >= lower_bound(sizes, n_tasks)
    assert assign_keys(counts, n_tasks) == bins


def test_few_keys_per_task_beats_greedy():
    """4,096 prefixes into 1,000 tasks: some tasks must take five keys; they must be the small ones."""
    rng = random.Random(0)
    counts = {("unbal_train", f"{i:04d}"): 480 + rng.randrange(0, 60) for i in range(4096)}
    loads = sorted((sum(counts[k] for k in b) for b in assign_keys(counts, 1000)), reverse=True)
    five_smallest_groups = sorted(counts.values())[: 96 * 5]
    best_possible = sum(five_smallest_groups) / 96  # the 96 five-key tasks' mean, at best
    greedy_bound = sum(counts.values()) / 1000 + 480  # what largest-first ends near
    assert loads[0] <= best_possible * 1.01 < greedy_bound


def test_real_csvs_plan(shared_audioset, tmp_path):
    run, planned = plan_into(tmp_path / "run", [shared_audioset / "eval_segments.csv",
                                                shared_audioset / "balanced_train_segments.csv"], tasks=50)
    summary = load_plan(run).summary
    assert summary["segments"] == 20371 + 22160 and summary["balance_target_met"]
    assert run.labels_path.read_bytes() == (shared_audioset / "class_labels_indices.csv").read_bytes()
    first = (run.tasks_dir / "00000.csv").read_text().splitlines()
    assert first[0].startswith("# Segments csv created by audiosetdl for task 00000 of 50")
    assert first[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    segments = read_segments(run.tasks_dir / "00000.csv").segments
    assert len(segments) == load_plan(run).tasks[0].segments
    labels = [label for s in segments for label in s.labels]
    assert first[1] == (f"# num_ytids={len({s.ytid for s in segments})}, num_segs={len(segments)}, "
                        f"num_unique_labels={len(set(labels))}, num_positive_labels={len(labels)}")


def test_classes_and_limit(shared_audioset, tmp_path):
    csv = shared_audioset / "eval_segments.csv"
    run, planned = plan_into(tmp_path / "a", [csv], tasks=3, classes=("Clapping",))
    segments = [s for t in load_plan(run).tasks for s in load_task(run, load_plan(run), t.index)]
    clapping = [s for s in read_segments(csv).segments if "/m/0l15bq" in s.labels]
    assert len(segments) == len(clapping) > 50 and all("/m/0l15bq" in s.labels for s in segments)

    run, planned = plan_into(tmp_path / "b", [csv], tasks=3, classes=("Clapping",), limit=10)
    assert planned.plan.summary["segments"] == 10

    run, planned = plan_into(tmp_path / "c", [csv], exclude_classes=("Speech",))
    assert planned.plan.summary["segments"] == sum("/m/09x0r" not in s.labels for s in read_segments(csv).segments)


def test_more_tasks_than_keys(tmp_path):
    csv = make_csv(tmp_path, "eval_segments.csv", [("aaaaaaaaaaa", 0, 10), ("aabbbbbbbbb", 0, 10), ("bbccccccccc", 0, 10)])
    run, planned = plan_into(tmp_path / "run", [csv], tasks=5)
    assert len(planned.plan.tasks) == 2
    assert any("only 2 (subset, prefix) keys" in note for note in planned.notes)


def test_duplicates_are_dropped(tmp_path):
    csv = make_csv(tmp_path, "eval_segments.csv", [("aaaaaaaaaaa", 0, 10), ("aaaaaaaaaaa", 0, 10), ("aaaaaaaaaaa", 10, 20)])
    _, planned = plan_into(tmp_path / "run", [csv])
    assert planned.plan.summary["segments"] == 2 and planned.plan.summary["duplicates_dropped"] == 1


def test_replan_identical_refused_or_forced(tmp_path):
    rng = random.Random(1)
    csv = make_csv(tmp_path, "eval_segments.csv", [(y, s, s + 10) for y, s, _ in random_segments(rng, 400, "abcdefgh")])
    run = RunDir(tmp_path / "run")
    assert write_plan(run, build_plan([csv], PlanOptions(tasks=4, labels=False))) == "created"
    assert write_plan(run, build_plan([csv], PlanOptions(tasks=4, labels=False))) == "unchanged"
    with pytest.raises(PlanError, match=r"different plan \(options differ: tasks\).*--force"):
        write_plan(run, build_plan([csv], PlanOptions(tasks=6, labels=False)))

    # Finished work recorded under the old task numbers follows its keys to the new tasks.
    old = load_plan(run)
    written = []
    for task in old.tasks:
        with LedgerWriter(run.ledger_path(task.index)) as ledger:
            for i, segment in enumerate(load_task(run, old, task.index)):
                record = Attempt(segment.ytid, segment.subset, segment.start, segment.end, OK if i % 2 else FAILED)
                ledger.append(record)
                written.append(record)
    assert write_plan(run, build_plan([csv], PlanOptions(tasks=6, labels=False)), force=True) == "replaced"
    new = load_plan(run)
    assert len(new.tasks) == 6 and not run.task_csv(6).exists()
    regrouped = []
    for task in new.tasks:
        keys = set(task.keys)
        records = list(read_ledger(run.ledger_path(task.index)))
        assert all((r.subset, r.ytid[:2]) in keys for r in records)
        regrouped += records
    assert sorted(regrouped, key=lambda r: r.key) == sorted(written, key=lambda r: r.key)


def test_edited_task_file_is_detected(tmp_path):
    csv = make_csv(tmp_path, "eval_segments.csv", [("aaaaaaaaaaa", 0, 10), ("bbbbbbbbbbb", 0, 10)])
    run, planned = plan_into(tmp_path / "run", [csv], tasks=2)
    plan = load_plan(run)
    path = run.task_csv(0)
    other = "bbbbbbbbbbb" if "aaaaaaaaaaa" in path.read_text() else "aaaaaaaaaaa"
    path.write_text(path.read_text() + f'{other[:2]}zzzzzzzzz, 0.000, 10.000, "/m/09x0r"\n')
    with pytest.raises(PlanError, match=r"00000.csv:5: more rows than plan.json lists"):
        load_task(run, plan, 0)
    with pytest.raises(PlanError, match="task 7 does not exist"):
        load_task(run, plan, 7)


def test_plan_without_class_index_is_refused_unless_no_labels(tmp_path):
    csv = make_csv(tmp_path, "eval_segments.csv", [("aaaaaaaaaaa", 0, 10), ("bbbbbbbbbbb", 0, 10)])
    with pytest.raises(PlanError) as info:
        build_plan([csv], PlanOptions())
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'class_labels_indices.csv'} not found: extract needs the class index")
    assert all(hint in message for hint in ("audiosetdl fetch-metadata DIR", "--metadata DIR", "--no-labels"))
    with pytest.raises(PlanError, match=f"{tmp_path / 'meta' / 'class_labels_indices.csv'} not found"):
        (tmp_path / "meta").mkdir()
        build_plan([csv], PlanOptions(metadata=str(tmp_path / "meta")))
    planned = build_plan([csv], PlanOptions(labels=False))
    assert planned.plan.options["labels"] is False  # extract reads it: records without labels
    assert any("--no-labels: records will be written without labels" in note for note in planned.notes)


def test_split_like_marl(shared_audioset, tmp_path):
    parts = split_csv(shared_audioset / "eval_segments.csv", 3, tmp_path)
    assert [p.name for p in parts] == ["eval_segments.csv.01", "eval_segments.csv.02", "eval_segments.csv.03"]
    original = (shared_audioset / "eval_segments.csv").read_text().splitlines()
    texts = [p.read_text().splitlines() for p in parts]
    assert all(t[:3] == original[:3] for t in texts)
    assert [row for t in texts for row in t[3:]] == original[3:]
    assert max(len(t) for t in texts) - min(len(t) for t in texts) <= 1
