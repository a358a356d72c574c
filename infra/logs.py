"""Structured logging for Cadenza processes.

``setup_logging`` configures the root logger once per process from settings:
one JSON object per line (``CADENZA_LOG_FORMAT=json``) for machines, or readable
console lines for people. Extra fields passed with ``extra={...}`` are kept.

Secrets never reach a log line: :class:`RedactTokens` replaces the value of every
``token``/``access_token`` query parameter (its name matched case-insensitively, also
percent-encoded) in a record's message and arguments with ``[redacted]``. It sits on the
root handler and on uvicorn's ``uvicorn.access`` and ``uvicorn.error`` loggers, which
print the raw request target of each request and websocket handshake (uvicorn's
``dictConfig`` replaces handlers, not logger filters, so it survives ``uvicorn.run``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

#: Query parameters whose values are secrets (compared lower-case, after percent-decoding).
SECRET_PARAMS: Final = frozenset({"token", "access_token"})
#: The loggers that write request targets: uvicorn's access log and its websocket lines.
URL_LOGGERS: Final = ("uvicorn.access", "uvicorn.error")
_PARAM = re.compile(r"(?<=[?&;])([^=&;\s]+)=([^&;\s]*)")

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``[redacted]``."""
    if "=" not in text:
        return text

    def hide(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}=[redacted]" if unquote_plus(name).strip().lower() in SECRET_PARAMS else match.group(0)

    return _PARAM.sub(hide, text)


class RedactTokens(logging.Filter):
    """Redacts secret query parameters from a record's message and string arguments (keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def redact_tokens(*targets: logging.Logger | logging.Handler) -> None:
    """Put :class:`RedactTokens` on ``targets`` (default: :data:`URL_LOGGERS`), once each."""
    for target in targets or tuple(logging.getLogger(name) for name in URL_LOGGERS):
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


def setup_logging(level: str = "INFO", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    redact_tokens(handler)
    redact_tokens()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "aiokafka", "pymongo", "py4j", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
