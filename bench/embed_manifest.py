"""Benchmark: what `embed` spends on its bookkeeping after each shard, as a run grows.

After shard k of a run, `embed` writes that shard's `_inputs` file (its 1000 inputs) and the
manifest, which has a line per shard (`audiosetdl.embed_output`). The baseline, measured in the
same run, is the layout it replaced: one manifest naming every input of every shard, rewritten
whole after each shard (so quadratic in the shards). Both go through `rundir.write_json_atomic`
(fsync and rename). Prints the seconds per shard at a few run sizes and the total for the run.

    .venv/bin/python bench/embed_manifest.py [--shards 1000] [--shard-size 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosetdl.config import EmbedOptions  # noqa: E402
from audiosetdl.embed_output import ShardDirectory  # noqa: E402
from audiosetdl.rundir import write_json_atomic  # noqa: E402


def entries(shard: int, count: int) -> list[dict]:
    return [{"path": f"/data/recordings/session{shard:05d}/take{i:04d}.flac", "id": f"session{shard:05d}/take{i:04d}.flac",
             "size": 3_456_789, "mtime_ns": 1_700_000_000_123_456_789, "frames": 10} for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=1000, help="shards in the simulated run")
    parser.add_argument("--shard-size", type=int, default=EmbedOptions().shard_size)
    parser.add_argument("--samples", type=int, default=5, help="run sizes at which to time one shard's writes")
    args = parser.parse_args()
    at = sorted({max(1, round(args.shards * (i + 1) / args.samples)) for i in range(args.samples)})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        directory = ShardDirectory(out, {"model": "vggish"}, EmbedOptions(shard_size=args.shard_size))
        legacy = {"signature": {"model": "vggish"}, "shards": [], "too_short": [], "failed": []}
        rows = []
        for k in range(args.shards):
            inputs = entries(k, args.shard_size)
            name = f"shard-{k:05d}"
            legacy["shards"].append({"file": name + ".tfrecord", "records": len(inputs), "inputs": inputs})
            directory._commit(name + ".tfrecord", inputs)  # what `flush` records once the shard is written
            if k + 1 not in at:
                continue
            began = time.perf_counter()
            write_json_atomic(out / "_inputs" / f"{name}.json", {"inputs": inputs})
            directory._write_manifest()
            new = time.perf_counter() - began
            began = time.perf_counter()
            write_json_atomic(out / "manifest.json", legacy)
            rows.append((k + 1, new, time.perf_counter() - began))
    print(f"bookkeeping after one shard of {args.shard_size} inputs, seconds (the run's Nth shard):")
    print(f"{'shard':>7} {'_inputs + manifest':>19} {'one manifest (old)':>19} {'ratio':>7}")
    for k, new, old in rows:
        print(f"{k:7d} {new:19.4f} {old:19.3f} {old / new:6.0f}x")
    # Each write grows linearly, so the run's total is close to the trapezoid over the samples.
    total_new = args.shards * sum(r[1] for r in rows) / len(rows)
    total_old = args.shards * rows[-1][2] / 2
    print(f"whole run of {args.shards} shards ({args.shards * args.shard_size:,} inputs), estimated: "
          f"{total_new:.0f} s against {total_old:.0f} s ({total_old / total_new:.0f}x)")


if __name__ == "__main__":
    main()
