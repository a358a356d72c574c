"""Typed settings for every Cadenza deployable, read from ``CADENZA_*`` environment variables.

Source: the process environment (and an optional ``.env`` file in the working
directory). Every address, path, topic prefix, model location and tuning knob lives
here with a documented default; ``cadenza config`` prints them all and the README's
configuration table is generated from this class (``cadenza config --markdown``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.errors import ConfigError
from schemas.topics import TopicSpec

#: The recommender's Faust table of listener states (its changelog is created by ``stack up``).
RECOMMENDER_TABLE = "listeners"
#: Shortest token secret a gateway accepts (``secrets.token_urlsafe(32)`` gives 43 characters).
MIN_TOKEN_SECRET_CHARS = 32
#: Token secrets that are public (earlier defaults, examples): never accepted.
PUBLIC_TOKEN_SECRETS = frozenset({"change-me-in-production"})
#: How to make a secret, for error messages and docs.
NEW_SECRET_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: The demo's generated token secret, in the data dir (mode 0600).
TOKEN_SECRET_FILE = "token-secret"
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)


def duration_s(text: str) -> int:
    """Seconds in a Spark-style interval such as ``"10 minutes"`` or ``"1 hour"``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like '30 seconds', '10 minutes', '1 hour'")
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


class Settings(BaseSettings):
    """All of Cadenza's configuration. Environment variable = ``CADENZA_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_", env_file=".env", extra="ignore", frozen=True)

    # --- local data -------------------------------------------------------------------
    data_dir: Path = Field(
        Path(".cadenza"),
        description="Everything the local stack and the jobs write: broker and database "
        "data, logs, checkpoints, models.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "cadenza",
        description="Downloaded/built artefacts shared by all checkouts: Kafka jars, "
        "Spark connector jars, the FerretDB binary.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of Cadenza's own processes."
    )
    log_format: Literal["json", "console"] = Field(
        "console", description="'json' for structured logs (one JSON object per line)."
    )
    log_max_mb: int = Field(
        20,
        ge=1,
        description="Size at which every log the local stack and the demo write is rotated: "
        "supervisord's programs (streaming jobs, recommenders, gateways), the Kafka brokers and "
        "Spark daemons (log4j), Spark executors' stdout/stderr; FerretDB's log at its start.",
    )
    log_backups: int = Field(
        2,
        ge=1,
        description="Rotated files kept per log (gateway.log.1 …), so one process's logs never "
        "take more than log_max_mb x (log_backups + 1).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of the gateways and recommender workers: uvloop (libuv; cheaper "
        "socket I/O per play and per push) or the standard library's asyncio.",
    )
    stack_profile: Literal["local", "cluster"] = Field(
        "local",
        description="'local': one Kafka broker, Spark in-process (local[*]), one recommender worker and "
        "one gateway. 'cluster': three KRaft brokers (replication 3, min.insync.replicas 2), a Spark "
        "standalone master with workers, two recommender workers and two gateways, all on loopback.",
    )

    # --- Kafka ------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (comma-separated host:port); default: the "
        "local stack's broker, 127.0.0.1:<kafka_port>.",
    )
    topic_prefix: str = Field("cadenza.", description="Prefix of every topic name.")
    kafka_version: str = Field(
        "3.9.1", description="Apache Kafka version the local stack runs (from Maven jars)."
    )
    kafka_port: int = Field(9092, description="Local stack: broker listener port.")
    kafka_controller_port: int = Field(9093, description="Local stack: KRaft controller port.")
    kafka_heap: str = Field("512m", description="Local stack: broker JVM heap (-Xmx).")
    kafka_replication_factor: int = Field(
        1, ge=1, description="Replication factor of created topics (default 3 in the cluster profile)."
    )
    kafka_brokers: int = Field(
        3,
        ge=1,
        le=9,
        description="Cluster profile: brokers started; broker i listens on kafka_port + 100*i and "
        "kafka_controller_port + 100*i.",
    )

    # --- MongoDB ----------------------------------------------------------------------
    mongodb_uri: str | None = Field(
        None,
        description="Any MongoDB (or compatible) server; default: the local stack's "
        "FerretDB, mongodb://127.0.0.1:<ferretdb_port>/.",
    )
    mongodb_db: str = Field("cadenza", description="Database name.")
    ferretdb_version: str = Field(
        "v1.24.2", description="Local stack: FerretDB version built from the Go module proxy."
    )
    ferretdb_port: int = Field(27017, description="Local stack: FerretDB listen port.")
    ferretdb_sqlite_sync: Literal["off", "normal", "full"] = Field(
        "normal",
        description="Local stack: SQLite `synchronous` of FerretDB (WAL mode): 'normal' survives "
        "process crashes, 'full' also power loss (slower writes).",
    )

    # --- Spark ------------------------------------------------------------------------
    spark_master: str = Field(
        "local[*]",
        description="Spark master URL (local[*], spark://…); default spark://127.0.0.1:<spark_master_port> "
        "in the cluster profile.",
    )
    spark_master_port: int = Field(7077, description="Cluster profile: Spark standalone master port.")
    spark_ui_port: int = Field(
        8080, description="Cluster profile: Spark master web UI port; worker i uses spark_ui_port + 1 + i."
    )
    spark_workers: int = Field(2, ge=1, le=8, description="Cluster profile: Spark standalone workers.")
    spark_worker_cores: int = Field(2, ge=1, description="Cluster profile: cores each Spark worker offers.")
    spark_worker_memory: str = Field("3g", description="Cluster profile: memory each Spark worker offers.")
    spark_executor_memory: str = Field("1g", description="Memory of one executor on a Spark cluster.")
    spark_cores_max: int = Field(
        2,
        ge=1,
        description="Cores one application takes on a Spark cluster (one executor of one core per "
        "worker), so both streaming queries and a batch job fit side by side.",
    )
    spark_executor_env: Path | None = Field(
        None,
        description="Python environment archive (venv-pack .tar.gz) shipped to executors on a Spark "
        "cluster; default: built into the cache by `cadenza stack prepare --profile cluster`.",
    )
    spark_driver_memory: str = Field("2g", description="Spark driver memory.")
    spark_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU niceness of the Structured Streaming jobs (their JVM and Python workers) "
        "under `cadenza demo`/`stack up`, and of the cluster profile's Spark workers: on a "
        "machine they share with the recommender and gateways, listeners' latency goes first "
        "and Spark takes the CPU left over. 0 runs them at normal priority.",
    )
    spark_shuffle_partitions: int = Field(
        8, ge=1, description="spark.sql.shuffle.partitions of Cadenza's Spark jobs."
    )
    spark_kafka_jars: str | None = Field(
        None,
        description="Comma-separated jar paths of spark-sql-kafka; default: resolved from "
        "Maven into the cache on first use.",
    )

    # --- model ------------------------------------------------------------------------
    model_dir: Path | None = Field(None, description="Model registry directory; default <data_dir>/models.")
    model_k: int = Field(16, ge=2, description="Default number of K-Means clusters.")
    model_pca_variance: float = Field(0.9, gt=0, le=1, description="Share of variance the PCA step keeps.")
    model_seed: int = Field(42, description="Seed of K-Means and the evaluation split.")
    model_keep: int = Field(
        5,
        ge=1,
        description="Model versions kept besides the current one (the newest); when a model is "
        "promoted, older versions' files and `models` documents are deleted. The current "
        "version is never deleted.",
    )

    # --- streaming --------------------------------------------------------------------
    stream_trigger_s: float = Field(1.0, gt=0, description="Structured Streaming trigger interval.")
    stream_watermark: str = Field("10 minutes", description="Event-time watermark of plays.")
    session_gap: str = Field("30 minutes", description="Inactivity that closes a session.")
    trending_window: str = Field("10 minutes", description="Trending window length.")
    trending_slide: str = Field("1 minute", description="Trending window slide.")
    checkpoint_dir: Path | None = Field(
        None, description="Streaming checkpoints; default <data_dir>/checkpoints."
    )
    stream_min_batches_to_retain: int = Field(
        100,
        ge=1,
        description="spark.sql.streaming.minBatchesToRetain: micro-batches whose offsets, commits "
        "and state files a streaming checkpoint keeps; older ones are deleted (Spark's default, "
        "100, is a few minutes at a 1 s trigger).",
    )
    stream_starting_offsets: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a streaming query with a new checkpoint starts reading its topic.",
    )
    stream_max_offsets_per_trigger: int = Field(
        50_000, ge=1, description="Most Kafka records one micro-batch reads (bounds batch size)."
    )
    profile_trigger_s: float = Field(
        30.0,
        gt=0,
        description="Trigger interval of the listener-profile query: one write per active listener "
        "per interval, so longer means fewer database writes and staler profiles.",
    )
    profile_max_offsets_per_trigger: int = Field(
        500_000, ge=1, description="Most Kafka records one micro-batch of the profile query reads."
    )
    stream_max_future_s: float = Field(
        300.0,
        gt=0,
        description="Plays whose event time is further ahead of the clock than this are "
        "dead-lettered (they would push the watermark past every real event).",
    )
    trending_top_n: int = Field(20, ge=1, le=100, description="Top tracks kept per trending window.")

    # --- recommender ------------------------------------------------------------------
    reco_k: int = Field(10, ge=1, le=100, description="Tracks per recommendation list.")
    reco_last_n: int = Field(20, ge=1, description="Recent tracks kept (and never recommended).")
    reco_half_life_s: float = Field(1800.0, gt=0, description="Half-life of a listener's cluster affinity.")
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

    # --- gateway ----------------------------------------------------------------------
    gateway_host: str = Field("127.0.0.1", description="Gateway bind address.")
    gateway_port: int = Field(8000, description="Gateway port.")
    gateways: int = Field(
        1,
        ge=1,
        le=8,
        description="Gateway processes the demo runs, on gateway_port, gateway_port + 1, … "
        "(default 2 in the cluster profile).",
    )
    token_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC secret signing listener tokens, the same on every gateway: at least "
        f"{MIN_TOKEN_SECRET_CHARS} random characters (`{NEW_SECRET_COMMAND}`). A gateway refuses to "
        "start without one unless demo sign-in is on and it listens on loopback. Unset, processes "
        f"use <data_dir>/{TOKEN_SECRET_FILE} if it exists (`cadenza demo` creates it, mode 0600).",
    )
    token_ttl_s: int = Field(7 * 24 * 3600, description="Default token lifetime.")
    demo_signin: bool = Field(
        False,
        description="Serve the demo sign-in page, where anyone signs in as any listener: only on a "
        "loopback gateway_host (the gateway refuses to start otherwise). `cadenza demo` turns it "
        "on when its gateways listen on loopback.",
    )
    ws_queue_size: int = Field(
        64, ge=1, description="Messages queued per websocket before it is dropped as slow."
    )
    gateway_heartbeat_s: float = Field(
        20.0, gt=0, description="Seconds between websocket pings; a socket silent for 3 of them is closed."
    )
    consumer_stall_s: float = Field(
        120.0,
        ge=5,
        description="A gateway whose Kafka feed has had no answered fetch for this long (no broker "
        "reachable, or the feed task died) answers 503 on /healthz and exits, so its supervisor "
        "restarts it. One broker lost from a cluster is not a stall.",
    )
    gateway_replay_s: float = Field(
        900.0,
        ge=0,
        description="On start, the gateway reads back this many seconds of recommendations to know "
        "every listener's latest list.",
    )
    gateway_latest_kept: int = Field(
        100_000, ge=1, description="Listeners whose latest list one gateway keeps in memory."
    )
    fma_dir: Path | None = Field(
        None, description="FMA root holding fma_metadata/ and audio (the gateway serves audio from it)."
    )

    # --- gateway limits against hostile or broken clients (issue 21) ----------------------
    ws_send_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest one websocket send may take; a browser that stops reading is then "
        "dropped (close 4408) and taken out of the hub.",
    )
    ws_max_per_listener: int = Field(
        5,
        ge=1,
        description="Websockets one listener may have open on one gateway; more are refused (close 4429).",
    )
    ws_max_connections: int = Field(
        20_000,
        ge=1,
        description="Websockets one gateway process serves; more are refused (close 1013, try again later).",
    )
    plays_rate_per_s: float = Field(
        10.0, gt=0, description="Plays per second a listener may report, sustained; more get HTTP 429."
    )
    plays_burst: int = Field(
        40, ge=1, description="Plays a listener may report at once before plays_rate_per_s applies."
    )
    gateway_query_token: bool = Field(
        True,
        description="Also accept a token in ?token= (older clients; the player sends it in a header, "
        "cookie or websocket subprotocol). Turn off once no client needs it.",
    )

    @field_validator("stream_watermark", "session_gap", "trending_window", "trending_slide")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_s(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: object) -> object:
        """The cluster profile changes defaults only: anything set explicitly wins."""
        if not isinstance(data, dict) or data.get("stack_profile") != "cluster":
            return data
        port = data.get("spark_master_port", 7077)
        defaults = {
            "kafka_replication_factor": 3,
            "spark_master": f"spark://127.0.0.1:{port}",
            "faust_workers": 2,
            "gateways": 2,
        }
        return {**defaults, **data}

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        window, slide = duration_s(self.trending_window), duration_s(self.trending_slide)
        if window % slide:
            raise ValueError(
                f"trending_window ({self.trending_window}) must be a whole number of "
                f"trending_slide ({self.trending_slide})"
            )
        return self

    # --- derived ----------------------------------------------------------------------
    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def checkpoints_path(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @property
    def clustered(self) -> bool:
        return self.stack_profile == "cluster"

    def broker_ports(self) -> list[tuple[int, int]]:
        """(listener, controller) port of each local broker: one, or ``kafka_brokers`` in a cluster."""
        count = self.kafka_brokers if self.clustered else 1
        return [(self.kafka_port + 100 * i, self.kafka_controller_port + 100 * i) for i in range(count)]

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect."""
        return self.kafka_bootstrap or ",".join(f"127.0.0.1:{port}" for port, _ in self.broker_ports())

    @property
    def mongo_uri(self) -> str:
        """Where pymongo connects."""
        return self.mongodb_uri or f"mongodb://127.0.0.1:{self.ferretdb_port}/"

    @property
    def audio_root(self) -> Path:
        """Where stored ``audio_path``s are relative to: the FMA root, else the demo's sample."""
        return self.fma_dir or self.data_dir / "sample-fma"

    @property
    def logs_path(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_path(self) -> Path:
        return self.data_dir / "run"

    @property
    def token_secret_path(self) -> Path:
        """The demo's generated token secret (``cadenza demo`` writes it, mode 0600)."""
        return self.data_dir / TOKEN_SECRET_FILE

    @property
    def log_max_bytes(self) -> int:
        return self.log_max_mb * 1024 * 1024

    @property
    def recommender_group(self) -> str:
        """The recommender workers' Faust app id: their consumer group and table prefix."""
        return f"{self.topic_prefix}recommender"

    @property
    def recommender_changelog(self) -> str:
        """The changelog topic of the recommender's table (Faust's ``<app>-<table>-changelog``)."""
        return f"{self.recommender_group}-{RECOMMENDER_TABLE}-changelog"

    def topic(self, spec: TopicSpec | str) -> str:
        """Deployed name of a registry topic (``plays`` -> ``cadenza.plays``)."""
        name = spec if isinstance(spec, str) else spec.name
        return f"{self.topic_prefix}{name}"


def child_env(settings: Settings, **extra: object) -> dict[str, str]:
    """Environment for a child Cadenza process that talks to the same stack as ``settings``:
    this process's environment without its ``CADENZA_*`` variables, then the stack's
    addresses, topic prefix, database and data dir, then ``extra`` (``faust_port=6067``
    becomes ``CADENZA_FAUST_PORT=6067``)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    values: dict[str, object] = {
        "kafka_bootstrap": settings.bootstrap_servers,
        "mongodb_uri": settings.mongo_uri,
        "mongodb_db": settings.mongodb_db,
        "topic_prefix": settings.topic_prefix,
        "data_dir": settings.data_dir,
        **extra,
    }
    env.update({f"CADENZA_{name.upper()}": str(value) for name, value in values.items()})
    return env


# --- secure defaults ------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True if ``host`` is a loopback address or ``localhost`` (only this machine can connect);
    False for the wildcard addresses (``0.0.0.0``, ``::``, ``""``) and any other name."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_secret_problem(secret: str) -> str | None:
    """What is wrong with ``secret`` as a token signing key (empty, public, short), or None."""
    if not secret:
        return "is not set"
    if secret in PUBLIC_TOKEN_SECRETS:
        return "is a published example value"
    if len(secret) < MIN_TOKEN_SECRET_CHARS:
        return f"has {len(secret)} characters, fewer than {MIN_TOKEN_SECRET_CHARS}"
    return None


def gateway_refusal(secret: str, host: str, demo_signin: bool) -> str | None:
    """Why a gateway with this token secret, bind address and demo sign-in must not start
    (a one-line message saying what to set), or None when it may.

    Demo sign-in lets anyone sign in as any listener, so it is served on loopback only.
    A gateway needs a strong secret (:func:`token_secret_problem`) unless it is a demo
    gateway on loopback, where only this machine can reach it.
    """
    if demo_signin and not is_loopback(host):
        return (
            f"demo sign-in (CADENZA_DEMO_SIGNIN=true) lets anyone sign in as any listener, so it is "
            f"served on loopback only, and this gateway would listen on {host!r}: set "
            "CADENZA_DEMO_SIGNIN=false (listeners then need tokens from `cadenza token create`), "
            "or CADENZA_GATEWAY_HOST=127.0.0.1"
        )
    problem = token_secret_problem(secret)
    if problem is not None and not demo_signin:
        return (
            f"CADENZA_TOKEN_SECRET {problem}, so anyone could forge listener tokens: set it to at "
            f"least {MIN_TOKEN_SECRET_CHARS} random characters, the same on every gateway, e.g. "
            f"the output of {NEW_SECRET_COMMAND}"
        )
    return None


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable and writable by its owner only (mode 0600), atomically:
    a temporary file created 0600 (never readable by others, whatever the umask or the old
    file's mode), then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover temporary file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def read_token_secret(path: Path) -> str | None:
    """The secret in ``path`` (``cadenza demo``'s generated one), None if there is no such file;
    a :class:`ConfigError` if other users may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise ConfigError(f"{path} holds the token secret but other users may read it: run chmod 600 {path}")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"cannot read the token secret in {path} ({err}); delete it to make a new one"
        ) from None


def ensure_token_secret(path: Path) -> str:
    """The secret in ``path``, created first (random, mode 0600) if there is none."""
    found = read_token_secret(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of two demos starting at once, one writes and both read its secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token_secret(path) or ""
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(secrets.token_urlsafe(32) + "\n")
    return read_token_secret(path) or ""


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI flags).

    Without a token secret (``CADENZA_TOKEN_SECRET`` unset or empty), the data dir's
    ``token-secret`` file is used if there is one, so ``cadenza token create`` and
    ``cadenza simulate`` sign tokens the demo's gateways accept.
    An invalid value raises a one-line :class:`ConfigError` naming the variable.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        if not settings.token_secret.get_secret_value():
            secret = read_token_secret(settings.token_secret_path)
            if secret is not None:
                settings = Settings(**{**overrides, "token_secret": secret})  # type: ignore[arg-type]
        return settings
    except ValidationError as err:
        problems = []
        for e in err.errors()[:3]:
            if not e["loc"]:  # a rule across several settings: the message names them
                problems.append(e["msg"].removeprefix("Value error, "))
                continue
            name = "CADENZA_" + "_".join(str(p) for p in e["loc"]).upper()
            problems.append(f"{name}={e.get('input')!r}: {e['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems) + " (see `cadenza config`)") from None
