"""Settings of the recommender workers (Faust): ranking, the group, the table's store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infra.settings.component import Component

#: The recommender's Faust table of listener states (its changelog is created by ``stack up``).
RECOMMENDER_TABLE = "listeners"


class RecommenderSettings(Component):
    """Recommender settings: see each field's description."""

    reco_k: int = Field(10, ge=1, le=100, description="Tracks per recommendation list.")
    reco_last_n: int = Field(20, ge=1, description="Recent tracks kept (and never recommended).")
    reco_half_life_s: float = Field(
        300.0,
        gt=0,
        description="Half-life of a listener's cluster affinity, in event time (1800 s before tuning: "
        "bench/tune.py chose 300 s, with which lists follow a change of taste within a play or two).",
    )
    reco_seed_weight: float = Field(
        3.0,
        ge=0,
        le=100,
        description="Ranking: weight of a candidate's closeness to one of the last tracks played "
        "(\"sounds like <title>\"); the score adds it to the cluster's share of the listener's affinity.",
    )
    reco_trending_weight: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Ranking: weight of what is trending in the listener's strongest clusters "
        '("trending in your mix").',
    )
    reco_mix_weight: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Ranking: weight of closeness to the listener's recent tracks in a cluster "
        '("more from your mix").',
    )
    reco_mmr_lambda: float = Field(
        0.85,
        ge=0,
        le=1,
        description="Ranking: maximal marginal relevance's trade of score (1) against diversity (0) "
        "when it picks the list from the candidates.",
    )
    reco_seed_decay: float = Field(
        0.3,
        ge=0,
        le=1,
        description='Ranking: weight of the track played r tracks back, as a seed of "sounds like", is '
        "this to the power r (the last track leads the list); closeness is relative to each seed's "
        "nearest track. bench/tune.py chose it.",
    )
    reco_skip_penalty: float = Field(
        0.3,
        ge=0,
        le=100,
        description="Ranking: right after a skip, the skipped track's cluster loses this much score and at "
        "least two tracks of the listener's other clusters are shown, until the next play. 0: a skip "
        "only lowers the cluster's affinity.",
    )
    reco_seen_events: int = Field(
        200, ge=10, description="Recent event ids kept per listener for deduplication."
    )
    faust_port: int = Field(6066, description="Faust worker web port (metrics).")
    faust_workers: int = Field(
        1, ge=1, le=8, description="Recommender workers the demo runs (default 2 in the cluster profile)."
    )
    faust_session_timeout_s: float = Field(
        4.5,
        ge=1.0,
        le=60.0,
        description="How long a silent recommender worker keeps its partitions: a crashed worker's "
        "listeners move to the others after this long (the local brokers accept 1 s and up; keep "
        "it above the brokers' 3 s fencing, or losing a broker makes every worker rejoin).",
    )
    faust_store: Literal["memory", "rocksdb"] = Field(
        "rocksdb",
        description="Where a recommender worker keeps its table: RocksDB on local disk (rocksdict; "
        "a restarted or taking-over worker reads only the changelog written since its copy), "
        "or memory, rebuilt from the whole changelog topic at every start and rebalance.",
    )

    faust_fetch_wait_ms: int = Field(
        50,
        ge=1,
        le=1500,
        description="Longest a recommender worker's fetch waits at the broker for new records. "
        "The client keeps one fetch in flight per broker, and a fetch for quiet partitions alone "
        "holds back the busy ones until it returns: Faust's fixed 1,500 ms made listeners wait "
        "1.5 s for recommendations at 200 plays/s. Lower answers sooner, costs idle fetches.",
    )
