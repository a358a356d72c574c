"""One HTML page per model: metrics, k sweep, 2-D projection, cluster x genre heatmap, sizes.

Source: a model's registry document (``metrics``: sweep, cluster sizes, contingency
table, genre agreement, precision@k) and its ``projection.npz`` sample (written at
training time, so the report describes the model as trained). Destination:
``<out>/index.html`` plus ``sweep.png``, ``projection.png``, ``heatmap.png`` and
``sizes.png`` (matplotlib, Agg, no display needed). Default ``<out>``:
``<models_path>/<version>/report``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from schemas.documents import ModelDoc

PLOTS: Final = ("sweep.png", "projection.png", "heatmap.png", "sizes.png")
_DPI: Final = 110


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def plot_sweep(sweep: list[Mapping[str, Any]], chosen: int, path: Path) -> Path:
    """Silhouette (left axis) and K-Means cost (right axis) against k."""
    ks = [int(p["k"]) for p in sweep]
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    ax.plot(ks, [p["silhouette"] if p["silhouette"] is not None else np.nan for p in sweep], "o-", color="C0")
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette", color="C0")
    ax.axvline(chosen, color="grey", linestyle=":", label=f"chosen k={chosen}")
    cost = ax.twinx()
    cost.plot(ks, [p["cost"] if p["cost"] is not None else np.nan for p in sweep], "s--", color="C1")
    cost.set_ylabel("cost (within-cluster sum of squares)", color="C1")
    ax.set_xticks(ks)
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("K-Means sweep")
    return _save(fig, path)


def plot_projection(projection: Mapping[str, NDArray[Any]], k: int, path: Path) -> Path:
    """Sampled tracks on the first two PCA components, coloured by cluster."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    clusters = np.asarray(projection["cluster"])
    points = ax.scatter(
        projection["x"],
        projection["y"],
        c=clusters,
        cmap="tab20",
        vmin=-0.5,
        vmax=max(k, 20) - 0.5,
        s=6,
        alpha=0.7,
    )
    if k <= 20:
        handles, _ = points.legend_elements(num=list(range(k)))
        ax.legend(handles, [str(c) for c in range(len(handles))], title="cluster", fontsize="x-small", ncol=2)
    ax.set_xlabel("PCA component 1")
    ax.set_ylabel("PCA component 2")
    ax.set_title(f"{clusters.size} tracks (sample) by cluster")
    return _save(fig, path)


def plot_heatmap(genres: list[str], counts: NDArray[np.int64], path: Path) -> Path:
    """Share of each cluster's labelled tracks per genre (rows sum to 1), counts annotated."""
    k, g = counts.shape
    fig = Figure(figsize=(max(5.0, 1.0 + 0.45 * g), max(3.5, 1.2 + 0.32 * k)))
    ax = fig.add_subplot()
    if g == 0:
        ax.text(0.5, 0.5, "no track has a genre_top label", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    image = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the cluster's tracks")
    ax.set_xticks(range(g), genres, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(k), [str(c) for c in range(k)], fontsize="small")
    ax.set_xlabel("genre_top")
    ax.set_ylabel("cluster")
    if k * g <= 600:
        for (row, col), n in np.ndenumerate(counts):
            if n:
                colour = "black" if shares[row, col] > 0.6 else "white"
                ax.text(col, row, str(n), ha="center", va="center", fontsize=6, color=colour)
    ax.set_title("clusters x genres")
    return _save(fig, path)


def plot_sizes(sizes: list[int], path: Path) -> Path:
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    ax.bar(range(len(sizes)), sizes, color="C2")
    ax.set_xlabel("cluster")
    ax.set_ylabel("tracks")
    ax.set_xticks(range(len(sizes)))
    ax.set_title(f"cluster sizes ({sum(sizes)} tracks)")
    return _save(fig, path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def summary_rows(doc: ModelDoc) -> list[tuple[str, str]]:
    """The headline figures of a model, as (label, value) text pairs (CLI and HTML)."""
    m = doc.metrics
    genre = m.get("genre", {})
    reco = m.get("recommendation", {})
    precision = reco.get("precision", {})
    excluded = m.get("excluded", {})
    top_k = reco.get("k", 10)
    return [
        ("version", doc.id),
        ("current", "yes" if doc.current else "no"),
        ("created", f"{doc.created:%Y-%m-%d %H:%M:%S} UTC"),
        ("feature set", doc.feature_set_version),
        ("k", str(doc.k)),
        ("tracks (train / held out)", f"{m.get('n_tracks')} ({m.get('n_train')} / {m.get('n_holdout')})"),
        ("left out", ", ".join(f"{r} {n}" for r, n in excluded.items() if n) or "none"),
        ("PCA components", f"{m.get('n_components')} ({_fmt(m.get('explained_variance'))} of variance)"),
        ("silhouette", _fmt(m.get("silhouette"))),
        ("cost", _fmt(m.get("cost"))),
        ("genre NMI / ARI / purity", " / ".join(_fmt(genre.get(x)) for x in ("nmi", "ari", "purity"))),
        (
            f"precision@{top_k} model / random / popular",
            " / ".join(_fmt(precision.get(x)) for x in ("cluster", "random", "popular"))
            + f"  ({reco.get('n_queries')} held-out queries; popular = {reco.get('popularity_source')})",
        ),
        ("pipeline", doc.path),
        ("export", doc.export_path),
    ]


def render_html(doc: ModelDoc, images: list[str]) -> str:
    rows = "\n".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in summary_rows(doc)
    )
    sweep = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_fmt(p.get(c)))}</td>" for c in ("k", "silhouette", "cost", "iterations")
        )
        + "</tr>"
        for p in doc.metrics.get("sweep", [])
    )
    figures = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}"></figure>' for name in images
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cadenza model {html.escape(doc.id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; font-size: 0.92em; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 520px; }}
</style></head>
<body>
<h1>Model {html.escape(doc.id)}</h1>
<table>{rows}</table>
<h2>k sweep</h2>
<table><tr><th>k</th><th>silhouette</th><th>cost</th><th>iterations</th></tr>
{sweep}</table>
{figures}
</body></html>
"""


def write_report(doc: ModelDoc, projection: Mapping[str, NDArray[Any]], out_dir: Path) -> Path:
    """Write the PNGs and ``index.html`` into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = doc.metrics
    contingency = metrics.get("contingency", {"genres": [], "counts": []})
    counts = np.asarray(contingency["counts"], dtype=np.int64).reshape(doc.k, len(contingency["genres"]))
    plot_sweep(metrics.get("sweep", []), doc.k, out_dir / PLOTS[0])
    plot_projection(projection, doc.k, out_dir / PLOTS[1])
    plot_heatmap(list(contingency["genres"]), counts, out_dir / PLOTS[2])
    plot_sizes(list(metrics.get("cluster_sizes", [])), out_dir / PLOTS[3])
    page = out_dir / "index.html"
    page.write_text(render_html(doc, list(PLOTS)), encoding="utf-8")
    return page
