"""``cadenza simulate`` (entry point ``cadenza.cli: simulator``): simulated listeners playing.

The command's options become a :class:`simulator.run.SimulationConfig`; the run
(:func:`simulator.run.run`) plays through the gateway at ``--url`` (default
``http://CADENZA_GATEWAY_HOST:CADENZA_GATEWAY_PORT``; plays as websocket frames, or
``POST /api/plays`` with ``--plays-via http`` or ``--no-sockets``) or straight to Kafka, with tokens
signed with ``CADENZA_TOKEN_SECRET``; its summary is printed and ``--out`` writes the
whole report as JSON.
"""

from __future__ import annotations

import typer

from infra.settings import get_settings


def simulate(
    *,
    listeners: int = typer.Option(20, "--listeners", min=1, help="Simulated listeners."),
    rate: float = typer.Option(5.0, "--rate", min=0.001, help="Events per second, all listeners together."),
    duration: float = typer.Option(60.0, "--duration", min=0.1, help="Seconds of sending."),
    via: str = typer.Option(
        "gateway",
        "--via",
        metavar="gateway|kafka",
        help="gateway: through the gateway with each listener's token (see --plays-via); kafka: "
        "straight to the plays topic (key = listener), as an upstream service would.",
    ),
    plays_via: str | None = typer.Option(
        None,
        "--plays-via",
        metavar="ws|http",
        help="With --via gateway: ws sends each play as a play frame on the listener's own open "
        "/ws and counts its play_ack/play_error (the default); http sends POST /api/plays (the "
        "default with --no-sockets, which has no socket to send on).",
    ),
    sockets: bool = typer.Option(
        True,
        "--sockets/--no-sockets",
        help="Open each listener's /ws and time the recommendations (and, by default, send the plays on it).",
    ),
    choose: bool = typer.Option(
        True,
        "--choose/--no-choose",
        help="Closed loop (needs the sockets): each listener picks its next track from the Up next "
        "list it was last pushed, or browses its home genre, by the choice model of "
        "simulator/choice.py, and says so in each play's source; --no-choose draws every event in "
        "advance (the open-loop model). The report gives the acceptance.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Same seed, same listeners (sim-s<SEED>-<i>) and events; default random."
    ),
    drain: float = typer.Option(
        10.0, "--drain", min=0, help="Seconds to wait for outstanding recommendations after sending."
    ),
    out: str | None = typer.Option(None, "--out", help="Write the report as JSON to this file."),
    url: str | None = typer.Option(
        None, "--url", help="Gateway address (default http://CADENZA_GATEWAY_HOST:CADENZA_GATEWAY_PORT)."
    ),
) -> None:
    """Simulated listeners playing music, to load and watch the whole system.

    Listeners (ids sim-<tag>-<i>) have a home genre that drifts now and then;
    each picks its next track from the "Up next" its socket was pushed (likelier
    the more of it matches its taste) or browses its genre with Zipf
    popularity (--no-choose: tracks drawn in advance, with pauses between
    sessions), then skips, completes or likes it by taste; their events go through the gateway
    (or to Kafka) at --rate events/s for --duration s: by default as play
    frames on each listener's own websocket, with --plays-via http (or
    --no-sockets) as POST /api/plays. Unless --no-sockets, each listener's
    websocket is open first and every recommendation's latency (arrival -
    send of its play) is measured. Needs a catalogue (`cadenza demo` or
    `cadenza etl run`) and, for recommendations, a running recommender.
    Prints a summary; --out writes the full report."""
    from pathlib import Path

    from rich.console import Console

    from simulator.report import summary
    from simulator.run import SimulationConfig, run, write_report

    if via not in ("gateway", "kafka"):
        raise typer.BadParameter("is 'gateway' or 'kafka'", param_hint="--via")
    if plays_via not in (None, "ws", "http"):
        raise typer.BadParameter("is 'ws' or 'http'", param_hint="--plays-via")
    if plays_via is not None and via == "kafka":
        raise typer.BadParameter(
            "only with --via gateway (--via kafka writes to Kafka itself)", param_hint="--plays-via"
        )
    if plays_via == "ws" and not sockets:
        raise typer.BadParameter(
            "ws sends plays on the listeners' sockets: drop --no-sockets, or use --plays-via http",
            param_hint="--plays-via",
        )
    settings = get_settings()
    config = SimulationConfig(
        listeners=listeners,
        rate=rate,
        duration_s=duration,
        via="kafka" if via == "kafka" else "gateway",
        sockets=sockets,
        plays_via="http" if plays_via == "http" or not sockets else "ws",
        seed=seed,
        drain_s=drain,
        choose=choose,
        url=url,
    )
    console = Console()
    report = run(settings, config, console)
    console.print(summary(report))
    if out is not None:
        write_report(report, Path(out))
        console.print(f"report written to {out}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
