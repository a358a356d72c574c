"""Names of the streaming jobs, their queries and the topic each query reads.

Used by the jobs themselves (query names, checkpoint directories under
``<checkpoints>/<query>``) and by ``cadenza stream status`` (lag per query).
"""

from __future__ import annotations

from typing import Final

from schemas.topics import PLAYS, TRACKS_NEW, TopicSpec

ASSIGN: Final = "tracks-assign"
HISTORY: Final = "plays-history"
SESSIONS: Final = "plays-sessions"
PROFILES: Final = "plays-profiles"
TRENDS: Final = "plays-trending"

#: job -> its queries, in start order
JOBS: Final[dict[str, tuple[str, ...]]] = {
    "assign": (ASSIGN,),
    "plays": (HISTORY, SESSIONS, PROFILES, TRENDS),
}
#: query -> the topic it consumes
SOURCES: Final[dict[str, TopicSpec]] = {
    ASSIGN: TRACKS_NEW,
    HISTORY: PLAYS,
    SESSIONS: PLAYS,
    PROFILES: PLAYS,
    TRENDS: PLAYS,
}
