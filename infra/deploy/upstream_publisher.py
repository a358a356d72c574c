"""Example upstream service: publish plays and new tracks to Cadenza through Kafka.

This file stands alone: it imports nothing from Cadenza, only ``kafka-python`` and
``jsonschema``, as another team's service would. It validates every message against
the JSON Schemas Cadenza exports (``cadenza schemas export DIR``) before sending, uses
the key each topic expects (``x-kafka.key`` in the schema), and produces with
``acks=all`` and idempotence, so a retried send never duplicates a message, and an
``event_id`` of its own so a play re-sent by the application is still counted once.

    cadenza schemas export ./schemas
    python infra/deploy/upstream_publisher.py --schemas ./schemas play alice 2 play
    python infra/deploy/upstream_publisher.py --schemas ./schemas track new_track.json

``--bootstrap`` (default ``127.0.0.1:9092``) and ``--topic-prefix`` (default
``cadenza.``) must match the deployment. A message the schema refuses is not sent:
the script prints why and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from kafka import KafkaProducer


class Invalid(ValueError):  # noqa: N818 - the example's one error
    """A message the topic's schema refuses."""


def load_schema(directory: Path, topic: str) -> dict[str, Any]:
    path = directory / f"{topic}.schema.json"
    if not path.is_file():
        raise SystemExit(f"no schema {path}: run `cadenza schemas export {directory}` first")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def validate(schema: dict[str, Any], message: dict[str, Any]) -> None:
    """Raise :class:`Invalid` listing every violation of ``schema`` by ``message``."""
    checker = Draft202012Validator(schema, format_checker=FormatChecker())
    errors = sorted(checker.iter_errors(message), key=str)
    if errors:
        raise Invalid(
            "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(message)'}: {e.message}" for e in errors)
        )


def play(user_id: str, track_id: int, kind: str, position_s: float = 0.0) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user_id,
        "track_id": track_id,
        "kind": kind,
        "position_s": position_s,
        "ts": datetime.now(UTC).isoformat(),
    }


class Publisher:
    """Validates and sends messages to Cadenza's topics."""

    def __init__(self, bootstrap: str, schemas: Path, prefix: str = "cadenza.") -> None:
        self.schemas, self.prefix = schemas, prefix
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            key_serializer=lambda k: str(k).encode("utf-8"),
            value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"),
        )

    def send(self, topic: str, message: dict[str, Any]) -> None:
        """Validate ``message`` against ``<prefix><topic>``'s schema and send it, keyed as the
        schema says; blocks until the broker has it."""
        schema = load_schema(self.schemas, self.prefix + topic)
        validate(schema, message)
        key = message[schema["x-kafka"]["key"]]
        self.producer.send(schema["x-kafka"]["topic"], key=key, value=message).get(timeout=30)

    def close(self) -> None:
        self.producer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish plays and new tracks to Cadenza (example).")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--schemas", type=Path, required=True, help="directory of `cadenza schemas export`")
    parser.add_argument("--topic-prefix", default="cadenza.")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("play", help="one PlayEvent")
    p.add_argument("user_id")
    p.add_argument("track_id", type=int)
    p.add_argument("kind", choices=["play", "skip", "complete", "like"])
    p.add_argument("--position", type=float, default=0.0)
    t = sub.add_parser("track", help="one TrackEvent from a JSON file (metadata + 518 features)")
    t.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    publisher = Publisher(args.bootstrap, args.schemas, args.topic_prefix)
    try:
        if args.what == "play":
            message = play(args.user_id, args.track_id, args.kind, args.position)
            publisher.send("plays", message)
        else:
            message = json.loads(args.file.read_text(encoding="utf-8"))
            publisher.send("tracks.new", message)
    except Invalid as err:
        print(f"refused by the schema, not sent: {err}", file=sys.stderr)
        return 2
    finally:
        publisher.close()
    print(json.dumps({"sent": args.what, "message_id": message.get("event_id", message.get("track_id"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
