"""Settings of the gateways: bind address, tokens, websockets, and limits against hostile or
broken clients."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from infra.settings.component import Component
from infra.settings.token_secret import MIN_TOKEN_SECRET_CHARS, NEW_SECRET_COMMAND, TOKEN_SECRET_FILE


class GatewaySettings(Component):
    """Gateway settings: see each field's description."""

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
    gateway_trending_interval_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds between trending updates to each websocket: the windows that changed "
        "are sent as one frame per socket per interval, never one per Kafka message.",
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
    gateway_producer_linger_ms: int = Field(
        5,
        ge=0,
        le=1000,
        description="Milliseconds the gateway's Kafka producer waits to batch plays into one "
        "request: under load many listeners' plays share a request (less CPU per play for the "
        "gateway and the broker); an idle gateway adds at most this much to a play's answer.",
    )
    fma_dir: Path | None = Field(
        None, description="FMA root holding fma_metadata/ and audio (the gateway serves audio from it)."
    )
    gateway_catalogue_memory: bool = Field(
        True,
        description="Serve catalogue search, similar tracks, genres and track details from an "
        "in-memory index of `tracks`, loaded in the background at start (MongoDB answers until "
        "it is ready) and kept current from cadenza.tracks.new and cadenza.tracks.assigned. "
        "False: every such request reads MongoDB.",
    )
    gateway_catalogue_reload_s: float = Field(
        3600.0,
        ge=0,
        description="Seconds between full reloads of the in-memory catalogue from MongoDB, in the "
        "background, to pick up writes that bypass the track topics (e.g. `cadenza etl "
        "import-features`); it also reloads when the current model changes. 0: only then.",
    )

    # limits against hostile or broken clients
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
    gateway_https: bool = Field(
        False,
        description="The gateway is reached over HTTPS (directly or behind a TLS proxy): its sign-in "
        "cookie is then marked Secure, so browsers never send it over plain HTTP.",
    )
    gateway_allowed_origins: list[str] = Field(
        [],
        description="Origins (scheme://host[:port], a JSON list) allowed besides the gateway's own "
        "Host for requests and websockets authenticated by the cookie, e.g. the public address "
        "when a proxy rewrites Host. Other cross-site uses of the cookie get 403.",
    )
    gateway_query_token: bool = Field(
        True,
        description="Also accept a token in ?token= (older clients; the player sends it in a header, "
        "cookie or websocket subprotocol). Turn off once no client needs it.",
    )
