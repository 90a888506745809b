"""Benchmark: plan the full unbalanced list (2,042,985 rows, synthetic, real format) into 1,000 tasks.

Targets (issue 2): <= 10 s and <= 1.5 GB peak memory on the 2-core CI machine.
Baseline, measured in the same run: a plain row-by-row read of the same file with Python's csv
module into one object per segment, which is where a naive planner starts before doing any work.

    .venv/bin/python bench/plan.py [--rows N] [--tasks N]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth import UNBALANCED_ROWS, write_synthetic_csv  # noqa: E402

LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset" / "class_labels_indices.csv"

CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from audiosetdl.cli import main
code = main(["plan", sys.argv[1], "--out", sys.argv[2], "--tasks", sys.argv[3], "--no-labels", "--log-level", "WARNING"])
elapsed = time.perf_counter() - t
print(json.dumps({"code": code, "seconds": elapsed, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BASELINE = """
import csv, json, resource, sys, time
t = time.perf_counter()
rows = []
with open(sys.argv[1], newline="") as fh:
    for row in csv.reader(fh, skipinitialspace=True):
        if row and not row[0].startswith("#"):
            rows.append((row[0], float(row[1]), float(row[2]), tuple(row[3].split(","))))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=UNBALANCED_ROWS)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mids = [row["mid"] for row in csv.DictReader(open(LABELS))] if LABELS.exists() else \
            [f"/m/{i:05d}" for i in range(527)]
        if LABELS.exists():
            (tmp / "class_labels_indices.csv").write_bytes(LABELS.read_bytes())
        source = write_synthetic_csv(tmp / "unbalanced_train_segments.csv", args.rows, mids)
        print(f"input: {args.rows} rows, {source.stat().st_size / 1e6:.1f} MB; tasks: {args.tasks}")
        ours = run_child(CHILD, str(source), str(tmp / "run"), str(args.tasks))
        assert ours["code"] == 0, ours
        base = run_child(BASELINE, str(source))
        summary = json.loads((tmp / "run" / "plan.json").read_text())["summary"]
    print(f"audiosetdl plan : {ours['seconds']:6.2f} s  peak {ours['peak_mb']:7.0f} MB   (target <= 10 s, <= 1536 MB)")
    print(f"baseline (csv.reader into objects, no planning): {base['seconds']:6.2f} s  peak {base['peak_mb']:7.0f} MB")
    print(f"ratio plan/baseline: time {ours['seconds'] / base['seconds']:.2f}x, memory {ours['peak_mb'] / base['peak_mb']:.2f}x")
    print(f"balance: largest task {summary['task_segments_max']} / mean {summary['task_segments_mean']} = "
          f"{summary['balance']} (proven lower bound {summary['balance_lower_bound']})")
    ok = ours["seconds"] <= 10 and ours["peak_mb"] <= 1536
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
