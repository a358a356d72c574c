"""Settings of the ETL: which audio of each track is analysed."""

from __future__ import annotations

from pydantic import Field

from infra.settings.component import Component


class EtlSettings(Component):
    """Etl settings: see each field's description."""

    etl_excerpt_s: float = Field(
        30.0,
        ge=0,
        description="Seconds of each track the ETL analyses, taken from the middle the way FMA cut "
        "its 30 s clips (start = duration // 2 - 15 for 30 s); a track not longer is analysed "
        "whole. 0 analyses whole tracks (in blocks, bounded memory). `cadenza etl run --excerpt` "
        "overrides it for one run.",
    )
