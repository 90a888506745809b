"""Benchmark: clips per second, bytes, requests and CPU per clip for ClipFetcher against
marl/audiosetdl's ``ffmpeg -ss START -t 10 -i URL``, both on a loopback MediaServer that behaves
like YouTube's media servers as far as this matters: 50 ms added to every request, and
open-ended requests (``Range: bytes=N-`` or none) throttled to 32 KiB/s.

Shapes: a 300 s signal as DASH m4a (AAC, sidx) and DASH webm (Opus, Cues), YouTube's itags 140
and 251, each with 5-s and with 10-s fragments (YouTube's length is not known; 10 s is
plausible); and as audio-only HLS (AAC-LC, 6 s segments from ffmpeg's HLS muxer) in fMP4 and in
MPEG-TS segments, listed like YouTube's itag 234 (``m3u8_native``, the media playlist's URL; the
baseline reads the playlist: ffmpeg's HLS demuxer fetches whole segments without a Range). Each
shape is measured on its own, both sides in the same run, served under 20 IDs. Clips: seeded
random 10 s segments, millisecond starts.
Both sides run in W worker processes (default 4), each worker holding one long-lived fetcher
(ours: a ClipFetcher with one YoutubeDL whose FakeYoutubeIE resolves the IDs to the server;
the baseline is handed the direct media URL, which flatters it: no extraction at all). The
clock starts once the workers are up and warm; CPU per clip is measured inside the worker around
each clip, its own time plus its ffmpeg children's (``RUSAGE_CHILDREN``); the server's CPU is
not counted. Bytes are what the server sent; "ideal" is 10 s at the file's average bitrate, and
media bytes leave out the file's head before its first fragment (header and index), per clip
from the fetcher's own count (each byte is fetched once per clip).

The baseline reads 1.3-1.8x the ideal per clip in open-ended requests at 32 KiB/s, about 8 s a
clip, so it runs fewer clips by default (`--baseline-clips 8` per shape: 2 rounds of 4 workers);
per-clip figures and rates compare directly. Ours is CPU-bound: on a loaded machine its clips/s
falls and the ratio with it (the run prints the load and what an idle ffmpeg start costs).
Targets per shape: ours >= 10x the baseline's clips/s, <= 0.15 CPU-s per clip; DASH: media bytes
<= 1.5x the ideal (m4a) / 2.5x (webm) for every clip, <= 4 requests per clip.

    .venv/bin/python bench/download.py [--clips 200] [--baseline-clips 8] [--workers 4] [--shapes m4a-10s,...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media import HlsSpec, MediaLibrary, MediaSpec, Shape, SignalSpec, head_before_media  # noqa: E402
from tests.mediaserver import MediaServer  # noqa: E402

CLIP_S = 10.0
SAMPLE_RATE = 16_000
LATENCY_S = 0.050
OPEN_ENDED_RATE = 32 * 1024
MEDIA_S = 300.0
IDS = 20
SHAPES = {"m4a-5s": (Shape.DASH_M4A, 5.0), "webm-5s": (Shape.DASH_WEBM, 5.0),
          "m4a-10s": (Shape.DASH_M4A, 10.0), "webm-10s": (Shape.DASH_WEBM, 10.0),
          "hls-fmp4": ("fmp4", 6.0), "hls-ts": ("mpegts", 6.0)}  # HLS: (segment type, segment length)
TARGET_SPEEDUP = 10.0
TARGET_CPU_S = 0.15
TARGET_MEDIA_BYTES = {Shape.DASH_M4A: 1.5, Shape.DASH_WEBM: 2.5}  # x the ideal, every clip
TARGET_REQUESTS = 4  # per clip, the index probe included


@dataclass(frozen=True)
class Job:
    ytid: str
    start: float
    dest: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    cpu_s: float
    wall_s: float
    exact: bool  # 16 kHz mono, exactly round(10 * 16000) samples
    error: str = ""
    bytes: int = 0  # the fetcher's own count (ours only)
    requests: int = 0


# ----------------------------------------------------------------------------- workers --

_worker: dict = {}


def _init_ours(catalog: dict[str, tuple[dict, str]]) -> None:
    from audiosetdl.download.fetcher import ClipFetcher, FetchSettings
    from tests.ytdlp_test_extractor import FakeYoutubeIE, youtubedl_with_fake

    fake = FakeYoutubeIE()
    for ytid, (fmt, _) in catalog.items():
        fake.serve(ytid, [fmt], duration=MEDIA_S)
    ydl = youtubedl_with_fake(fake)
    ydl.extract_info(FakeYoutubeIE.watch_url(next(iter(catalog))), download=False)  # warm yt-dlp up
    _worker["fetcher"] = ClipFetcher(FetchSettings(), ydl)


def _init_baseline(catalog: dict[str, tuple[dict, str]]) -> None:
    _worker["urls"] = {ytid: url for ytid, (_, url) in catalog.items()}


def _cpu_now() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _exact(path: str) -> bool:
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception:  # noqa: BLE001
        return False
    return (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 1, round(CLIP_S * SAMPLE_RATE))


def _run_ours(job: Job) -> Outcome:
    from audiosetdl.download.errors import ClipError
    from tests.ytdlp_test_extractor import FakeYoutubeIE

    cpu, wall = _cpu_now(), time.perf_counter()
    nbytes = requests = 0
    try:
        result = _worker["fetcher"].fetch(FakeYoutubeIE.watch_url(job.ytid), job.ytid, job.start,
                                          job.start + CLIP_S, Path(job.dest))
        ok, error, nbytes, requests = True, "", result.bytes_fetched, result.requests
    except ClipError as exc:
        ok, error = False, str(exc)
    return Outcome(ok, _cpu_now() - cpu, time.perf_counter() - wall, ok and _exact(job.dest), error,
                   nbytes, requests)


def _run_baseline(job: Job) -> Outcome:
    """marl/audiosetdl's cut: ffmpeg seeks on the media URL itself; same output format as ours."""
    cpu, wall = _cpu_now(), time.perf_counter()
    done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                           "-ss", f"{job.start:.3f}", "-t", f"{CLIP_S:.3f}", "-i", _worker["urls"][job.ytid],
                           "-vn", "-ac", "1", "-af", f"aresample={SAMPLE_RATE}:resampler=soxr",
                           "-sample_fmt", "s16", "-c:a", "flac", job.dest], capture_output=True, check=False)
    ok = done.returncode == 0
    return Outcome(ok, _cpu_now() - cpu, time.perf_counter() - wall, ok and _exact(job.dest),
                   done.stderr.decode(errors="replace")[-300:] if not ok else "")


def _ready(_: int) -> int:
    time.sleep(0.5)  # long enough that every worker takes one: all of them are up and initialised
    return os.getpid()


# ------------------------------------------------------------------------------- phases --


@dataclass(frozen=True)
class Phase:
    name: str
    clips: int
    ok: int
    exact: int
    wall_s: float
    clips_per_s: float
    bytes_per_clip: float
    requests_per_clip: float
    open_ended_per_clip: float
    cpu_s_per_clip: float
    p50_clip_s: float
    errors: tuple[str, ...]
    max_requests: int = 0  # of one clip (ours only: the fetcher's count)
    max_media_bytes: int = 0  # of one clip, the file's head before its first fragment left out (ours only)


def run_phase(name: str, server: MediaServer, catalog: dict, jobs: list[Job], workers: int, head: int) -> Phase:
    initializer, task = (_init_ours, _run_ours) if name == "ours" else (_init_baseline, _run_baseline)
    context = multiprocessing.get_context("spawn")  # the server's threads stay in this process
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer,
                             initargs=(catalog,)) as pool:
        for _ in range(60):  # until every worker is up (a loaded machine starts them slowly)
            if len(set(pool.map(_ready, range(workers)))) == workers:
                break
        else:
            raise RuntimeError(f"{workers} workers did not all start")
        server.wait_idle(5.0)
        server.reset_counters()
        began = time.perf_counter()
        outcomes = list(pool.map(task, jobs))
        wall = time.perf_counter() - began
    records = server.requests(settle_s=5.0)
    n = len(jobs)
    return Phase(name=name, clips=n, ok=sum(o.ok for o in outcomes), exact=sum(o.exact for o in outcomes),
                 wall_s=wall, clips_per_s=n / wall, bytes_per_clip=sum(r.bytes_sent for r in records) / n,
                 requests_per_clip=len(records) / n,
                 open_ended_per_clip=sum(r.is_open_ended for r in records) / n,
                 cpu_s_per_clip=sum(o.cpu_s for o in outcomes) / n,
                 p50_clip_s=sorted(o.wall_s for o in outcomes)[n // 2],
                 errors=tuple(sorted({o.error for o in outcomes if o.error}))[:5],
                 max_requests=max(o.requests for o in outcomes),
                 max_media_bytes=max((o.bytes - head for o in outcomes if o.ok), default=0))


def make_jobs(n: int, ids: list[str], out: Path, seed: int) -> list[Job]:
    rng = random.Random(seed)
    last_start_ms = int((MEDIA_S - CLIP_S - 1.0) * 1000)
    jobs = []
    for i in range(n):
        ytid = ids[i % len(ids)]
        start = rng.randrange(0, last_start_ms) / 1000
        jobs.append(Job(ytid, start, str(out / f"{ytid}_{i:04d}.flac")))
    return jobs


@dataclass(frozen=True)
class ShapeResult:
    shape: str
    ideal_bytes: int  # 10 s at the file's average bitrate
    head_bytes: int  # header and index: the file's bytes before its first fragment
    ours: Phase
    baseline: Phase

    @property
    def speedup(self) -> float:
        return self.ours.clips_per_s / self.baseline.clips_per_s

    def verdicts(self) -> list[tuple[str, bool]]:
        container = SHAPES[self.shape][0]
        media_x = self.ours.max_media_bytes / self.ideal_bytes
        verdicts = [(f"clips/s {self.speedup:.1f}x (>= {TARGET_SPEEDUP:g}x)", self.speedup >= TARGET_SPEEDUP),
                    (f"CPU {self.ours.cpu_s_per_clip:.3f} s/clip (<= {TARGET_CPU_S})",
                     self.ours.cpu_s_per_clip <= TARGET_CPU_S),
                    (f"ok {self.ours.ok}/{self.ours.clips}, exact length {self.ours.exact} (baseline: "
                     f"{self.baseline.ok}, {self.baseline.exact})", self.ours.exact == self.ours.clips)]
        if container in TARGET_MEDIA_BYTES:  # DASH: the partial-fragment bounds
            verdicts += [(f"media bytes max {media_x:.2f}x ideal (<= {TARGET_MEDIA_BYTES[container]}x)",
                          media_x <= TARGET_MEDIA_BYTES[container]),
                         (f"requests max {self.ours.max_requests} per clip (<= {TARGET_REQUESTS})",
                          self.ours.max_requests <= TARGET_REQUESTS)]
        return verdicts


def serve_shape(label: str, library: MediaLibrary, server: MediaServer) -> tuple[dict[str, tuple[dict, str]], int, int]:
    """ytid -> (the format FakeYoutubeIE lists, the URL the baseline reads); the ideal bytes per
    clip (10 s at the average bitrate); the header and index bytes before the first fragment."""
    from tests.ytdlp_test_extractor import audio_format, hls_audio_format

    kind, fragment_s = SHAPES[label]
    signal = SignalSpec(duration_s=MEDIA_S)
    ids = [f"-bench{i:05d}" for i in range(IDS)]  # 11 characters, starting with '-' like 392 of AudioSet's eval IDs
    if label.startswith("hls"):
        hls = library.hls(HlsSpec(signal, segment_type=kind))
        urls = {ytid: server.add_folder(ytid, hls.folder) + hls.playlist.name for ytid in ids}
        return ({ytid: (hls_audio_format(url), url) for ytid, url in urls.items()},
                round(hls.media_bytes / MEDIA_S * CLIP_S), 0)
    media = library.get(MediaSpec(signal=signal, shape=kind, fragment_s=fragment_s))
    urls = {ytid: server.add(ytid, media.path, media.content_type) for ytid in ids}
    return ({ytid: (audio_format(url, media.ext, filesize=media.size_bytes), url) for ytid, url in urls.items()},
            media.bytes_for_seconds(CLIP_S), head_before_media(media.path))


def bench_shape(label: str, library: MediaLibrary, args: argparse.Namespace, tmp: Path) -> ShapeResult:
    with MediaServer(latency=LATENCY_S, open_ended_rate=OPEN_ENDED_RATE) as server:
        catalog, ideal, head = serve_shape(label, library, server)
        phases = []
        for name, n in (("ours", args.clips), ("baseline", args.baseline_clips)):
            out = tmp / label / name
            out.mkdir(parents=True)
            print(f"{label} {name}: {n} clips, {args.workers} workers ...", flush=True)
            phases.append(run_phase(name, server, catalog, make_jobs(n, list(catalog), out, args.seed),
                                    args.workers, head))
    return ShapeResult(label, ideal, head, *phases)


def report(result: ShapeResult) -> None:
    ours, base = result.ours, result.baseline
    print(f"\n{result.shape}: {ours.clips} / {base.clips} clips, ideal {result.ideal_bytes:,} bytes per clip, "
          f"header + index {result.head_bytes:,}")
    print(f"{'':<26}{'ClipFetcher':>16}{'ffmpeg -ss URL':>16}{'ratio':>12}")
    for label, a, b, fmt, ratio in [
            ("clips/s", ours.clips_per_s, base.clips_per_s, ".3f", result.speedup),
            ("median s per clip", ours.p50_clip_s, base.p50_clip_s, ".3f", base.p50_clip_s / ours.p50_clip_s),
            ("bytes/clip", ours.bytes_per_clip, base.bytes_per_clip, ",.0f", base.bytes_per_clip / ours.bytes_per_clip),
            ("bytes/clip / ideal", ours.bytes_per_clip / result.ideal_bytes, base.bytes_per_clip / result.ideal_bytes,
             ".2f", None),
            ("requests/clip", ours.requests_per_clip, base.requests_per_clip, ".2f", None),
            ("open-ended requests/clip", ours.open_ended_per_clip, base.open_ended_per_clip, ".2f", None),
            ("CPU s/clip (incl. ffmpeg)", ours.cpu_s_per_clip, base.cpu_s_per_clip, ".3f",
             base.cpu_s_per_clip / ours.cpu_s_per_clip)]:
        print(f"{label:<26}{format(a, fmt):>16}{format(b, fmt):>16}" + (f"{ratio:11.1f}x" if ratio else ""))
    for verdict, passed in result.verdicts():
        print(f"  {'PASS' if passed else 'FAIL'}  {verdict}")
    for phase in (ours, base):
        for error in phase.errors:
            print(f"  {phase.name} error: {error}")


def bare_ffmpeg_cpu_s(runs: int = 5) -> float:
    """CPU seconds of an ffmpeg that decodes nothing: the floor under each clip's one decode, on this
    machine now (a loaded machine raises it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc", "-t", "0.01",
                        "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200, help="clips for ClipFetcher per shape (default 200)")
    parser.add_argument("--baseline-clips", type=int, default=8,
                        help="clips for the ffmpeg -ss baseline per shape (default 8: ~8 s each at 32 KiB/s)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes on each side (default 4)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--media-cache", default=os.environ.get("AUDIOSETDL_TEST_MEDIA_CACHE")
                        or str(Path(tempfile.gettempdir()) / "audiosetdl-bench-media"))
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    labels = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if unknown := [s for s in labels if s not in SHAPES]:
        parser.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")

    library = MediaLibrary(Path(args.media_cache))
    with tempfile.TemporaryDirectory(prefix="audiosetdl-bench-") as tmp:
        results = [bench_shape(label, library, args, Path(tmp)) for label in labels]
    print(f"\nMediaServer: +{LATENCY_S * 1000:.0f} ms per request, open-ended requests at "
          f"{OPEN_ENDED_RATE // 1024} KiB/s; {MEDIA_S:.0f} s files; {args.workers} workers each side; "
          f"an ffmpeg that decodes nothing takes {bare_ffmpeg_cpu_s():.3f} CPU-s here now; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for result in results:
        report(result)
    print(f"\n{'shape':<10}{'bytes/ideal':>12}{'media max':>11}{'req/clip':>10}{'req max':>9}{'x ffmpeg':>10}"
          f"{'CPU s/clip':>12}")
    for r in results:
        print(f"{r.shape:<10}{r.ours.bytes_per_clip / r.ideal_bytes:>12.2f}"
              f"{r.ours.max_media_bytes / r.ideal_bytes:>11.2f}{r.ours.requests_per_clip:>10.2f}"
              f"{r.ours.max_requests:>9d}{r.speedup:>10.1f}{r.ours.cpu_s_per_clip:>12.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({r.shape: {"ideal_bytes": r.ideal_bytes, "head_bytes": r.head_bytes,
                                                         "ours": asdict(r.ours), "baseline": asdict(r.baseline)}
                                               for r in results}, indent=2) + "\n")
    return 0 if all(passed for r in results for _, passed in r.verdicts()) else 1


if __name__ == "__main__":
    sys.exit(main())
