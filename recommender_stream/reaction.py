"""How the recommender's lists move, for its online metrics (pure: no IO, clock passed in).

Source: every list :class:`recommender_stream.processor.Processor` produces (listener,
track ids, reasons). Destination: :class:`recommender_stream.metrics.Metrics`
(``cadenza_recommender_list_turnover``, ``cadenza_recommender_coverage_ratio``,
``cadenza_recommender_items_total{reason}``).

* **turnover**: the share of a listener's new list that was not in their previous one
  (0: the same tracks, 1: all new); a list that follows no earlier one has none.
* **coverage**: the share of the catalogue recommended to anyone in the last
  :data:`COVERAGE_WINDOW_S` seconds (of the process's clock).
* **reason**: the kind of a reason shown to the listener ("sounds like <title>" ->
  ``sounds_like``), one of :data:`REASON_KINDS`.

Both memories are bounded: the last list of the :data:`LISTS_KEPT` listeners heard from
most recently, and one timestamp per track recommended within the window (at most the
catalogue).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

#: Reasons shown with recommendations, by the start of their text (ranking's wording).
REASON_KINDS: Final = {
    "sounds like": "sounds_like",
    "trending in your mix": "trending_in_mix",
    "more from your mix": "more_from_mix",
    "trending now": "trending_now",
    "popular on Cadenza": "popular",
    "something new": "something_new",
}
#: The kind of a reason the ranking does not produce (a newer ranking's, say).
OTHER_REASON: Final = "other"
COVERAGE_WINDOW_S: Final = 3600.0
LISTS_KEPT: Final = 100_000


def reason_kind(reason: str) -> str:
    """The label of ``reason``: ``sounds_like`` for "sounds like <title>", and so on."""
    for start, kind in REASON_KINDS.items():
        if reason.startswith(start):
            return kind
    return OTHER_REASON


@dataclass
class ListTracker:
    """Each listener's last list and when each track was last recommended."""

    window_s: float = COVERAGE_WINDOW_S
    lists_kept: int = LISTS_KEPT
    _last: OrderedDict[str, frozenset[int]] = field(default_factory=OrderedDict)
    _recommended: OrderedDict[int, float] = field(default_factory=OrderedDict)

    def observe(self, user_id: str, tracks: Sequence[int], now: float) -> float | None:
        """Record ``user_id``'s new list at ``now``; its turnover against their previous list
        (None: no previous list remembered, or an empty list)."""
        new = frozenset(tracks)
        previous = self._last.pop(user_id, None)
        self._last[user_id] = new
        while len(self._last) > self.lists_kept:
            self._last.popitem(last=False)
        for track in tracks:
            self._recommended[track] = now
            self._recommended.move_to_end(track)
        self._forget(now)
        if previous is None or not new:
            return None
        return len(new - previous) / len(new)

    def recommended(self, now: float) -> int:
        """Distinct tracks recommended within the window before ``now``."""
        self._forget(now)
        return len(self._recommended)

    def coverage(self, catalogue_size: int, now: float) -> float:
        """:meth:`recommended` over ``catalogue_size`` (0 for an empty catalogue)."""
        return min(1.0, self.recommended(now) / catalogue_size) if catalogue_size > 0 else 0.0

    def _forget(self, now: float) -> None:
        oldest = now - self.window_s
        while self._recommended:
            track, at = next(iter(self._recommended.items()))
            if at >= oldest:
                break
            del self._recommended[track]
