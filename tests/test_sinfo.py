"""A SLURM request checked against what the nodes offer (pure functions over sinfo's output; the
same check against the real cluster is in tests/test_slurm_submit.py)."""

import pytest

from audiosetdl.backends.sinfo import (
    Request, check_cluster, check_request, parse_gpus, parse_memory, parse_sinfo, slurm_requests,
)
from audiosetdl.config import ConfigError, SlurmOptions

# sinfo -h -N -o '%P|%N|%c|%m|%G|%T'
SINFO = """cpu*|c01|32|128000|(null)|idle
cpu*|c02|64|256000|(null)|mixed
gpu|g01|16|64000|gpu:a100:4(S:0-1)|allocated
gpu|g02|48|512000|gpu:a100:8(S:0-1),mps:400|drained
debug|c01|32|128000|(null)|idle
"""
NODES = parse_sinfo(SINFO)


def test_parse_sinfo_lines():
    assert [(n.partition, n.default, n.name, n.cpus, n.memory_mb, n.gpus, n.available) for n in NODES] == [
        ("cpu", True, "c01", 32, 128000, 0, True), ("cpu", True, "c02", 64, 256000, 0, True),
        ("gpu", False, "g01", 16, 64000, 4, True), ("gpu", False, "g02", 48, 512000, 8, False),
        ("debug", False, "c01", 32, 128000, 0, True)]
    assert [parse_memory(t) for t in ("4G", "500M", "16000", "1T", "0", "1.5G")] == [4096, 500, 16000, 1 << 20, 0, 1536]
    assert [parse_gpus(t) for t in ("(null)", "gpu:2", "gpu:v100:2,gpu:a100:1(S:0)", "gpu", "mps:100")] == [0, 2, 3, 1, 0]
    with pytest.raises(ConfigError, match="memory 'lots'"):
        parse_memory("lots")


@pytest.mark.parametrize("request_, error", [
    (Request("download", None, 128, "4G", 0),
     "download array: no node of partition 'cpu' has 128 CPUs (--cpus-per-task), so its tasks would pend forever "
     "(its largest have 64 CPUs, 256000 MB, 0 GPUs)"),
    (Request("download", "debug", 4, "200G", 0), "no node of partition 'debug' has 200G of memory (--mem)"),
    (Request("extract", "cpu", 4, "16G", 1),
     "extract array: no node of partition 'cpu' has 1 GPUs (--gpus-per-task), so its tasks would pend forever "
     "(its largest have 64 CPUs, 256000 MB, 0 GPUs); --gpus-per-task 0 extracts on CPUs"),
    (Request("extract", "gpu", 64, "100G", 9),
     "no node of partition 'gpu' has 64 CPUs (--extract-cpus-per-task) and 9 GPUs (--gpus-per-task)"),
    (Request("download", "gpux", 1, "1G", 0), "download array: partition 'gpux' (--partition) does not exist "
                                              "(partitions: cpu, debug, gpu)"),
])
def test_impossible_requests_are_refused_with_the_reason(request_, error):
    errors, warnings = check_request(NODES, request_)
    assert len(errors) == 1 and error in errors[0] and warnings == [], errors


def test_no_single_node_has_it_all():
    nodes = parse_sinfo("p*|wide|64|65536|(null)|idle\np*|fat|8|524288|(null)|idle\n")
    (error,), _ = check_request(nodes, Request("download", None, 32, "128G", 0))
    assert "no node of partition 'p' has 32 CPUs and 128G of memory and 0 GPUs on one node" in error


def test_requests_that_fit_or_must_wait():
    assert check_request(NODES, Request("download", None, 64, "250G", 0)) == ([], [])  # c02, default partition
    assert check_request(NODES, Request("extract", "gpu", 16, "64000", 4)) == ([], [])
    errors, warnings = check_request(NODES, Request("extract", "gpu", 32, "100G", 8))  # only g02, drained
    assert errors == [] and warnings == ["extract array: only nodes not available now can run its tasks "
                                         "(g02 drained): they wait for them"]


def test_each_stage_checked_with_its_own_options():
    slurm = SlurmOptions(partition="cpu", extract_partition="gpu", cpus_per_task=4, mem="4G", gpus_per_task=2,
                         extract_cpus_per_task=8, extract_mem="32G")
    assert slurm_requests(["download", "extract"], slurm) == [Request("download", "cpu", 4, "4G", 0),
                                                              Request("extract", "gpu", 8, "32G", 2)]
    printed = []
    check_cluster(["download", "extract"], slurm, printed.append, nodes=NODES)
    assert printed == []
    with pytest.raises(ConfigError, match="extract array: no node of partition 'cpu' has 2 GPUs"):
        check_cluster(["extract"], SlurmOptions(partition="cpu", gpus_per_task=2), printed.append, nodes=NODES)
    check_cluster(["download"], SlurmOptions(), printed.append, nodes=[])  # no node at all: nothing to say
