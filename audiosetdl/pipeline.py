"""The batched inference pipeline shared by `extract`, `embed` and `label`.

`run_batched(sources, inputs, model, ...)` takes any sources (clips, files), a function
`inputs(source)` that yields a source's model inputs chunk by chunk (run in `threads` decoding
threads, so decoding and feature computation overlap inference), and `model(batch)` that
turns a batch of inputs into one row per input. Batches are assembled across sources and are
always full (`batch_size`) except the last; each source is yielded as `Done(source, rows,
error)` once all its rows are back, in completion order. A source whose `inputs` raises is
yielded at once with the error and no rows; the others go on.

At most `prefetch` decoded chunks wait for the model, so memory stays bounded whatever the
length of a file.

While a run is under way, numpy's BLAS (OpenBLAS) is held to one thread: the decoding threads
are the parallelism, and OpenBLAS's own threads spin after each small matrix product (the
mel filter bank, the PCA) on the cores TensorFlow is computing on. Measured on 2 cores under
inference load: the log-mel of a 10-s clip 22 ms -> 1 ms, a FLAC read 69 ms -> 19 ms.

The decoding threads (and the ffmpeg processes they start) run `DECODE_NICENESS` steps nicer
than the process, on Linux: where cores are short, the model's threads, which split each
operation into equal parts, are preempted less, and the decoders still get every cycle the
model leaves (its threads wait between batches). Where cores are plenty it changes nothing.
Measured on 2 cores, `embed` of 44.1 kHz stereo FLAC against bare inference: 0 -> 10 steps,
median of six paired rounds 0.865 -> 0.903 (then); 10 -> 19, the most, four rounds 0.878 -> 0.891.
With one decoding thread instead of two it drops to 0.825: the decoders mostly run while the model
waits, and then both cores are needed.
"""

from __future__ import annotations

import collections
import functools
import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import threadpoolctl

PREFETCH_CHUNKS = 64  # decoded chunks waiting for the model, at most
DECODE_NICENESS = 19  # the decoding threads' niceness above the process's (see the module docstring)
_PUT_WAIT_S = 0.1  # how often a blocked decoding thread checks whether the run was abandoned


@dataclass
class Done:
    source: Any
    rows: np.ndarray | None  # the model's outputs for the source's inputs, in order (None when it failed)
    error: Exception | None = None


class _Abandoned(Exception):
    pass


def _decoder(sources: list, inputs: Callable, out: queue.Queue, stop: threading.Event, next_index: list,
             lock: threading.Lock) -> None:
    """One decoding thread: takes the next source, sends its chunks, then ("end", i) or ("error", i, exc)."""
    _be_nicer(DECODE_NICENESS)

    def put(message) -> None:
        while not stop.is_set():
            try:
                out.put(message, timeout=_PUT_WAIT_S)
                return
            except queue.Full:
                continue
        raise _Abandoned

    try:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= len(sources):
                return
            try:
                for chunk in inputs(sources[index]):
                    if len(chunk):
                        put(("chunk", index, chunk))
            except _Abandoned:
                raise
            except Exception as exc:  # noqa: BLE001 (a bad file is reported, never stops the run)
                put(("error", index, exc))
                continue
            put(("end", index, None))
    except _Abandoned:
        return


@functools.lru_cache(maxsize=1)
def _blas_controller() -> threadpoolctl.ThreadpoolController:
    """The process's thread pools, found once: finding them reads every loaded library (TensorFlow's
    hundreds), 10-40 ms per run, which a local run would pay for each task."""
    return threadpoolctl.ThreadpoolController()


def _be_nicer(steps: int) -> None:
    """Lower the calling thread's priority by `steps` nice levels (Linux: each thread has its own)."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + steps))
    except OSError:  # not permitted here: keep the priority
        pass


class _Router:
    """Concatenates chunks into full batches and routes each batch's rows back to their sources."""

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], batch_size: int):
        self.model, self.batch_size = model, max(1, batch_size)
        self.buffered: list[np.ndarray] = []
        self.owners: collections.deque = collections.deque()  # [source index, inputs not embedded yet]
        self.count = 0
        self.parts: dict[int, list[np.ndarray]] = collections.defaultdict(list)
        self.pending: collections.Counter = collections.Counter()  # source index -> inputs not embedded yet

    def add(self, index: int, chunk: np.ndarray) -> None:
        self.buffered.append(chunk)
        self.owners.append([index, len(chunk)])
        self.pending[index] += len(chunk)
        self.count += len(chunk)
        while self.count >= self.batch_size:
            batch = np.concatenate(self.buffered) if len(self.buffered) > 1 else self.buffered[0]
            self._run(batch[: self.batch_size])
            rest = batch[self.batch_size:]
            self.buffered = [rest] if len(rest) else []
            self.count = len(rest)

    def flush(self) -> None:
        if self.count:
            self._run(np.concatenate(self.buffered))
            self.buffered, self.count = [], 0

    def _run(self, batch: np.ndarray) -> None:
        rows = self.model(batch)
        offset = 0
        while offset < len(rows):
            entry = self.owners[0]
            take = min(entry[1], len(rows) - offset)
            self.parts[entry[0]].append(rows[offset: offset + take])
            offset += take
            entry[1] -= take
            self.pending[entry[0]] -= take
            if entry[1] == 0:
                self.owners.popleft()

    def take(self, index: int, width: int, dtype) -> np.ndarray:
        pieces = self.parts.pop(index, [])
        self.pending.pop(index, None)
        return np.concatenate(pieces) if pieces else np.zeros((0, width), dtype)


def run_batched(sources: Iterable, inputs: Callable[[Any], Iterable[np.ndarray]],
                model: Callable[[np.ndarray], np.ndarray], *, batch_size: int, threads: int, width: int,
                dtype=np.float32, prefetch: int = PREFETCH_CHUNKS) -> Iterator[Done]:
    """Yield `Done` for every source, as soon as all its rows are back (see the module docstring)."""
    sources = list(sources)
    if not sources:
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield from _run(sources, inputs, model, batch_size, threads, width, dtype, prefetch)


def _run(sources: list, inputs: Callable, model: Callable, batch_size: int, threads: int, width: int, dtype,
         prefetch: int) -> Iterator[Done]:
    out: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop, lock, next_index = threading.Event(), threading.Lock(), [0]
    workers = [threading.Thread(target=_decoder, args=(sources, inputs, out, stop, next_index, lock), daemon=True)
               for _ in range(max(1, min(threads, len(sources))))]
    for worker in workers:
        worker.start()
    router = _Router(model, batch_size)
    ended: list[int] = []  # sources whose inputs are all sent, waiting for their rows
    failed: set[int] = set()
    remaining = len(sources)
    try:
        while remaining:
            kind, index, payload = out.get()
            if kind == "chunk":
                router.add(index, payload)
            else:
                remaining -= 1
                if kind == "error":
                    failed.add(index)
                    yield Done(sources[index], None, payload)
                else:
                    ended.append(index)
            if not remaining:
                router.flush()
            still = []
            for index in ended:
                if router.pending[index] > 0:
                    still.append(index)
                elif index in failed:
                    router.take(index, width, dtype)
                else:
                    yield Done(sources[index], router.take(index, width, dtype))
            ended = still
            for index in list(failed):  # a failed source's rows already embedded are dropped
                if router.pending[index] <= 0:
                    router.take(index, width, dtype)
                    failed.discard(index)
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def stream_inputs(chunks: Iterable[np.ndarray], adapter) -> Iterator[np.ndarray]:
    """A file's model inputs from its samples in chunks of any size, exactly as if framed whole.

    Input i of a file covers samples [i * hop, i * hop + window) (`adapter.hop_samples`,
    `adapter.window_samples`), and every front end step is local to its frame, so the inputs of
    the whole windows in hand are computed, the samples before the next window dropped, and the
    file's end handed to `adapter.tail_features` (YAMNet pads it as its reference pads a clip).
    """
    hop, window = adapter.hop_samples, adapter.window_samples
    held = np.zeros(0, np.float32)
    consumed = total = 0
    for chunk in chunks:
        held = np.concatenate([held, chunk]) if len(held) else np.asarray(chunk, np.float32)
        total += len(chunk)
        whole = 0 if len(held) < window else 1 + (len(held) - window) // hop
        if whole:
            yield adapter.window_features(held[: (whole - 1) * hop + window])
            held = held[whole * hop:]
            consumed += whole * hop
    yield adapter.tail_features(held, consumed, total)
