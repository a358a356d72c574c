"""Benchmark: peak memory and time of one ETL Python worker analysing a long track.

Source: one generated ``--minutes`` long (default 10) stereo 44.1 kHz track, five
sections of ``etl.synthetic`` genres, written as WAV and as MP3 (libsndfile's encoder,
as ``etl.sample_data``; skipped if this libsndfile cannot write MP3). Each file is
analysed three ways, each in a fresh Python process with one math thread (as the ETL's
Spark workers run): **before**, the whole-file path this replaced (decode the whole
file, then ``extract_signal``); **excerpt**, ``analyse_file`` with FMA's 30 s clip from
the middle (``--excerpt``, the ETL's default); **whole track**, ``analyse_file`` with
excerpt 0 (blocks of ``BLOCK_HOPS`` hops in two passes). Peak RSS is the child's
``VmHWM`` (``/proc/self/status``, read by the child as it ends). Both it and
``ru_maxrss`` also count the pages the child was forked with (measured: a child of a
700 MB parent reports 700 MB more), so the track is generated in a child too and the
parent stays small; its RSS at each spawn is recorded. Time is the child's own wall
time for the analysis (decode included; interpreter start, imports and loading numba's
kernels not). The "before" child also analyses the excerpt from its whole decode, so
the excerpt's samples and features are checked against a straight decode, and the
blocks against the whole signal. Destination: a table on stdout and
``bench/results/etl_memory.json``. Exits 1 if a peak is not below 1 GiB (or not above
the parent's RSS) or an agreement check fails.

    .venv/bin/python -m bench.etl_memory [--minutes 10] [--excerpt 30] [--formats wav,mp3]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, bounded, write_json

RESULTS = RESULTS_DIR / "etl_memory.json"
TARGET_RSS = 2**30
MODES = ("before", "excerpt", "whole track")
SUBTYPES = {"wav": "PCM_16", "mp3": "MPEG_LAYER_III"}


# --- the child: one analysis, its figures as JSON on stdout --------------------------------------


def child(mode: str, path: Path, excerpt_s: float) -> dict[str, Any]:
    """Analyse ``path`` the ``mode`` way in this process; what the parent compares."""
    import numpy as np

    from etl import audio, features

    features.warm_up()  # numba's kernels loaded, as in a Spark worker that analysed a track before
    started = time.perf_counter()
    if mode == "before":
        y, sr = audio.load_audio(path)
        vector = features.extract_signal(y, sr)
        elapsed = time.perf_counter() - started
        start, length = audio.excerpt_window(y.size, sr, excerpt_s)
        return {
            "elapsed_s": elapsed,
            "decoded": int(y.size),
            "features": vector.tolist(),
            # references for the other modes, from this straight decode (after the timing)
            "excerpt_samples_sha": _digest(y[start : start + length]),
            "excerpt_features": features.extract_signal(y[start : start + length], sr).tolist(),
        }
    analysis = features.analyse_file(path, excerpt_s if mode == "excerpt" else 0.0)
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "elapsed_s": elapsed,
        "decoded": analysis.decoded,
        "largest_piece": analysis.largest_piece,
        "offset_s": analysis.offset_s,
        "duration_s": analysis.duration_s,
        "track_s": analysis.track_s,
        "features": analysis.features.tolist(),
    }
    if mode == "excerpt":  # the samples analysed, read again the same way (not timed)
        start = round(analysis.offset_s * analysis.sample_rate)
        samples = audio.read_mono(path, start, round(analysis.duration_s * analysis.sample_rate))
        result["excerpt_samples_sha"] = _digest(np.asarray(samples))
    return result


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def vm_hwm() -> int:
    """Peak resident memory of this process, bytes."""
    return _status("VmHWM")


def vm_rss() -> int:
    """Resident memory of this process now, bytes."""
    return _status("VmRSS")


def _digest(samples: Any) -> str:
    import hashlib

    return hashlib.sha256(samples.tobytes()).hexdigest()[:16]


def spawn(*child_args: str) -> dict[str, Any]:
    """``python -m bench.etl_memory --child …`` in a fresh interpreter: its JSON, and this
    process's RSS when it started (the floor of the child's peak, see the docstring)."""
    from etl.spark_run import executor_env  # one math thread and numba's cache, as a Spark worker

    parent_rss = vm_rss()
    command = [sys.executable, "-m", "bench.etl_memory", "--child", *child_args]
    env = {**os.environ, **executor_env()}
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, env=env, text=True)
    return {**json.loads(done.stdout), "parent_rss": parent_rss}


# --- the parent ----------------------------------------------------------------------------------


def write_track(directory: Path, minutes: float, sr: int, formats: list[str], seed: int) -> dict[str, str]:
    """One stereo track of five genre sections, in each format, written section by section."""
    import numpy as np
    import soundfile as sf

    from etl.synthetic import render

    section_s = minutes * 60 / 5
    paths = {fmt: directory / f"track.{fmt}" for fmt in formats}
    files = [
        sf.SoundFile(p, "w", sr, 2, format=fmt.upper(), subtype=SUBTYPES[fmt]) for fmt, p in paths.items()
    ]
    try:
        for i, genre in enumerate((3, 0, 5, 1, 3)):
            mono = render(genre, section_s, sr, np.random.default_rng([seed, i]))
            delay = int(0.011 * sr)
            right = 0.85 * mono + 0.15 * np.concatenate([np.zeros(delay, np.float32), mono])[: mono.size]
            stereo = np.stack([mono, right.astype(np.float32)], axis=1)
            for f in files:
                f.write(stereo)
    finally:
        for f in files:
            f.close()
    return {fmt: str(path) for fmt, path in paths.items()}


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import numpy as np
    import soundfile as sf

    from etl import features

    formats = [f for f in args.formats.split(",") if f != "mp3" or "MP3" in sf.available_formats()]
    t0 = time.perf_counter()
    options = [
        "--minutes",
        str(args.minutes),
        "--sample-rate",
        str(args.sample_rate),
        "--seed",
        str(args.seed),
    ]
    written = spawn("generate", str(workdir), "--formats", ",".join(formats), *options)
    paths = {fmt: Path(written[fmt]) for fmt in formats}
    generated_s = time.perf_counter() - t0
    runs: dict[str, dict[str, Any]] = {}
    for fmt, path in paths.items():
        for mode in MODES:
            print(f"{fmt}: {mode} …", file=sys.stderr, flush=True)
            runs[f"{fmt}/{mode}"] = spawn(mode, str(path), "--excerpt", str(args.excerpt))
    checks: dict[str, Any] = {}
    for fmt in paths:
        before, excerpt, whole = (runs[f"{fmt}/{m}"] for m in MODES)
        ref, ref_excerpt = np.float32(before.pop("features")), np.float32(before.pop("excerpt_features"))
        tolerance = features.ATOL + features.RTOL * np.abs(ref)
        checks[fmt] = {
            "excerpt_samples_equal_straight_decode": excerpt["excerpt_samples_sha"]
            == before["excerpt_samples_sha"],
            "excerpt_features_equal": bool(np.array_equal(np.float32(excerpt.pop("features")), ref_excerpt)),
            "whole_track_worst_error_over_tolerance": float(
                np.max(np.abs(np.float32(whole.pop("features")) - ref) / tolerance)
            ),
        }
    peak_ok = all(
        r["parent_rss"] < r["peak_rss"] < TARGET_RSS for key, r in runs.items() if not key.endswith("before")
    )
    agree = all(
        c["excerpt_samples_equal_straight_decode"]
        and c["excerpt_features_equal"]
        and c["whole_track_worst_error_over_tolerance"] <= 1.0
        for c in checks.values()
    )
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.etl_memory " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "librosa": importlib.metadata.version("librosa"),
            "libsndfile": sf.__libsndfile_version__,
            "threads_per_process": 1,
        },
        "track": {
            "minutes": args.minutes,
            "sample_rate": args.sample_rate,
            "channels": 2,
            "formats": {fmt: path.stat().st_size for fmt, path in paths.items()},
            "generate_s": round(generated_s, 1),
        },
        "excerpt_s": args.excerpt,
        "block_hops": features.BLOCK_HOPS,
        "margin_s": features.MARGIN_S,
        "runs": runs,
        "checks": checks,
        "target_peak_rss": TARGET_RSS,
        "passed": peak_ok and agree,
    }


def report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    track = result["track"]
    table = Table(
        title=f"One ETL worker, one {track['minutes']:g}-minute stereo {track['sample_rate']} Hz track "
        f"(excerpt {result['excerpt_s']:g} s), 1 thread"
    )
    for column in ("file", "analysis", "peak RSS", "time", "audio decoded", "largest piece"):
        table.add_column(column, justify="right")
    sr = track["sample_rate"]
    for key, run in result["runs"].items():
        fmt, mode = key.split("/")
        piece = run.get("largest_piece", run["decoded"])
        table.add_row(
            fmt,
            mode,
            f"{run['peak_rss'] / 2**20:,.0f} MiB",
            f"{run['elapsed_s']:.1f} s",
            f"{run['decoded'] / sr:,.1f} s",
            f"{piece / sr:,.1f} s",
        )
    console = Console()
    console.print(table)
    for fmt, check in result["checks"].items():
        console.print(
            f"{fmt}: excerpt samples = straight decode's: {check['excerpt_samples_equal_straight_decode']}; "
            f"excerpt features = whole-decode path's: {check['excerpt_features_equal']}; "
            f"whole track in blocks vs whole signal: worst |diff| / (atol + rtol*|x|) = "
            f"{check['whole_track_worst_error_over_tolerance']:.3g} (<= 1 passes)"
        )
    console.print(
        f"target: peak RSS < {TARGET_RSS / 2**30:g} GiB for excerpt and whole track -> "
        f"{'PASS' if result['passed'] else 'FAIL'}; results in {RESULTS}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.etl_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=bounded(float, 0.5, 120), default=10.0)
    parser.add_argument("--excerpt", type=bounded(float, 0, 3600), default=30.0)
    parser.add_argument("--sample-rate", type=bounded(int, 8000, 192000), default=44100)
    parser.add_argument("--formats", default="wav,mp3", help="comma-separated: wav, mp3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child[0] == "generate":
        formats = args.formats.split(",")
        print(
            json.dumps(write_track(Path(args.child[1]), args.minutes, args.sample_rate, formats, args.seed))
        )
        return 0
    if args.child:
        result = child(args.child[0], Path(args.child[1]), args.excerpt)
        print(json.dumps({**result, "peak_rss": vm_hwm()}))
        return 0
    if not set(args.formats.split(",")) <= set(SUBTYPES):
        parser.error(f"--formats: choose from {', '.join(SUBTYPES)}")
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        result = measure(args, Path(tmp))
    write_json(RESULTS, result)
    report(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
