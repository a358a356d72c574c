"""Byte ranges and conditional requests for audio responses (RFC 9110 sections 13 and 14), without IO.

Sources: the raw values of a request's ``Range``, ``If-Match``, ``If-None-Match``,
``If-Modified-Since``, ``If-Unmodified-Since`` and ``If-Range`` header fields, and the
served file's size and modification time (from one ``stat`` by :mod:`gateway.audio`).
Destinations: returned to :mod:`gateway.audio`, which turns them into a status line
and headers: the validators (:func:`etag_for`, :func:`http_date`), a
:class:`Decision` on the preconditions (proceed, 304 or 412, and whether a Range may
be honoured) and the one inclusive byte range to serve (:func:`parse_range`), or
:class:`~gateway.errors.RangeNotSatisfiableError` for a 416.

Only single ranges are served: a Range with several ranges is ignored (a full 200),
which RFC 9110 section 14.2 allows. Everything here is total on arbitrary header text:
malformed input is ignored as the RFC prescribes, never an unexpected exception.
"""

from __future__ import annotations

import calendar
import enum
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

from gateway.errors import RangeNotSatisfiableError

MAX_RANGE_HEADER: Final = 1024
"""Longest Range value looked at; a longer one is treated as malformed (served in full)."""

MAX_POSITION_DIGITS: Final = 18
"""Most digits in one byte position (10**18 bytes is an exabyte); more is malformed."""

MAX_CONDITION_HEADER: Final = 8192
"""Longest conditional header value looked at; a longer one is treated as malformed."""

_OWS: Final = " \t"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_INT_RANGE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-([0-9]+)")
# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')

_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_MONTH = "(" + "|".join(_MONTHS) + ")"
_IMF_FIXDATE = re.compile(
    "(?:" + "|".join(_DAYS) + r"), ([0-9]{2}) " + _MONTH + r" ([0-9]{4}) " + _TIME + " GMT"
)
_RFC850_DATE = re.compile(
    "(?:" + "|".join(_LONG_DAYS) + r"), ([0-9]{2})-" + _MONTH + r"-([0-9]{2}) " + _TIME + " GMT"
)
_ASCTIME_DATE = re.compile(
    "(?:" + "|".join(_DAYS) + ") " + _MONTH + r" ([0-9]{2}| [0-9]) " + _TIME + r" ([0-9]{4})"
)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` of a ``size``-byte file that ``header`` asks for.

    ``None`` means "ignore the Range, serve the whole file with 200": no header, a
    unit other than ``bytes``, a malformed value, or more than one range. ``last`` is
    clamped to ``size - 1``; a suffix longer than the file selects all of it.

    Raises :class:`RangeNotSatisfiableError` for a valid single range that selects no
    byte: a first position at or past the end (so any int-range of an empty file) or a
    zero-length suffix. A non-zero suffix of an empty file is satisfiable in RFC 9110's
    sense but has no bytes to send, so it gives ``None`` (an empty 200), not a 416.
    """
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    unit, sep, range_set = header.strip(_OWS).partition("=")
    if not sep or _TOKEN.fullmatch(unit) is None or unit.lower() != "bytes":
        return None
    # range-set = 1#range-spec: OWS around the commas, empty elements are ignored.
    specs = [element.strip(_OWS) for element in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if len(specs) != 1:
        return None
    spec = specs[0]
    if (match := _INT_RANGE.fullmatch(spec)) is not None:
        first_text, last_text = match.groups()
        if len(first_text) > MAX_POSITION_DIGITS or len(last_text) > MAX_POSITION_DIGITS:
            return None
        first = int(first_text)
        last = int(last_text) if last_text else None
        if last is not None and last < first:
            return None
        if first >= size:
            raise RangeNotSatisfiableError(size)
        return first, size - 1 if last is None else min(last, size - 1)
    if (match := _SUFFIX_RANGE.fullmatch(spec)) is not None:
        (length_text,) = match.groups()
        if len(length_text) > MAX_POSITION_DIGITS:
            return None
        length = int(length_text)
        if length == 0:
            raise RangeNotSatisfiableError(size)
        if size == 0:
            return None
        return max(size - length, 0), size - 1
    return None


def etag_for(size: int, mtime_ns: int) -> str:
    """The strong ETag (with its quotes) of a file of ``size`` bytes last modified at ``mtime_ns``."""
    return f'"{size:x}-{mtime_ns:x}"'


def http_date(ts: float) -> str:
    """``ts`` (seconds since the epoch) as an IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(math.floor(ts), usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of its three forms, or ``None`` if invalid.

    RFC 9110 section 5.6.7: IMF-fixdate, the obsolete RFC 850 form (a two-digit year
    more than 50 years in the future means the previous century) and asctime. The
    weekday is checked for form, not against the date.
    """
    if len(value) > 64:
        return None
    text = value.strip(_OWS)
    if (match := _IMF_FIXDATE.fullmatch(text)) is not None:
        day, month, year, hour, minute, second = match.groups()
        full_year = int(year)
    elif (match := _RFC850_DATE.fullmatch(text)) is not None:
        day, month, year, hour, minute, second = match.groups()
        full_year = _century(int(year))
    elif (match := _ASCTIME_DATE.fullmatch(text)) is not None:
        month, day, hour, minute, second, year = match.groups()
        full_year = int(year)
    else:
        return None
    month_number = _MONTHS.index(month) + 1
    day_number = int(day)
    if full_year < 1 or not 1 <= day_number <= calendar.monthrange(full_year, month_number)[1]:
        return None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return None
    return calendar.timegm((full_year, month_number, day_number, int(hour), int(minute), int(second)))


def _century(two_digits: int) -> int:
    """The most recent year ending in ``two_digits`` that is not more than 50 years ahead."""
    this_year = time.gmtime().tm_year
    year = this_year - this_year % 100 + two_digits
    return year - 100 if year > this_year + 50 else year


class Outcome(enum.Enum):
    """What the preconditions of a request say to do."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not modified"  # 304
    PRECONDITION_FAILED = "precondition failed"  # 412


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of :func:`evaluate_conditions`.

    ``honour_range`` is true only when the outcome is to proceed, the method is GET,
    a Range is present and no If-Range (or a matching one) stands in its way: only
    then should the Range be parsed; otherwise the full representation is served.
    """

    outcome: Outcome
    honour_range: bool = False


def evaluate_conditions(
    method: str, headers: Mapping[str, str], *, etag: str, last_modified: float
) -> Decision:
    """Evaluate a request's preconditions in the order of RFC 9110 section 13.2.2.

    ``headers`` maps field names (any case) to field values; a field sent on several
    lines should be joined with ``", "`` first. ``etag`` is the current strong ETag
    (from :func:`etag_for`), ``last_modified`` the modification time in seconds, of
    which only whole seconds count, as in the Last-Modified header.

    1. If-Match (strong comparison, ``*`` matches) false: 412.
    2. Otherwise If-Unmodified-Since (a valid date) before the modification: 412.
    3. If-None-Match (weak comparison, ``*`` matches) true: 304 for GET/HEAD, else 412.
    4. Otherwise, for GET/HEAD, If-Modified-Since (a valid date) not before the modification: 304.
    5. For a GET with a Range, If-Range decides whether the Range is honoured: it must
       be the current ETag (strong comparison) or exactly the Last-Modified date.
    """
    fields = {name.lower(): value for name, value in headers.items()}
    modified = math.floor(last_modified)
    safe = method in ("GET", "HEAD")

    if_match = fields.get("if-match")
    if if_match is not None:
        if not _matches(if_match, etag, weak=False):
            return Decision(Outcome.PRECONDITION_FAILED)
    elif _before(_date_field(fields.get("if-unmodified-since")), modified):
        return Decision(Outcome.PRECONDITION_FAILED)

    if_none_match = fields.get("if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, etag, weak=True):
            return Decision(Outcome.NOT_MODIFIED if safe else Outcome.PRECONDITION_FAILED)
    elif safe and _not_before(_date_field(fields.get("if-modified-since")), modified):
        return Decision(Outcome.NOT_MODIFIED)

    if method != "GET" or "range" not in fields:
        return Decision(Outcome.PROCEED)
    if_range = fields.get("if-range")
    honour = if_range is None or _if_range_holds(if_range, etag, modified)
    return Decision(Outcome.PROCEED, honour_range=honour)


def _before(date: int | None, modified: int) -> bool:
    """Whether a (valid) date lies before the modification: If-Unmodified-Since fails."""
    return date is not None and date < modified


def _not_before(date: int | None, modified: int) -> bool:
    """Whether a (valid) date is at or after the modification: If-Modified-Since fails."""
    return date is not None and date >= modified


def _date_field(value: str | None) -> int | None:
    """A single valid HTTP-date of a date-valued precondition, else ``None`` (ignored)."""
    return None if value is None else parse_http_date(value)


def _if_range_holds(value: str, etag: str, modified: int) -> bool:
    """Whether an If-Range validator matches the current representation (RFC 9110 section 13.1.5)."""
    if len(value) > MAX_CONDITION_HEADER:
        return False
    text = value.strip(_OWS)
    if text.startswith(('"', 'W/"')):
        return _ENTITY_TAG.fullmatch(text) is not None and _strong_equal(text, etag)
    return parse_http_date(text) == modified


def _matches(value: str, etag: str, *, weak: bool) -> bool:
    """Whether an If-Match / If-None-Match value names the current representation.

    ``*`` always does (the file exists). A malformed list matches nothing.
    """
    if len(value) > MAX_CONDITION_HEADER:
        return False
    if value.strip(_OWS) == "*":
        return True
    tags = _entity_tags(value)
    if tags is None:
        return False
    if weak:
        return any(_opaque(tag) == _opaque(etag) for tag in tags)
    return any(_strong_equal(tag, etag) for tag in tags)


def _entity_tags(value: str) -> list[str] | None:
    """The entity-tags of a ``#entity-tag`` list, or ``None`` if it is malformed.

    Commas may occur inside an entity-tag, so the list is scanned, not split.
    """
    tags: list[str] = []
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] in " \t,":
            pos += 1
            continue
        match = _ENTITY_TAG.match(value, pos)
        if match is None:
            return None
        tags.append(match.group(0))
        pos = match.end()
        while pos < end and value[pos] in _OWS:
            pos += 1
        if pos < end and value[pos] != ",":
            return None
    return tags


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def _strong_equal(tag: str, etag: str) -> bool:
    """Strong comparison: both tags strong and character-for-character equal."""
    return not tag.startswith("W/") and not etag.startswith("W/") and tag == etag
