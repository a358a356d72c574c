"""Benchmark of the ETL: the Spark job on 2 cores vs one process, and the bulk feature import.

(a) Source: ``--clips`` 30 s clips (44.1 kHz stereo MP3, like fma_small) written by
``etl.sample_data`` into a temporary FMA layout. The same clips are analysed by
``etl.job.run_etl`` on Spark ``local[2]`` (storing into MongoDB and publishing on
Kafka, as in production) and by a plain ``extract_file`` loop in one separate Python
process. Both are timed warm (the Spark workers ran a short warm-up job first, the
loop analysed one clip first); cold figures are reported too. Peak resident memory of
every Spark Python worker is read from ``/proc/<pid>/status`` (VmHWM) while the job
runs, and reported by the workers themselves (``getrusage``).
(b) Source: ``--rows`` synthetic FMA-shaped rows (``etl.import_features``), inserted
into the local FerretDB.

Timings on a shared machine are skewed by other work: each timed phase first waits
(up to ``--quiet-wait`` s) until the machine is mostly idle, and the busy share of the
whole machine before and during each phase is recorded. Needs the local stack
(``cadenza stack up``; started here if it is not running, a running one is reused).
Writes into the databases ``bench_etl*`` and the topic
``bench_etl.tracks.new``, and removes them afterwards. Destination: a table on stdout
and ``bench/results/etl.json``. Exits 1 if a target is missed (speed-up >= 1.6x,
peak RSS per worker < 1 GiB, import < 120 s).

    .venv/bin/python -m bench.etl [--clips 48] [--seconds 30] [--rows 106574]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, write_json

RESULTS = RESULTS_DIR / "etl.json"
TARGET_SPEEDUP = 1.6
TARGET_RSS = 2**30
TARGET_IMPORT_S = 120.0
FMA_ROWS = 106_574


def baseline(directory: Path) -> None:
    """Child-process mode: a plain loop over the clips, printing its timings as JSON."""
    import resource

    started = time.perf_counter()
    from etl.features import extract_file

    paths = sorted(directory.glob("fma_small/*/*.mp3"))
    t0 = time.perf_counter()
    extract_file(paths[0])
    t1 = time.perf_counter()
    for path in paths:
        extract_file(path)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "clips": len(paths),
                "import_s": t0 - started,
                "warmup_s": t1 - t0,
                "loop_s": t2 - t1,
                "rss": peak,
            }
        )
    )


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_since(start: tuple[int, int]) -> float:
    """Share of the machine's CPU time that was busy since ``start`` (0..1)."""
    busy, total = cpu_ticks()
    return (busy - start[0]) / max(1, total - start[1])


def wait_for_quiet(timeout_s: float, threshold: float = 0.25) -> float:
    """Wait until the machine is mostly idle (other jobs skew timings); return the last busy share."""
    deadline = time.monotonic() + timeout_s
    while True:
        start = cpu_ticks()
        time.sleep(3.0)
        share = busy_since(start)
        if share < threshold or time.monotonic() > deadline:
            return round(share, 3)
        print(f"  machine {share:.0%} busy with other work; waiting before timing …", flush=True)


class WorkerWatch:
    """Polls /proc for Spark's Python daemon and workers: each one's VmHWM and CPU seconds."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, tuple[float, float]] = {}  # pid -> (first seen, last seen) CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> WorkerWatch:
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    @property
    def cpu_s(self) -> float:
        return sum(last - first for first, last in self.cpu.values())

    def _poll(self) -> None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if b"pyspark.daemon" not in (proc / "cmdline").read_bytes():
                    continue
                pid = int(proc.name)
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak[pid] = max(self.peak.get(pid, 0), int(line.split()[1]) * 1024)
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / self._tick
                self.cpu[pid] = (self.cpu.get(pid, (cpu, cpu))[0], cpu)
            except (OSError, ValueError, IndexError):
                continue

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()


def time_loop(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """One plain-loop run in a fresh process, after the machine went quiet."""
    before = wait_for_quiet(args.quiet_wait)
    ticks = cpu_ticks()
    t0 = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", "bench.etl", "--baseline-dir", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    loop = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "loop_s": round(loop["loop_s"], 3),
        "cold_s": round(time.perf_counter() - t0, 2),
        "warmup_s": round(loop["warmup_s"], 2),
        "peak_rss_mib": round(loop["rss"] / 2**20, 1),
        "machine_busy_before": before,
        "machine_busy_during": round(busy_since(ticks), 3),  # ~0.5 = this process alone
    }


def time_spark(args: argparse.Namespace, spark: Any, settings: Any, directory: Path) -> dict[str, Any]:
    """One warm ``run_etl`` into a fresh database, after the machine went quiet."""
    from etl.job import run_etl

    before = wait_for_quiet(args.quiet_wait)
    ticks = cpu_ticks()
    with WorkerWatch() as watch:
        t0 = time.perf_counter()
        summary = run_etl(spark, settings, directory)
        run_s = time.perf_counter() - t0
    assert summary.stored == args.clips and summary.failed == 0, summary
    return {
        "run_s": round(run_s, 3),
        "job_s": round(summary.extract_s, 3),
        "partitions": summary.partitions,
        "events_published": summary.published,
        "workers_cpu_share": round(watch.cpu_s / (2 * run_s), 3),  # of 2 cores; 1.0 = all of them
        "worker_vmhwm_mib": sorted((round(v / 2**20, 1) for v in watch.peak.values()), reverse=True),
        "worker_getrusage_mib": round(summary.peak_worker_rss / 2**20, 1),
        "machine_busy_before": before,
        "machine_busy_during": round(busy_since(ticks), 3),
    }


def spark_bench(args: argparse.Namespace, workdir: Path, settings: Any) -> dict[str, Any]:
    from etl.job import run_etl
    from etl.sample_data import write_sample_catalogue
    from etl.spark_run import spark_conf
    from infra.spark import spark_session

    t0 = time.perf_counter()
    sample = write_sample_catalogue(
        workdir / "fma",
        tracks=args.clips,
        genres=8,
        seed=args.seed,
        duration_s=args.seconds,
        sample_rate=44100,
        channels=2,
        broken=0,
        workers=os.cpu_count() or 1,
    )
    generate_s = time.perf_counter() - t0
    loops = [time_loop(args, sample.directory) for _ in range(args.repeat)]

    t0 = time.perf_counter()
    spark = spark_session(settings, "cadenza-bench-etl", conf=spark_conf())
    session_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        warm = run_etl(
            spark, settings.model_copy(update={"mongodb_db": "bench_etl_warmup"}), sample.directory, limit=4
        )
        warm_s = time.perf_counter() - t0
        runs = [
            time_spark(
                args, spark, settings.model_copy(update={"mongodb_db": f"bench_etl_run{i}"}), sample.directory
            )
            for i in range(args.repeat)
        ]
    finally:
        spark.stop()
    loop = min(loops, key=lambda r: r["loop_s"])
    run = min(runs, key=lambda r: r["run_s"])
    peak = max(max([*r["worker_vmhwm_mib"], r["worker_getrusage_mib"]]) for r in runs)
    return {
        "clips": args.clips,
        "clip_seconds": args.seconds,
        "audio": f"{sample.audio_format}, 44100 Hz, 2 ch",
        "generate_s": round(generate_s, 2),
        "one_process": {
            **loop,
            "clips_per_s": round(args.clips / loop["loop_s"], 3),
            "threads": "library defaults (not pinned)",
        },
        "spark_local2": {
            **run,
            "clips_per_s": round(args.clips / run["run_s"], 3),
            "session_start_s": round(session_s, 2),
            "cold_warmup_run_s": round(warm_s, 2),
            "warmup_clips": warm.analysed,
        },
        "all_loops_s": [r["loop_s"] for r in loops],
        "all_runs_s": [r["run_s"] for r in runs],
        "speedup": round(loop["loop_s"] / run["run_s"], 3),
        "speedup_job_only": round(loop["loop_s"] / run["job_s"], 3),
        "worker_peak_rss_max_mib": peak,
    }


def import_bench(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from etl.import_features import import_synthetic

    before = wait_for_quiet(args.quiet_wait)
    ticks = cpu_ticks()
    summary = import_synthetic(settings, args.rows, genres=16, seed=args.seed)
    return {
        "machine_busy": [before, round(busy_since(ticks), 3)],
        "rows": summary.rows,
        "stored": summary.stored,
        "elapsed_s": round(summary.elapsed_s, 2),
        "rows_per_s": round(summary.rows_per_s, 1),
    }


def cleanup(settings: Any) -> None:
    from infra.kafka_clients import admin
    from infra.mongo import client

    mongo = client(settings)
    for name in mongo.list_database_names():
        if name.startswith("bench_etl"):
            mongo.drop_database(name)
    mongo.close()
    kafka = admin(settings)
    try:
        topics = [t for t in kafka.list_topics() if t.startswith(settings.topic_prefix)]
        if topics:
            kafka.delete_topics(topics)
    finally:
        kafka.close()


def report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "spark" in result:
        s = result["spark"]
        table = Table(title=f"ETL: {s['clips']} x {s['clip_seconds']:.0f} s clips ({s['audio']}), warm")
        for column in ("runner", "seconds", "clips/s", "speed-up", "peak RSS / process"):
            table.add_column(column, justify="right")
        one, sp = s["one_process"], s["spark_local2"]
        table.add_row("plain loop, 1 process", f"{one['loop_s']:.2f}", f"{one['clips_per_s']:.2f}", "1.00x",
                      f"{one['peak_rss_mib']:.0f} MiB")  # fmt: skip
        table.add_row("run_etl, Spark local[2]", f"{sp['run_s']:.2f}", f"{sp['clips_per_s']:.2f}",
                      f"{s['speedup']:.2f}x", f"{s['worker_peak_rss_max_mib']:.0f} MiB")  # fmt: skip
        console.print(table)
        console.print(
            f"best of {len(s['all_loops_s'])} each (loop {s['all_loops_s']} s, Spark {s['all_runs_s']} s); "
            f"Spark job alone {sp['job_s']:.2f} s ({s['speedup_job_only']:.2f}x); workers got "
            f"{sp['workers_cpu_share']:.0%} of 2 cores; cold: session {sp['session_start_s']:.1f} s + first "
            f"run {sp['cold_warmup_run_s']:.1f} s, one process {one['cold_s']:.1f} s in all; "
            f"workers' VmHWM {sp['worker_vmhwm_mib']} MiB"
        )
    if "import" in result:
        i = result["import"]
        console.print(
            f"import-features: {i['rows']:,} synthetic rows in {i['elapsed_s']:.1f} s "
            f"({i['rows_per_s']:,.0f} rows/s, target < {TARGET_IMPORT_S:.0f} s)"
        )
    for name, phase in (("loop", "one_process"), ("Spark", "spark_local2")):
        if "spark" in result:
            busy = result["spark"][phase]
            console.print(
                f"machine busy share (0..1) before/during the {name}: "
                f"{busy['machine_busy_before']}/{busy['machine_busy_during']}"
                + (" (0.5 = the loop alone)" if name == "loop" else "")
            )
    if "import" in result:
        console.print(
            f"machine busy share (0..1) before/during the import: {result['import']['machine_busy']}"
        )
    console.print(f"targets -> {'PASS' if result['passed'] else 'FAIL'}; results in {RESULTS}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.etl", description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=FMA_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="Timed runs of each runner; the best counts.")
    parser.add_argument(
        "--quiet-wait", type=float, default=900.0, help="Max seconds to wait for an idle machine."
    )
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--baseline-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_dir:
        baseline(args.baseline_dir)
        return 0

    from infra.settings import Settings
    from infra.stack.manager import LocalStack

    LocalStack(Settings()).up(report=lambda msg: print(f"  {msg}"))  # reuses a running stack
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.etl " + " ".join(sys.argv[1:]),
    }
    passed = True
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-etl-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            spark_master="local[2]",
            mongodb_db="bench_etl",
            topic_prefix="bench_etl.",
        )
        try:
            if not args.skip_spark:
                result["spark"] = spark_bench(args, Path(tmp), settings)
                passed &= result["spark"]["speedup"] >= TARGET_SPEEDUP
                passed &= result["spark"]["worker_peak_rss_max_mib"] * 2**20 < TARGET_RSS
            if not args.skip_import:
                result["import"] = import_bench(
                    args, settings.model_copy(update={"mongodb_db": "bench_etl_import"})
                )
                passed &= args.rows < FMA_ROWS or result["import"]["elapsed_s"] < TARGET_IMPORT_S
        finally:
            cleanup(settings)
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "loadavg": [[round(x, 2) for x in load_before], [round(x, 2) for x in os.getloadavg()]],
    }
    result["targets"] = {"speedup": TARGET_SPEEDUP, "worker_peak_rss_mib": 1024, "import_s": TARGET_IMPORT_S}
    result["passed"] = bool(passed)
    write_json(RESULTS, result)
    report(result)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
