"""Words of track titles, artists and albums, and which rows hold a word that starts with a prefix.

Source: the text of the catalogue's tracks (rows added and removed by
:class:`gateway.track_index.TrackIndex`) and the ``q`` of a search. Destination: the
ascending row numbers a search intersects. Pure: no IO.

**Words** (:func:`words`): the text decomposed (NFKD), its combining marks dropped and
casefolded, a few Latin letters spelled out (æ, œ, ø, ł, đ, ð, þ, ı), so case and accents
do not matter ("Beyoncé" and "BEYONCE" are "beyonce", "Straße" is "strasse", "Ægir" is
"aegir"); then every run of letters and digits, in any script, is a word
(spaces, punctuation and ``_`` separate words; a run of CJK characters is one word). Only
the first :data:`MAX_WORD` characters of a word count, in the catalogue and in queries.

**Postings**: each word of the catalogue has the ascending rows that hold it; each prefix
of up to :data:`SHORT` characters has the union of its words' rows, kept as words come
and go, so the broadest prefixes cost one look-up; a longer prefix is the union of the
few words it begins, found by bisecting the sorted vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Final

import numpy as np
from numpy.typing import NDArray

#: Characters of a word that count (longer words are cut, in the catalogue and in queries).
MAX_WORD: Final = 32
#: Prefixes up to this length have their rows precomputed.
SHORT: Final = 4
#: Characters of a query read (as the MongoDB path's ``MAX_TEXT``), and words of it used.
MAX_QUERY: Final = 200
MAX_QUERY_WORDS: Final = 8
#: Above every character a word can hold (U+10FFFF is not a letter or digit).
_AFTER: Final = "\U0010ffff"
_WORD: Final = re.compile(r"[^\W_]+")
#: Latin letters that Unicode does not decompose into a base letter and a mark.
_LETTERS: Final = str.maketrans(
    {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)

Rows = NDArray[np.int32]


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """``text`` without case or accents (ASCII text: only lower-cased)."""
    if text.isascii():
        return text.lower()
    # Marks first (compatibility forms such as "Ⅻ" decompose to capitals), then case, then
    # again: casefolding can make decomposable characters.
    return _strip_marks(_strip_marks(text).casefold()).translate(_LETTERS)


def words(text: str) -> list[str]:
    """The words of ``text`` (see the module's docstring), in order, repeats included."""
    return [w[:MAX_WORD] for w in _WORD.findall(fold(text))]


def query_words(q: str) -> list[str]:
    """The distinct words of a query's first :data:`MAX_QUERY` characters, at most
    :data:`MAX_QUERY_WORDS` of them (the first ones): bounded work whatever is sent."""
    return list(dict.fromkeys(words(q[:MAX_QUERY])))[:MAX_QUERY_WORDS]


def empty_rows() -> Rows:
    return np.empty(0, dtype=np.int32)


def as_rows(rows: array[int] | None) -> Rows:
    """A numpy copy of a posting (never a view: a view would stop the posting from growing)."""
    return np.array(rows, dtype=np.int32) if rows else empty_rows()


def insert_row(rows: array[int], row: int) -> None:
    """``row`` into the ascending ``rows``, once."""
    if not rows or rows[-1] < row:
        rows.append(row)
        return
    i = bisect_left(rows, row)
    if rows[i] != row:
        rows.insert(i, row)


def remove_row(rows: array[int], row: int) -> None:
    i = bisect_left(rows, row)
    if i < len(rows) and rows[i] == row:
        del rows[i]


class WordIndex:
    """Rows by word and by short prefix; :meth:`rows` answers "which rows hold a word
    starting with this prefix"."""

    def __init__(self) -> None:
        self._rows: dict[str, array[int]] = {}
        self._short: dict[str, array[int]] = {}
        #: The words of ``_rows``: appended while a load adds many (``_sorted`` False), sorted
        #: once by :meth:`settle` (or the first :meth:`rows`), then each new word inserted in place.
        self._vocab: list[str] = []
        self._sorted = False

    def __len__(self) -> int:
        """Distinct words."""
        return len(self._rows)

    def add(self, row: int, words: Iterable[str]) -> None:
        distinct = set(words)
        for word in distinct:
            rows = self._rows.get(word)
            if rows is None:
                rows = self._rows[word] = array("i")
                if self._sorted:
                    insort(self._vocab, word)
                else:
                    self._vocab.append(word)
            insert_row(rows, row)
        for prefix in _prefixes(distinct):
            insert_row(self._short.setdefault(prefix, array("i")), row)

    def remove(self, row: int, words: Iterable[str]) -> None:
        distinct = set(words)
        for word in distinct:
            rows = self._rows.get(word)
            if rows is None:
                continue
            remove_row(rows, row)
            if not rows:
                del self._rows[word]
                if self._sorted:
                    del self._vocab[bisect_left(self._vocab, word)]
                # (unsorted, the word stays listed: settle() rebuilds the list from ``_rows``)
        for prefix in _prefixes(distinct):
            rows = self._short.get(prefix)
            if rows is not None:
                remove_row(rows, row)
                if not rows:
                    del self._short[prefix]

    def settle(self) -> None:
        """Sort the vocabulary if a bulk load left it unsorted (else :meth:`rows` does it)."""
        if not self._sorted:
            self._vocab = sorted(self._rows)
            self._sorted = True

    def rows(self, prefix: str) -> Rows:
        """Ascending rows holding a word that starts with ``prefix`` (a word of :func:`words`)."""
        if len(prefix) <= SHORT:
            return as_rows(self._short.get(prefix))
        self.settle()
        lo = bisect_left(self._vocab, prefix)
        hi = bisect_left(self._vocab, prefix + _AFTER, lo)
        if hi - lo == 1:
            return as_rows(self._rows[self._vocab[lo]])
        if hi == lo:
            return empty_rows()
        return np.unique(np.concatenate([as_rows(self._rows[w]) for w in self._vocab[lo:hi]]))


def _prefixes(distinct: set[str]) -> set[str]:
    return {w[:n] for w in distinct for n in range(1, min(len(w), SHORT) + 1)}
