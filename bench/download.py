"""Benchmark: clips per second, bytes and CPU per clip for ClipFetcher against marl/audiosetdl's
``ffmpeg -ss START -t 10 -i URL``, both on a loopback MediaServer that behaves like YouTube's
media servers as far as this matters: 50 ms added to every request, and open-ended requests
(``Range: bytes=N-`` or none) throttled to 32 KiB/s.

Media (``--shape``): ``dash`` (default), a 300 s signal as DASH m4a (AAC, sidx) and DASH webm (Opus,
Cues), YouTube's itags 140 and 251; or ``hls``, the same signal as audio-only HLS (AAC-LC, 6 s
segments, ffmpeg's HLS muxer) in fMP4 and MPEG-TS segments, listed like YouTube's itag 234
(``m3u8_native``, the media playlist's URL); served under 20 IDs (half each). The baseline gets the
media URL (for HLS the playlist: ffmpeg's HLS demuxer fetches whole segments without a Range, open-ended
requests the server throttles). "bytes/clip over ideal" divides by the bytes of 10 s at the media's
average bitrate. Clips: seeded random 10 s segments, millisecond starts.
Both sides run in W worker processes (default 4), each worker holding one long-lived fetcher
(ours: a ClipFetcher with one YoutubeDL whose FakeYoutubeIE resolves the IDs to the server;
the baseline is handed the direct media URL, which flatters it: no extraction at all). The
clock starts once the workers are up and warm; CPU per clip is measured inside the worker around
each clip, its own time plus its ffmpeg children's (``RUSAGE_CHILDREN``); the server's CPU is
not counted. Bytes are what the server sent.

The baseline reads ~0.7 MB per clip at 32 KiB/s, about 20 s a clip, so it runs fewer clips by
default (`--baseline-clips 16`: 4 rounds of 4 workers, about 80 s); per-clip figures and rates
compare directly. Targets: ours >= 5x the baseline's clips/s (10x for HLS), <= 0.15 CPU-s per clip.

    .venv/bin/python bench/download.py [--shape dash|hls] [--clips 200] [--baseline-clips 16] [--workers 4]
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

from tests.media import HlsSpec, MediaLibrary, Shape, SignalSpec  # noqa: E402
from tests.mediaserver import MediaServer  # noqa: E402

CLIP_S = 10.0
SAMPLE_RATE = 16_000
LATENCY_S = 0.050
OPEN_ENDED_RATE = 32 * 1024
MEDIA_S = 300.0
IDS = 20
TARGET_SPEEDUP = {"dash": 5.0, "hls": 10.0}
TARGET_CPU_S = 0.15


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
    try:
        _worker["fetcher"].fetch(FakeYoutubeIE.watch_url(job.ytid), job.ytid, job.start, job.start + CLIP_S,
                                 Path(job.dest))
        ok, error = True, ""
    except ClipError as exc:
        ok, error = False, str(exc)
    return Outcome(ok, _cpu_now() - cpu, time.perf_counter() - wall, ok and _exact(job.dest), error)


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


def run_phase(name: str, server: MediaServer, catalog: dict, jobs: list[Job], workers: int) -> Phase:
    initializer, task = (_init_ours, _run_ours) if name == "ours" else (_init_baseline, _run_baseline)
    context = multiprocessing.get_context("spawn")  # the server's threads stay in this process
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer,
                             initargs=(catalog,)) as pool:
        assert len(set(pool.map(_ready, range(workers)))) == workers
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
                 errors=tuple(sorted({o.error for o in outcomes if o.error}))[:5])


def make_jobs(n: int, ids: list[str], out: Path, seed: int) -> list[Job]:
    rng = random.Random(seed)
    last_start_ms = int((MEDIA_S - CLIP_S - 1.0) * 1000)
    jobs = []
    for i in range(n):
        ytid = ids[i % len(ids)]
        start = rng.randrange(0, last_start_ms) / 1000
        jobs.append(Job(ytid, start, str(out / f"{ytid}_{i:04d}.flac")))
    return jobs


def build_catalog(shape: str, library: MediaLibrary, server: MediaServer) -> tuple[dict[str, tuple[dict, str]], float]:
    """ytid -> (the format FakeYoutubeIE lists, the URL the baseline reads); and the ideal bytes
    per clip (10 s at the media's average bitrate)."""
    from tests.ytdlp_test_extractor import audio_format, hls_audio_format

    signal = SignalSpec(duration_s=MEDIA_S)
    catalog: dict[str, tuple[dict, str]] = {}
    ideals = []
    if shape == "dash":
        media = library.shapes(signal, shapes=(Shape.DASH_M4A, Shape.DASH_WEBM))
        for i in range(IDS):
            m = media[(Shape.DASH_M4A, Shape.DASH_WEBM)[i % 2]]
            ytid = f"-bench{i:05d}"  # 11 characters, starting with '-' like 392 of AudioSet's eval IDs
            url = server.add(ytid, m.path, m.content_type)
            catalog[ytid] = (audio_format(url, m.ext, filesize=m.size_bytes), url)
            ideals.append(m.size_bytes / m.duration_s * CLIP_S)
        return catalog, sum(ideals) / len(ideals)
    renditions = [library.hls(HlsSpec(signal, segment_type=kind)) for kind in ("fmp4", "mpegts")]
    for i in range(IDS):
        h = renditions[i % 2]
        ytid = f"-bench{i:05d}"
        url = server.add_folder(ytid, h.folder) + h.playlist.name
        catalog[ytid] = (hls_audio_format(url), url)
        ideals.append(h.media_bytes / MEDIA_S * CLIP_S)
    return catalog, sum(ideals) / len(ideals)


def report(shape: str, workers: int, ours: Phase, base: Phase, ideal: float) -> bool:
    """Print the table and the verdicts; True when every target is met."""
    def row(label: str, a: float, b: float, fmt: str, ratio: float | None) -> str:
        r = f"{ratio:10.1f}x" if ratio is not None else ""
        return f"{label:<26}{format(a, fmt):>16}{format(b, fmt):>16}{r:>12}"

    media = "DASH m4a/webm" if shape == "dash" else "HLS AAC-LC, fMP4/MPEG-TS 6 s segments"
    print(f"\nMediaServer: +{LATENCY_S * 1000:.0f} ms per request, open-ended requests at "
          f"{OPEN_ENDED_RATE // 1024} KiB/s; {MEDIA_S:.0f} s {media}; {workers} workers each side\n")
    print(f"{'':<26}{'ClipFetcher':>16}{'ffmpeg -ss URL':>16}{'ratio':>12}")
    print(row("clips", ours.clips, base.clips, "d", None))
    print(row("ok / exact length", ours.ok, base.ok, "d", None) + f"   (exact: {ours.exact} / {base.exact})")
    print(row("wall s", ours.wall_s, base.wall_s, ".1f", None))
    print(row("clips/s", ours.clips_per_s, base.clips_per_s, ".3f", ours.clips_per_s / base.clips_per_s))
    print(row("median s per clip", ours.p50_clip_s, base.p50_clip_s, ".3f", base.p50_clip_s / ours.p50_clip_s))
    print(row("bytes/clip", ours.bytes_per_clip, base.bytes_per_clip, ",.0f",
              base.bytes_per_clip / ours.bytes_per_clip))
    print(row("bytes/clip over ideal", ours.bytes_per_clip / ideal, base.bytes_per_clip / ideal, ".2f", None)
          + f"   (ideal: {ideal:,.0f} B = 10 s at the average bitrate)")
    print(row("requests/clip", ours.requests_per_clip, base.requests_per_clip, ".2f", None))
    print(row("open-ended requests/clip", ours.open_ended_per_clip, base.open_ended_per_clip, ".2f", None))
    print(row("CPU s/clip (incl. ffmpeg)", ours.cpu_s_per_clip, base.cpu_s_per_clip, ".3f",
              base.cpu_s_per_clip / ours.cpu_s_per_clip))
    speedup, target = ours.clips_per_s / base.clips_per_s, TARGET_SPEEDUP[shape]
    verdicts = [f"clips/s {speedup:.1f}x (target >= {target:g}x): {'PASS' if speedup >= target else 'FAIL'}",
                f"CPU {ours.cpu_s_per_clip:.3f} s/clip (target <= {TARGET_CPU_S}): "
                f"{'PASS' if ours.cpu_s_per_clip <= TARGET_CPU_S else 'FAIL'}"]
    print("\n" + "\n".join(verdicts))
    for phase in (ours, base):
        for error in phase.errors:
            print(f"{phase.name} error: {error}")
    return speedup >= target and ours.cpu_s_per_clip <= TARGET_CPU_S and ours.ok == ours.clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(TARGET_SPEEDUP), default="dash",
                        help="the media: DASH m4a/webm (default) or HLS fMP4/MPEG-TS")
    parser.add_argument("--clips", type=int, default=200, help="clips for ClipFetcher (default 200)")
    parser.add_argument("--baseline-clips", type=int, default=16,
                        help="clips for the ffmpeg -ss baseline (default 16: ~20 s each at 32 KiB/s)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes on each side (default 4)")
    parser.add_argument("--media-cache", default=os.environ.get("AUDIOSETDL_TEST_MEDIA_CACHE")
                        or str(Path(tempfile.gettempdir()) / "audiosetdl-bench-media"))
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    library = MediaLibrary(Path(args.media_cache))
    with MediaServer(latency=LATENCY_S, open_ended_rate=OPEN_ENDED_RATE) as server, \
            tempfile.TemporaryDirectory(prefix="audiosetdl-bench-") as tmp:
        catalog, ideal = build_catalog(args.shape, library, server)
        ids = list(catalog)
        phases = []
        for name, n in (("ours", args.clips), ("baseline", args.baseline_clips)):
            out = Path(tmp) / name
            out.mkdir()
            print(f"{name}: {n} clips, {args.workers} workers ...", flush=True)
            phases.append(run_phase(name, server, catalog, make_jobs(n, ids, out, args.seed), args.workers))
    ours, base = phases
    passed = report(args.shape, args.workers, ours, base, ideal)
    if args.json:
        Path(args.json).write_text(json.dumps({p.name: asdict(p) for p in phases}, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
