"""What a SLURM cluster's nodes offer (`sinfo`), and whether an array's request fits one of them.

A request no node of its partition can satisfy (more CPUs, memory or GPUs than any node has, or a
partition that does not exist) pends forever, e.g. as `PD (PartitionConfig)`, and nothing says why;
`submit` checks each array's request first (`check_cluster`) and refuses with the reason. A request
that only nodes now down, drained or failing could satisfy goes with a warning. `parse_sinfo` and
`check_request` are pure functions over sinfo's text, so they are testable without SLURM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from audiosetdl.config import ConfigError, SlurmOptions

# partition (the default one marked *), node, CPUs, memory (MB), generic resources, state
SINFO_ARGS = ("sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G|%T")
UNAVAILABLE_STATES = ("down", "drain", "fail", "future", "inval", "maint", "unk")  # prefixes of sinfo's states
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)B?", re.IGNORECASE)
_MEMORY_UNITS_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@dataclass(frozen=True)
class Node:
    """One node as one partition lists it."""

    partition: str
    default: bool  # the cluster's default partition
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    state: str

    @property
    def available(self) -> bool:
        return not self.state.lower().startswith(UNAVAILABLE_STATES)


@dataclass(frozen=True)
class Request:
    """What each task of one array asks for."""

    stage: str
    partition: str | None  # None: the default partition
    cpus: int
    memory: str  # as given, e.g. "4G"
    gpus: int

    @property
    def memory_mb(self) -> int:
        return parse_memory(self.memory)


def parse_memory(text: str) -> int:
    """A SLURM memory size (`4G`, `500M`, `16000`: MB by default) in whole MB, rounded up."""
    m = _MEMORY.fullmatch(text.strip())
    if not m:
        raise ConfigError(f"memory {text!r}: expected a SLURM size such as 4G or 500M")
    return -int(-float(m.group(1)) * _MEMORY_UNITS_MB[(m.group(2) or "M").upper()] // 1)


def parse_gpus(gres: str) -> int:
    """GPUs in sinfo's GRES column: 'gpu:a100:4(S:0-1),gpu:v100:2' -> 6, '(null)' -> 0."""
    count = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] == "gpu":
            count += int(fields[-1]) if fields[-1].isdigit() else 1
    return count


def parse_sinfo(text: str) -> list[Node]:
    """Lines of `sinfo -h -N -o '%P|%N|%c|%m|%G|%T'` -> nodes (one per node and partition)."""
    nodes = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        partition, name, cpus, memory, gres, state = (f.strip() for f in fields)
        nodes.append(Node(partition.rstrip("*"), partition.endswith("*"), name, int(cpus.rstrip("+")),
                          int(memory.rstrip("+")), parse_gpus(gres), state))
    return nodes


# The options that set each part of a stage's request, for the messages.
FLAGS = {"download": {"partition": "--partition", "cpus": "--cpus-per-task", "memory_mb": "--mem"},
         "extract": {"partition": "--extract-partition", "cpus": "--extract-cpus-per-task", "memory_mb": "--extract-mem",
                     "gpus": "--gpus-per-task"}}


def check_request(nodes: list[Node], request: Request) -> tuple[list[str], list[str]]:
    """(errors, warnings) for one array's request against the cluster's nodes."""
    where, flags = f"{request.stage} array", FLAGS[request.stage]
    partition = request.partition or next((n.partition for n in nodes if n.default), None)
    if partition is None:
        return [], [f"{where}: no partition given and the cluster names no default one: request not checked"]
    members = [n for n in nodes if n.partition == partition]
    if not members:
        known = ", ".join(sorted({n.partition for n in nodes})) or "none"
        return [f"{where}: partition {partition!r} ({flags['partition']}) does not exist (partitions: {known})"], []
    wanted = {"cpus": request.cpus, "memory_mb": request.memory_mb, "gpus": request.gpus}
    asked = {"cpus": f"{request.cpus} CPUs", "memory_mb": f"{request.memory} of memory", "gpus": f"{request.gpus} GPUs"}
    largest = {key: max(getattr(n, key) for n in members) for key in wanted}
    fits = [n for n in members if all(getattr(n, key) >= value for key, value in wanted.items())]
    if not fits:
        short = [key for key in wanted if largest[key] < wanted[key]]
        what = (" and ".join(f"{asked[k]} ({flags.get(k, '')})" for k in short) if short
                else " and ".join(asked.values()) + " on one node")
        hint = "; --gpus-per-task 0 extracts on CPUs" if "gpus" in short else ""
        return [f"{where}: no node of partition {partition!r} has {what}, so its tasks would pend forever (its "
                f"largest have {largest['cpus']} CPUs, {largest['memory_mb']} MB, {largest['gpus']} GPUs){hint}"], []
    if not any(n.available for n in fits):
        states = ", ".join(sorted({f"{n.name} {n.state}" for n in fits}))
        return [], [f"{where}: only nodes not available now can run its tasks ({states}): they wait for them"]
    return [], []


def slurm_requests(stages: list[str], slurm: SlurmOptions) -> list[Request]:
    """The request of each stage's array, as `backends.slurm.parameters` passes it to sbatch."""
    requests = []
    if "download" in stages:
        requests.append(Request("download", slurm.partition, slurm.cpus_per_task, slurm.mem, 0))
    if "extract" in stages:
        requests.append(Request("extract", slurm.extract_partition or slurm.partition, slurm.extract_cpus_per_task,
                                slurm.extract_mem, slurm.gpus_per_task))
    return requests


def query_nodes() -> list[Node] | None:
    """The cluster's nodes from sinfo; None when sinfo is missing or fails."""
    if not shutil.which(SINFO_ARGS[0]):
        return None
    res = subprocess.run(SINFO_ARGS, capture_output=True, text=True, timeout=60, check=False)
    return parse_sinfo(res.stdout) if res.returncode == 0 else None


def check_cluster(stages: list[str], slurm: SlurmOptions, out=print, nodes: list[Node] | None = None) -> None:
    """Refuse (ConfigError) a request no node can satisfy; print warnings. Without sinfo: a warning."""
    nodes = query_nodes() if nodes is None else nodes
    if nodes is None:
        out("warning: sinfo did not answer: the requests were not checked against the cluster's nodes")
        return
    errors: list[str] = []
    for request in slurm_requests(stages, slurm):
        problems, warnings = check_request(nodes, request)
        errors += problems
        for warning in warnings:
            out(f"warning: {warning}")
    if errors:
        raise ConfigError("; ".join(errors))
