"""JSON Schema export of every Kafka message, for upstream services in other languages.

Source: the pydantic models of :mod:`schemas.events` via the topic registry.
Destination: one ``<topic>.schema.json`` file per topic in a directory
(``cadenza schemas export DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.topics import TOPICS


def schema_for(topic_name: str, prefix: str = "cadenza.") -> dict[str, Any]:
    spec = next(t for t in TOPICS if t.name == topic_name)
    schema = spec.value.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{spec.full_name(prefix)}.schema.json"
    schema.setdefault("description", spec.description)
    schema["x-kafka"] = {"topic": spec.full_name(prefix), "key": spec.key}
    return schema


def export(directory: Path, prefix: str = "cadenza.") -> list[Path]:
    """Write one schema file per topic; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in TOPICS:
        path = directory / f"{spec.full_name(prefix)}.schema.json"
        path.write_text(json.dumps(schema_for(spec.name, prefix), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
