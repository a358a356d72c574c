"""Benchmark: clips per second per core of ``etl.features.extract_file`` vs the naive baseline.

Source: ``--clips`` sample tracks written by ``etl.sample_data`` into a temporary FMA
layout (default 50 clips of 30 s, 44.1 kHz stereo MP3, like fma_small). Both
extractors run in this one process with every math library pinned to one thread, on
the same files, alternating clip by clip; the baseline decodes the same way and then
calls ``extract_naive`` (one librosa call per feature). Destination: a table on stdout
and ``bench/results/etl_extract.json``. Exits 1 if the two disagree beyond the test
tolerance or a target (>= 2x baseline, >= 2.5 clips/s/core) is missed.

    .venv/bin/python -m bench.etl_extract [--clips 50] [--seconds 30]
"""

from __future__ import annotations

import importlib.metadata
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy is imported

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import RESULTS_DIR, write_json  # noqa: E402
from etl import features  # noqa: E402
from etl.audio import load_audio  # noqa: E402
from etl.fma import audio_relpath  # noqa: E402
from etl.sample_data import write_sample_catalogue  # noqa: E402

RESULTS = RESULTS_DIR / "etl_extract.json"
TARGET_SPEEDUP = 2.0
TARGET_CLIPS_PER_S = 2.5


def naive_file(path: Path) -> np.ndarray:
    y, sr = load_audio(path)
    return features.extract_naive(y, sr)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    started = time.perf_counter()
    summary = write_sample_catalogue(
        workdir,
        tracks=args.clips,
        genres=8,
        seed=args.seed,
        duration_s=args.seconds,
        sample_rate=args.sample_rate,
        channels=args.channels,
        broken=0,
        workers=os.cpu_count() or 1,
    )
    generated_s = time.perf_counter() - started
    paths = [workdir / audio_relpath(t, "fma_small") for t in summary.track_ids]

    warm = time.perf_counter()
    features.extract_file(paths[0])  # numba kernels load (or compile) once; not timed
    naive_file(paths[0])
    warmup_s = time.perf_counter() - warm

    fast_s = naive_s = 0.0
    worst, disagreeing = 0.0, 0
    for path in paths:  # alternate so drift affects both alike
        t0 = time.perf_counter()
        fast = features.extract_file(path)
        t1 = time.perf_counter()
        naive = naive_file(path)
        t2 = time.perf_counter()
        fast_s, naive_s = fast_s + t1 - t0, naive_s + t2 - t1
        ratio = float(np.max(np.abs(fast - naive) / (features.ATOL + features.RTOL * np.abs(naive))))
        worst = max(worst, ratio)
        disagreeing += ratio > 1.0
    n = len(paths)
    fast_rate, naive_rate = n / fast_s, n / naive_s
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.etl_extract " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "librosa": importlib.metadata.version("librosa"),
            "threads_per_process": 1,
        },
        "clips": n,
        "clip_seconds": args.seconds,
        "sample_rate": args.sample_rate,
        "channels": args.channels,
        "format": summary.audio_format,
        "generate_s": round(generated_s, 2),
        "warmup_s": round(warmup_s, 2),
        "extract_file": {"total_s": round(fast_s, 3), "clips_per_s_per_core": round(fast_rate, 3)},
        "naive": {"total_s": round(naive_s, 3), "clips_per_s_per_core": round(naive_rate, 3)},
        "speedup": round(fast_rate / naive_rate, 3),
        "agreement": {
            "rtol": features.RTOL,
            "atol": features.ATOL,
            "worst_error_over_tolerance": worst,
            "clips_disagreeing": disagreeing,
        },
        "targets": {"speedup": TARGET_SPEEDUP, "clips_per_s_per_core": TARGET_CLIPS_PER_S},
        "passed": disagreeing == 0
        and fast_rate / naive_rate >= TARGET_SPEEDUP
        and fast_rate >= TARGET_CLIPS_PER_S,
    }


def report(result: dict[str, object]) -> None:
    fast, naive = result["extract_file"], result["naive"]
    assert isinstance(fast, dict) and isinstance(naive, dict)
    table = Table(
        title=f"ETL feature extraction: {result['clips']} x {result['clip_seconds']} s clips, "
        f"{result['sample_rate']} Hz, {result['channels']} ch {result['format']}, 1 thread"
    )
    for column in ("extractor", "total s", "s / clip", "clips/s/core", "vs naive"):
        table.add_column(column, justify="right")
    n = int(str(result["clips"]))
    for name, row in (("extract_file", fast), ("naive baseline", naive)):
        rate = float(row["clips_per_s_per_core"])
        table.add_row(
            name,
            f"{row['total_s']:.2f}",
            f"{row['total_s'] / n:.3f}",
            f"{rate:.2f}",
            f"{rate / float(naive['clips_per_s_per_core']):.2f}x",
        )
    console = Console()
    console.print(table)
    agreement = result["agreement"]
    assert isinstance(agreement, dict)
    worst = agreement["worst_error_over_tolerance"]
    console.print(
        f"agreement: worst |fast - naive| / (atol + rtol*|naive|) = {worst:.3g} (<= 1 passes), "
        f"clips disagreeing: {agreement['clips_disagreeing']}"
    )
    console.print(
        f"targets: >= {TARGET_SPEEDUP}x baseline and >= {TARGET_CLIPS_PER_S} clips/s/core -> "
        f"{'PASS' if result['passed'] else 'FAIL'}; results in {RESULTS}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.etl_extract", description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        result = run(args, Path(tmp))
    write_json(RESULTS, result)
    report(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
