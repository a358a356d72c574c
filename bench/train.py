"""Benchmark: Spark ML K-Means training at FMA scale, against scikit-learn on the same matrix.

Source: ``etl.synthetic.synthetic_features`` (106,574 x 518 float32 vectors with genre
structure, FMA's feature scales), generated in memory. Destination: a table on stdout
and ``bench/results/train.json``.

Measures, on ``local[2]`` through :func:`infra.spark.spark_session`: the fit of
:func:`streaming_jobs.model.kmeans.fit` for one k (caching + StandardScaler + two PCA fits +
K-Means; target < 180 s), the silhouette evaluation, assigning every track with the
fitted pipeline, the numpy export's agreement with Spark and its throughput, then
scikit-learn (StandardScaler + PCA with the same number of components + KMeans, one
k-means++ init, 2 threads) for a ratio, and peak memory: the JVM's and Python's peak RSS.

    .venv/bin/python -m bench.train            # full size
    .venv/bin/python -m bench.train --n 20000  # quicker
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, write_json
from infra.settings import Settings
from infra.spark import spark_session
from streaming_jobs.model.dataset import to_spark
from streaming_jobs.model.kmeans import TrainConfig, fit, predict

console = Console()
FMA_TRACKS = 106_574


def rss_peak_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset this process's VmHWM (Linux >= 4.0), so the next phase's peak is its own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def features(n: int, genres: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    try:
        from etl.synthetic import synthetic_features
    except ImportError:  # pragma: no cover - etl not installed
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, genres, n)
        centres = rng.normal(0, 2.0, (genres, 518))
        matrix = (centres[labels] + rng.standard_normal((n, 518))).astype(np.float32)
        return np.arange(1, n + 1, dtype=np.int64), labels, matrix, "bench (etl.synthetic missing)"
    ids, labels, matrix = synthetic_features(n, genres, seed)
    return ids, labels, matrix, "etl.synthetic.synthetic_features"


def sklearn_run(x: np.ndarray, n_components: int, k: int, seed: int) -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2):
        started = time.perf_counter()
        scaled = StandardScaler().fit_transform(x)
        scaled_s = time.perf_counter() - started
        reduced = PCA(n_components=n_components, svd_solver="full", random_state=seed).fit_transform(scaled)
        pca_s = time.perf_counter() - started - scaled_s
        km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(reduced)
        total = time.perf_counter() - started
    return {
        "scaler_s": scaled_s,
        "pca_s": pca_s,
        "kmeans_s": total - scaled_s - pca_s,
        "fit_s": total,
        "labels": km.labels_,
        "iterations": int(km.n_iter_),
    }


def main(
    n: int = typer.Option(FMA_TRACKS, help="Tracks (FMA full: 106,574)."),
    k: int = typer.Option(16, help="Clusters."),
    genres: int = typer.Option(16, help="Genres of the synthetic data."),
    seed: int = typer.Option(42),
    driver_memory: str = typer.Option("2g", help="spark.driver.memory (Cadenza's default: 2g)."),
    sklearn: bool = typer.Option(True, "--sklearn/--no-sklearn", help="Also time scikit-learn."),
    out: Path = typer.Option(RESULTS_DIR / "train.json"),
) -> None:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    results: dict[str, Any] = {"n": n, "k": k, "genres": genres, "seed": seed, "spark_master": "local[2]"}
    started = time.perf_counter()
    ids, labels, matrix32, source = features(n, genres, seed)
    results.update(source=source, generate_s=time.perf_counter() - started)
    matrix = matrix32.astype(np.float64)

    data_dir = Path(tempfile.mkdtemp(prefix="cadenza-bench-train-"))
    settings = Settings(
        data_dir=data_dir,
        spark_master="local[2]",
        spark_driver_memory=driver_memory,
        spark_shuffle_partitions=4,
    )
    with console.status("starting Spark …"):
        started = time.perf_counter()
        spark = spark_session(settings, "cadenza-bench-train")
        results["spark_start_s"] = time.perf_counter() - started
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    try:
        started = time.perf_counter()
        frame = to_spark(spark, ids, matrix, np.zeros(n, dtype=bool))
        results["to_spark_s"] = time.perf_counter() - started
        with console.status(f"fitting k={k} on {n:,} x {matrix.shape[1]} …"):
            fitted = fit(frame, TrainConfig(ks=(k,), pca_variance=settings.model_pca_variance, seed=seed))
        t = fitted.timings
        results["spark"] = {
            **{name: round(v, 3) for name, v in t.items()},
            "fit_s": t["cache_s"] + t["scaler_s"] + t["pca_s"] + t["kmeans_s"],
            "n_components": fitted.n_components,
            "explained_variance": fitted.explained_variance,
            "silhouette": fitted.best.silhouette,
            "cost": fitted.best.cost,
            "iterations": fitted.best.iterations,
        }
        with console.status("assigning every track (Spark) …"):
            started = time.perf_counter()
            _, spark_clusters, _ = predict(fitted.pipeline, frame)
            results["spark"]["predict_s"] = time.perf_counter() - started
        results["spark"]["nmi_genre"] = float(normalized_mutual_info_score(labels, spark_clusters))
        results["jvm_peak_rss_mb"] = rss_peak_mb(jvm_pid)
        model = fitted.export("bench")
    finally:
        spark.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    started = time.perf_counter()
    numpy_clusters = model.assign(matrix)
    numpy_s = time.perf_counter() - started
    results["numpy"] = {
        "assign_s": numpy_s,
        "vectors_per_s": n / numpy_s,
        "agreement_with_spark": float((numpy_clusters == spark_clusters).mean()),
    }
    results["python_peak_rss_mb_spark_phase"] = rss_peak_mb()

    if sklearn:
        reset_peak()
        with console.status("scikit-learn …"):
            sk = sklearn_run(matrix, fitted.n_components, k, seed)
        sk_labels = sk.pop("labels")
        results["sklearn"] = {
            **sk,
            "nmi_genre": float(normalized_mutual_info_score(labels, sk_labels)),
            "ari_vs_spark": float(adjusted_rand_score(spark_clusters, sk_labels)),
        }
        results["python_peak_rss_mb_sklearn_phase"] = rss_peak_mb()
        results["spark_over_sklearn_fit"] = results["spark"]["fit_s"] / sk["fit_s"]
    results["peak_driver_rss_mb"] = results["jvm_peak_rss_mb"] + results["python_peak_rss_mb_spark_phase"]
    results["machine"] = {
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "python": platform.python_version(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    results["target_fit_s"] = 180
    results["target_met"] = results["spark"]["fit_s"] < 180

    write_json(out, results)
    print_table(results)
    console.print(f"wrote {out}")


def print_table(r: dict[str, Any]) -> None:
    s, npy = r["spark"], r["numpy"]
    parts = ("cache_s", "scaler_s", "pca_s", "kmeans_s")
    table = Table(title=f"K-Means k={r['k']} on {r['n']:,} x 518 ({r['source']}), {r['spark_master']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("Spark fit (cache+scaler+PCA+K-Means)", f"{s['fit_s']:.1f} s (target < 180 s)"),
        ("  cache / scaler / PCA x2 / K-Means", " / ".join(f"{s[p]:.1f}" for p in parts) + " s"),
        ("Spark silhouette", f"{s['silhouette_s']:.1f} s (= {s['silhouette']:.3f})"),
        ("Spark assign all tracks", f"{s['predict_s']:.1f} s"),
        ("PCA components (variance)", f"{s['n_components']} ({s['explained_variance']:.1%})"),
        ("K-Means iterations / NMI vs genre", f"{s['iterations']} / {s['nmi_genre']:.3f}"),
        ("numpy assign (export.json)", f"{npy['assign_s']:.2f} s, {npy['vectors_per_s']:,.0f}/s"),
        ("numpy == Spark clusters", f"{npy['agreement_with_spark']:.4%}"),
        ("JVM peak RSS", f"{r['jvm_peak_rss_mb']:,.0f} MiB"),
        ("Python peak RSS (Spark phase)", f"{r['python_peak_rss_mb_spark_phase']:,.0f} MiB"),
        ("peak driver memory (JVM + Python)", f"{r['peak_driver_rss_mb']:,.0f} MiB"),
    ]
    if "sklearn" in r:
        sk = r["sklearn"]
        sk_parts = " / ".join(f"{sk[p]:.1f}" for p in ("scaler_s", "pca_s", "kmeans_s"))
        rows += [
            ("scikit-learn fit (scaler+PCA+KMeans)", f"{sk['fit_s']:.1f} s ({sk_parts})"),
            ("Spark / scikit-learn fit time", f"{r['spark_over_sklearn_fit']:.2f}x"),
            ("scikit-learn NMI vs genre / ARI vs Spark", f"{sk['nmi_genre']:.3f} / {sk['ari_vs_spark']:.3f}"),
            ("Python peak RSS (sklearn phase)", f"{r['python_peak_rss_mb_sklearn_phase']:,.0f} MiB"),
        ]
    rows.append(
        (
            "machine load (1 min) at end",
            f"{r['machine']['load_avg_1m_at_end']:.1f} on {r['machine']['cpus']} CPUs",
        )
    )
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    app = typer.Typer(add_completion=False)
    app.command()(main)
    app(prog_name="python -m bench.train")
