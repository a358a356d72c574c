"""Closed-loop listeners for ``cadenza simulate``: each picks its next track from what it was pushed.

Source: the catalogue (:class:`simulator.plays.Catalogue`), a seed, the choice model
(:class:`simulator.choice.ChoiceModel`) and, at each listener's turn, the "Up next" list
the gateway last pushed that listener (``latest(listener)``: track ids, newest list; the
runner fills it from :class:`simulator.sockets.Sockets`). Destination: an endless,
time-ordered stream of :class:`simulator.plays.Scheduled` events, made lazily so a
listener's choice sees the recommendations that arrived since its previous event; each
``play`` carries its ``source`` (``up_next`` or ``browse``), and so do the ``skip``,
``like`` and ``complete`` that follow it.

Timing: turns come as one Poisson process of the total rate, each given to a listener drawn
uniformly; a listener's turn sends the next event of its current track (``play``, then
``skip`` or [``like``] ``complete``) or, when that track is done, chooses the next one
(:func:`simulator.choice.step`). So time is compressed as in the open-loop model: the
gateway stamps each event when it arrives, and a listener's tracks are ``listeners /
rate`` seconds of wall clock per event apart, not the track's length. :func:`compression`
says by how much, for the report; the quality bench (``python -m bench.quality``) runs the
same choice model in event time instead.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from simulator import choice
from simulator.plays import Catalogue, Scheduled, Track


@dataclass
class Choices:
    """What the closed-loop listeners chose: tracks chosen by source (some may never be sent:
    the run can end first), how many choices had a list in hand, and event time spent."""

    started: Counter[str] = field(default_factory=Counter)
    offered: int = 0  # choices made with a non-empty list in hand
    event_seconds: float = 0.0  # event time the model's listeners spent (tracks and gaps)

    @property
    def acceptance(self) -> float | None:
        """Tracks chosen from "Up next" over all tracks chosen (None before any)."""
        return acceptance(self.started)

    def to_dict(self, accepted: Counter[str] | None = None) -> dict[str, object]:
        """The report's ``choices``: with ``accepted`` (the gateway's accepted plays by source),
        ``started`` and ``acceptance`` are of those, what the gateway counts too."""
        started = self.started if accepted is None else accepted
        rate = acceptance(started)
        return {
            "started": dict(started),
            "with_a_list": self.offered,
            "acceptance": None if rate is None else round(rate, 4),
        }


def acceptance(started: Counter[str]) -> float | None:
    """Tracks started from "Up next" over all tracks started (None before any)."""
    total = sum(started.values())
    return started[choice.UP_NEXT] / total if total else None


def compression(choices: Choices, wall_s: float) -> float | None:
    """How many seconds of the model's event time one second of the run stood for."""
    return choices.event_seconds / wall_s if wall_s > 0 and choices.event_seconds > 0 else None


def closed_loop(
    catalogue: Catalogue,
    listeners: int,
    rate: float,
    *,
    seed: int,
    latest: Callable[[int], Sequence[int]],
    model: choice.ChoiceModel | None = None,
    choices: Choices | None = None,
) -> Iterator[Scheduled]:
    """Endless, time-ordered events of ``listeners`` choosing listeners at ``rate`` events/s."""
    if listeners < 1:
        raise ValueError("at least one listener")
    if not rate > 0:
        raise ValueError("the rate must be a positive number of events per second")
    model = model or choice.ChoiceModel()
    tally = choices if choices is not None else Choices()
    rng = random.Random(f"{seed}:closed-loop")
    by_id: dict[int, Track] = {t.track_id: t for g in catalogue.genres for t in g.tracks}
    people = [choice.new_chooser(catalogue, rng) for _ in range(listeners)]
    pending: list[deque[Scheduled]] = [deque() for _ in range(listeners)]
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        who = rng.randrange(listeners)
        if not pending[who]:
            offered = [by_id[t] for t in latest(who) if t in by_id]
            tally.offered += bool(offered)
            started = people[who].now
            play = choice.step(people[who], offered, catalogue, model, rng)
            tally.started[play.source] += 1
            tally.event_seconds += people[who].now - started
            for heard in play.events:
                pending[who].append(
                    Scheduled(
                        0.0,
                        who,
                        0,
                        play.track.track_id,
                        play.track.genre,
                        play.home,
                        heard.kind,
                        heard.position_s,
                        play.source,
                    )
                )
        yield dataclasses.replace(pending[who].popleft(), at_s=now)
