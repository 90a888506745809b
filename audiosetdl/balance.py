"""Balancing keys over tasks: each key's segment count into `n_tasks` bins, the largest bin small.

The planner's keys cannot be split (a key is one output file with one writer), so this is
multiway number partitioning. Keys are assigned largest first to the least-loaded task (LPT),
then refined by moving keys off the heaviest task; the largest task ends within
`mean + largest key`, and within 1.1 x mean whenever every key is under a tenth of the mean.
`lower_bound` says how close to the mean any assignment could get.
"""

from __future__ import annotations

import bisect
import heapq

import numpy as np

BALANCE_TARGET = 1.1  # largest task <= 1.1 x mean whenever the keys allow it


def assign_keys(counts: dict[tuple[str, str], int], n_tasks: int) -> list[list[tuple[str, str]]]:
    """Partition keys into `n_tasks` bins balancing the summed counts (deterministic).

    Three constructions, the best one kept and polished by local search:
    - largest key first onto the lightest task: guarantees largest task <= mean + largest key;
    - Karmarkar-Karp's largest differencing method (k-way): excellent when tasks hold many keys;
    - a cardinality split: when tasks hold only a few keys each (the unbalanced list's 4,096
      prefixes into 1,000 tasks), some tasks must take one key more than others, and the best
      plans give those tasks the smallest keys; greedy methods do not find that.
    Bins come back heaviest first (task 0 starts the longest work), keys sorted inside each.
    """
    keys = sorted(counts)
    sizes = np.array([counts[k] for k in keys], dtype=np.int64)
    candidates = [_largest_first(sizes, n_tasks), _karmarkar_karp(sizes, n_tasks), _cardinality_split(sizes, n_tasks)]
    best = None
    for bin_of in candidates:
        loads = np.bincount(bin_of, weights=sizes, minlength=n_tasks).astype(np.int64)
        if best is None or loads.max() < best[1].max():
            best = (bin_of, loads)
    bin_of, loads = best
    _local_search(bin_of, loads, sizes)
    members: list[list[tuple[str, str]]] = [[] for _ in range(n_tasks)]
    for k, b in enumerate(bin_of.tolist()):
        members[b].append(keys[k])
    order = sorted(range(n_tasks), key=lambda b: (-loads[b], members[b][:1]))
    return [members[b] for b in order]


def lower_bound(sizes: list[int], n_tasks: int) -> int:
    """A size no assignment of these keys to `n_tasks` tasks can get its largest task under:
    the mean, the largest key, and the sum of the q smallest keys, where q = ceil(keys / tasks)
    is the fewest keys the fullest task can hold."""
    ordered = sorted(sizes)
    per_task = -(-len(ordered) // n_tasks)
    return max(-(-sum(ordered) // n_tasks), ordered[-1], sum(ordered[:per_task]))


def _largest_first(sizes: np.ndarray, n_tasks: int) -> np.ndarray:
    """Bin of each key, greedy: largest key to the lightest bin. Guarantees max <= mean + largest key."""
    bin_of = np.empty(len(sizes), dtype=np.int64)
    heap = [(0, b) for b in range(n_tasks)]
    for k in np.argsort(-sizes, kind="stable").tolist():
        load, b = heapq.heappop(heap)
        bin_of[k] = b
        heapq.heappush(heap, (load + int(sizes[k]), b))
    return bin_of


def _karmarkar_karp(sizes: np.ndarray, n_tasks: int) -> np.ndarray:
    """Bin of each key. Each key starts as a partial partition of its own; the two partials
    with the largest spread are merged, the heaviest bin of one joining the lightest of the other."""
    arange = np.arange(n_tasks)
    partials: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # loads, key indices, bins
    heap: list[tuple[int, int]] = []
    for i, size in enumerate(sizes.tolist()):
        loads = np.zeros(n_tasks, dtype=np.int64)
        loads[0] = size
        partials[i] = (loads, np.array([i]), np.array([0]))
        heap.append((-size, i))
    heapq.heapify(heap)
    next_id = len(sizes)
    while len(heap) > 1:
        loads_a, keys_a, bins_a = partials.pop(heapq.heappop(heap)[1])
        loads_b, keys_b, bins_b = partials.pop(heapq.heappop(heap)[1])
        order_a = np.argsort(-loads_a, kind="stable")
        order_b = np.argsort(loads_b, kind="stable")
        rank_a = np.empty(n_tasks, dtype=np.int64)
        rank_a[order_a] = arange
        rank_b = np.empty(n_tasks, dtype=np.int64)
        rank_b[order_b] = arange
        loads = loads_a[order_a] + loads_b[order_b]
        partials[next_id] = (loads, np.concatenate([keys_a, keys_b]), np.concatenate([rank_a[bins_a], rank_b[bins_b]]))
        heapq.heappush(heap, (-int(loads.max() - loads.min()), next_id))
        next_id += 1
    _, key_idx, bins = partials.popitem()[1]
    bin_of = np.empty(len(sizes), dtype=np.int64)
    bin_of[key_idx] = bins
    return bin_of


def _cardinality_split(sizes: np.ndarray, n_tasks: int) -> np.ndarray:
    """Bin of each key: with q = ceil(keys / tasks), the r tasks that must hold q keys get the
    r*q smallest keys, the others q-1 keys each; largest-first greedy inside each group."""
    n = len(sizes)
    per_task = -(-n // n_tasks)
    full = n - (per_task - 1) * n_tasks  # tasks holding per_task keys; the rest hold one fewer
    order = np.argsort(sizes, kind="stable")
    bin_of = np.empty(n, dtype=np.int64)
    groups = [(order[: full * per_task], range(full)), (order[full * per_task:], range(full, n_tasks))]
    for members, bins in groups:
        if len(bins) == 0:
            continue
        heap = [(0, b) for b in bins]
        for k in members[::-1].tolist():  # largest first
            load, b = heapq.heappop(heap)
            bin_of[k] = b
            heapq.heappush(heap, (load + int(sizes[k]), b))
    return bin_of


def _local_search(bin_of: np.ndarray, loads: np.ndarray, sizes: np.ndarray, partners: int = 8) -> None:
    """Lower the heaviest bin by moving one of its keys to, or swapping one with, a light bin,
    until no such step helps (bounded to a few rounds per bin)."""
    n_tasks = len(loads)
    members: list[list[tuple[int, int]]] = [[] for _ in range(n_tasks)]  # sorted (size, key) per bin
    for k, b in enumerate(bin_of.tolist()):
        members[b].append((int(sizes[k]), k))
    for m in members:
        m.sort()
    for _ in range(4 * n_tasks):
        heavy = int(np.argmax(loads))
        best = None  # (new max of the pair, delta, key out, key in or None, light)
        for light in np.argsort(loads, kind="stable")[:partners].tolist():
            gap = int(loads[heavy] - loads[light])
            if gap <= 1:
                break
            light_sizes = [size for size, _ in members[light]]
            for size, key in members[heavy]:
                # moving `size` alone, or swapping it for a light key of size near size - gap/2
                options = [(size, None)]
                j = bisect.bisect_left(light_sizes, size - gap / 2)
                for idx in (j - 1, j):
                    if 0 <= idx < len(light_sizes):
                        options.append((size - light_sizes[idx], members[light][idx][1]))
                for delta, other in options:
                    if 0 < delta < gap:
                        pair_max = max(int(loads[heavy]) - delta, int(loads[light]) + delta)
                        if best is None or pair_max < best[0]:
                            best = (pair_max, delta, key, other, light)
        if best is None:
            return
        _, delta, key, other, light = best
        members[heavy].remove((int(sizes[key]), key))
        bisect.insort(members[light], (int(sizes[key]), key))
        bin_of[key] = light
        if other is not None:
            members[light].remove((int(sizes[other]), other))
            bisect.insort(members[heavy], (int(sizes[other]), other))
            bin_of[other] = heavy
        loads[heavy] -= delta
        loads[light] += delta
