"""The faust-streaming and aiokafka releases whose private internals Cadenza relies on.

Cadenza reaches past the public API of these two packages in a few places, each written
against (and tested with) exactly the versions below:

* ``recommender_stream/recovery.py`` (``SafeTableManager``/``SafeRecovery``): a copy of
  faust's ``Recovery.on_recovery_completed`` that adds a partition to the live set from
  ``Consumer._get_active_partitions()``, reads ``Consumer._committed_offset``, and calls
  ``app._fetcher.maybe_start()``; it also relies on aiokafka's ``fetched_records`` reading
  an empty partition set as "every partition".
* ``recommender_stream/transport.py`` (``WorkerApp``): subclasses faust's aiokafka driver
  (``AIOKafkaConsumerThread._create_worker_consumer``, ``Consumer._new_consumer_thread``,
  ``Transport.Consumer``) and sets aiokafka's private ``AIOKafkaConsumer._fetch_max_wait_ms``.
* ``consumer._client.force_metadata_update()`` on an ``AIOKafkaConsumer``:
  ``recommender_stream/app.py`` (``_partitions``) and ``gateway/feed.py``.

A newer release may rename or change any of these without notice, so the worker refuses to
start on another version (:func:`require_pinned`, called by ``recommender_stream.worker``)
and ``tests/infra/test_lock.py`` fails. To upgrade: re-read the internals above against the
new release, run the tests, then change :data:`PINNED` together with ``requirements.lock``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Final

#: Distribution name -> the exact version the code above was written and tested against.
PINNED: Final[Mapping[str, str]] = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
}


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(
    installed: Callable[[str], str | None] = installed_version,
    pinned: Mapping[str, str] = PINNED,
) -> list[str]:
    """One line per pinned package whose installed version differs (empty when all match)."""
    problems = []
    for name, want in pinned.items():
        have = installed(name)
        if have != want:
            problems.append(f"{name} {have or 'not installed'} is installed, Cadenza needs {name}=={want}")
    return problems


def refusal(problems: list[str]) -> str:
    """The message a worker exits with when :func:`mismatches` found ``problems``."""
    return (
        "recommender_stream: refusing to start: "
        + "; ".join(problems)
        + ". Its recovery and transport rely on internals of exactly these releases "
        "(recommender_stream/pinned.py). Install the lock: `bash infra/bootstrap.sh`."
    )


def require_pinned(installed: Callable[[str], str | None] = installed_version) -> None:
    """Exit with :func:`refusal`'s message unless the pinned versions are installed."""
    problems = mismatches(installed)
    if problems:
        raise SystemExit(refusal(problems))
