"""How good a clustering is: cluster sizes, agreement with genres, and recommendation precision.

Source: arrays collected from a fitted model (track ids, clusters, PCA coordinates,
``genre_top`` labels, held-out flags) and the ``plays`` counts; pure numpy and
scikit-learn, no IO. Destination: an :class:`Evaluation`, stored as the ``metrics`` of
the model's registry document and drawn by :mod:`streaming_jobs.model.report`.

Recommendation metric (precision@k, k = 10): every held-out track with a genre is a
query; the model recommends the k training tracks nearest to it (squared Euclidean in
PCA space) *inside its predicted cluster*; precision is the share of them with the
query's genre (a cluster with fewer than k training tracks yields fewer hits; the
denominator stays k). Two baselines on the same queries: *random* (k training tracks
drawn uniformly, seeded) and *popular* (the same k tracks for everyone: the k most
played training tracks from the ``plays`` history if at least k have plays, else the
first k training tracks, by id, of the most frequent genre — a "most popular genre"
list; the source is recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class GenreAgreement:
    """Clusters vs ``genre_top`` on the tracks that have a genre."""

    nmi: float
    ari: float
    purity: float
    n_labelled: int


@dataclass(frozen=True)
class Precision:
    k: int
    n_queries: int
    cluster: float
    random: float
    popular: float
    popularity_source: str


@dataclass(frozen=True)
class Evaluation:
    sizes: list[int]
    genres: list[str]
    contingency: NDArray[np.int64]
    agreement: GenreAgreement
    precision: Precision

    def to_metrics(self) -> dict[str, Any]:
        """JSON/BSON-friendly metrics (plain lists and numbers)."""
        return {
            "cluster_sizes": self.sizes,
            "contingency": {  # flat, row-major (k x genres): FerretDB stores no nested arrays
                "genres": self.genres,
                "counts": self.contingency.ravel().tolist(),
            },
            "genre": {
                "nmi": self.agreement.nmi,
                "ari": self.agreement.ari,
                "purity": self.agreement.purity,
                "n_labelled": self.agreement.n_labelled,
            },
            "recommendation": {
                "k": self.precision.k,
                "n_queries": self.precision.n_queries,
                "precision": {
                    "cluster": self.precision.cluster,
                    "random": self.precision.random,
                    "popular": self.precision.popular,
                },
                "popularity_source": self.precision.popularity_source,
            },
        }


def genre_codes(genres: Sequence[str | None]) -> tuple[list[str], Ints]:
    """Sorted genre names and one code per track (-1 for no genre)."""
    names = sorted({g for g in genres if g is not None})
    index = {g: i for i, g in enumerate(names)}
    return names, np.asarray([index[g] if g is not None else -1 for g in genres], dtype=np.int64)


def cluster_sizes(clusters: Ints, k: int) -> list[int]:
    return [int(n) for n in np.bincount(clusters, minlength=k)]


def contingency(clusters: Ints, codes: Ints, k: int, n_genres: int) -> NDArray[np.int64]:
    """``k x n_genres`` counts of labelled tracks."""
    table = np.zeros((k, n_genres), dtype=np.int64)
    labelled = codes >= 0
    np.add.at(table, (clusters[labelled], codes[labelled]), 1)
    return table


def genre_agreement(clusters: Ints, codes: Ints) -> GenreAgreement:
    labelled = codes >= 0
    n = int(labelled.sum())
    if n == 0:
        return GenreAgreement(nmi=0.0, ari=0.0, purity=0.0, n_labelled=0)
    c, g = clusters[labelled], codes[labelled]
    table = contingency(c, g, int(c.max()) + 1, int(g.max()) + 1)
    return GenreAgreement(
        nmi=float(normalized_mutual_info_score(g, c)),
        ari=float(adjusted_rand_score(g, c)),
        purity=float(table.max(axis=1).sum() / n),
        n_labelled=n,
    )


def cluster_precision(
    *,
    query_coords: Floats,
    query_clusters: Ints,
    query_codes: Ints,
    cand_coords: Floats,
    cand_clusters: Ints,
    cand_codes: Ints,
    k: int = 10,
    chunk: int = 2048,
) -> NDArray[np.float64]:
    """Precision@k per query (queries must have a genre) of nearest neighbours in-cluster."""
    out = np.zeros(query_codes.size, dtype=np.float64)
    for c in np.unique(query_clusters):
        q_idx = np.nonzero(query_clusters == c)[0]
        members = np.nonzero(cand_clusters == c)[0]
        if members.size == 0:
            continue
        pool = cand_coords[members]
        pool_sq = np.einsum("ij,ij->i", pool, pool)
        take = min(k, members.size)
        for start in range(0, q_idx.size, chunk):
            rows = q_idx[start : start + chunk]
            q = query_coords[rows]
            d = pool_sq[None, :] - 2.0 * (q @ pool.T)  # + |q|^2, constant per row
            nearest = np.argpartition(d, take - 1, axis=1)[:, :take] if take < members.size else None
            picked = members[nearest] if nearest is not None else np.broadcast_to(members, (rows.size, take))
            out[rows] = (cand_codes[picked] == query_codes[rows, None]).sum(axis=1) / k
    return out


def random_precision(query_codes: Ints, cand_codes: Ints, k: int = 10, seed: int = 42) -> NDArray[np.float64]:
    """Precision@k per query of k distinct training tracks drawn uniformly."""
    rng = np.random.default_rng(seed)
    n = cand_codes.size
    take = min(k, n)
    picks = rng.integers(0, n, size=(query_codes.size, take))
    sorted_picks = np.sort(picks, axis=1)
    repeats = np.nonzero((np.diff(sorted_picks, axis=1) == 0).any(axis=1))[0]
    for row in repeats:
        picks[row] = rng.choice(n, size=take, replace=False)
    return np.asarray((cand_codes[picks] == query_codes[:, None]).sum(axis=1) / k, dtype=np.float64)


def choose_popular(
    cand_ids: Ints, cand_codes: Ints, plays: Sequence[tuple[int, int]], k: int = 10
) -> tuple[Ints, str]:
    """Indices (into the candidates) of the popularity baseline's k tracks, and its source."""
    position = {int(t): i for i, t in enumerate(cand_ids)}
    played = [(n, t) for t, n in plays if n > 0 and t in position]
    if len(played) >= k:
        played.sort(key=lambda p: (-p[0], p[1]))
        return np.asarray([position[t] for _, t in played[:k]], dtype=np.int64), "plays"
    labelled = cand_codes[cand_codes >= 0]
    if labelled.size == 0:
        return np.arange(min(k, cand_ids.size), dtype=np.int64), "first_tracks"
    top = int(np.bincount(labelled).argmax())  # lowest code (alphabetical) on a tie
    members = np.nonzero(cand_codes == top)[0]
    return members[np.argsort(cand_ids[members], kind="stable")][:k], "most_frequent_genre"


def evaluate(
    *,
    ids: Ints,
    clusters: Ints,
    coords: Floats,
    genres: Sequence[str | None],
    holdout: NDArray[np.bool_],
    k_clusters: int,
    plays: Sequence[tuple[int, int]] = (),
    top_k: int = 10,
    seed: int = 42,
) -> Evaluation:
    """Every metric of :class:`Evaluation` for one model's assignment of the catalogue."""
    names, codes = genre_codes(genres)
    train = ~holdout
    queries = holdout & (codes >= 0)
    q_codes, c_codes = codes[queries], codes[train]
    if queries.any() and train.any():
        model_p = cluster_precision(
            query_coords=coords[queries],
            query_clusters=clusters[queries],
            query_codes=q_codes,
            cand_coords=coords[train],
            cand_clusters=clusters[train],
            cand_codes=c_codes,
            k=top_k,
        )
        random_p = random_precision(q_codes, c_codes, top_k, seed)
        popular, source = choose_popular(ids[train], c_codes, plays, top_k)
        popular_p = (c_codes[popular][None, :] == q_codes[:, None]).sum(axis=1) / top_k
        means = (float(model_p.mean()), float(random_p.mean()), float(popular_p.mean()))
    else:
        means, source = (0.0, 0.0, 0.0), "none"
    return Evaluation(
        sizes=cluster_sizes(clusters, k_clusters),
        genres=names,
        contingency=contingency(clusters, codes, k_clusters, len(names)),
        agreement=genre_agreement(clusters, codes),
        precision=Precision(
            k=top_k,
            n_queries=int(queries.sum()),
            cluster=means[0],
            random=means[1],
            popular=means[2],
            popularity_source=source,
        ),
    )
