"""Benchmark: training steps per second of each network at each `--precision`, on the released bal_train.

`audiosetdl train --precision bf16` trains under Keras's mixed_bfloat16 policy; this measures what
that buys on this machine, against fp32 measured in the same run. Each network is trained by
`train_member` (the code `audiosetdl train` runs) with the shipped defaults (256 clips a batch,
1024 units); the first `--warmup` steps (graph tracing, XLA compilation) are left out of the rate.
bfloat16 is fast where the CPU has AMX-BF16 or AVX512-BF16 and emulated (slow) elsewhere: the CPU's
flags are printed with the figures.

    nice -n 10 .venv/bin/python bench/train_speed.py
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiosetdl.config import POOLINGS, TrainOptions  # noqa: E402
from audiosetdl.precision import PRECISIONS  # noqa: E402

AUDIOSET = REPO.parent / "shared" / "data" / "audioset"
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


class StepClock:
    """Stands in for train_member's progress bar: the time at which each step ended."""

    def __init__(self):
        self.times = []

    def update(self, _count: int) -> None:
        self.times.append(time.monotonic())

    def set_postfix_str(self, *_args, **_kwargs) -> None:
        pass


def steps_per_second(train_set, options: TrainOptions, pooling: str, warmup: int) -> float:
    from audiosetdl.labels.train import member_configs, train_member

    options = dataclasses.replace(options, pooling=(pooling,), ensemble=1, log_every=0)
    clock = StepClock()
    train_member(train_set, options, options.seed, member_configs(options, train_set.labels.shape[1])[0], bar=clock)
    return (len(clock.times) - warmup) / (clock.times[-1] - clock.times[warmup - 1])


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [flag for flag in BF16_FLAGS if flag in flags.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=AUDIOSET / "bal_train", help="training TFRecords")
    parser.add_argument("--pooling", default="feature,attention,multi,recurrent", help="networks, comma-separated")
    parser.add_argument("--precisions", default="fp32,bf16", help="the first is the baseline")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per network and precision")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the timing starts")
    args = parser.parse_args()
    poolings, precisions = args.pooling.split(","), args.precisions.split(",")
    for chosen, allowed in ((poolings, POOLINGS), (precisions, PRECISIONS)):
        if not set(chosen) <= set(allowed):
            parser.error(f"unknown {sorted(set(chosen) - set(allowed))}: choose from {', '.join(allowed)}")
    from audiosetdl import precision
    from audiosetdl.labels import data
    from audiosetdl.labels.train import configure_threads

    options = dataclasses.replace(TrainOptions(), steps=args.warmup + args.steps)
    configure_threads(options.threads)
    train_set = data.load([args.data], 527)
    rates = {}
    for mode in precisions:
        precision.apply(mode)
        for pooling in poolings:
            rates[pooling, mode] = steps_per_second(train_set, dataclasses.replace(options, precision=mode), pooling,
                                                    args.warmup)
            print(f"{pooling} {mode}: {rates[pooling, mode]:.2f} steps/s", flush=True)
    print(f"\n{len(train_set)} records of {args.data}; batches of {options.batch_size}, {options.hidden_units} units, "
          f"{options.threads} threads; CPU bfloat16 flags: {', '.join(cpu_flags()) or 'none'}")
    base = precisions[0]
    header = "".join(f"{mode + ' steps/s':>14}" for mode in precisions)
    ratios = "".join(f"{mode + '/' + base:>12}" for mode in precisions[1:])
    print(f"{'network':<10}{header}{ratios}")
    for pooling in poolings:
        cells = "".join(f"{rates[pooling, mode]:14.2f}" for mode in precisions)
        cells += "".join(f"{rates[pooling, mode] / rates[pooling, base]:11.2f}x" for mode in precisions[1:])
        print(f"{pooling:<10}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
