"""Words of the catalogue and of queries (case and accents aside), and rows by word prefix."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.word_index import MAX_QUERY_WORDS, MAX_WORD, WordIndex, fold, query_words, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Beyoncé", "beyonce"),
        ("BEYONCÉ", "beyonce"),
        ("Straße", "strasse"),
        ("Ⅻ Années", "xii annees"),
        ("ﬁre", "fire"),
        ("İstanbul", "istanbul"),
        ("Ångström", "angstrom"),
        ("Ægir Łódź Øst", "aegir lodz ost"),
        ("plain ascii", "plain ascii"),
    ],
)
def test_fold_drops_case_and_accents(text: str, expected: str) -> None:
    assert fold(text) == expected


def test_words_are_runs_of_letters_and_digits_in_any_script() -> None:
    assert words("AC/DC - Back_in Black (Live '79)") == ["ac", "dc", "back", "in", "black", "live", "79"]
    assert words("Sigur Rós: Ágætis byrjun") == ["sigur", "ros", "agaetis", "byrjun"]
    assert words("Мумий Тролль") == ["мумии", "тролль"]
    assert words("坂本龍一 Ryuichi") == ["坂本龍一", "ryuichi"]
    assert words(".* $where {}") == ["where"]
    assert words("x" * 100) == ["x" * MAX_WORD]


def test_a_query_has_distinct_words_and_at_most_a_few() -> None:
    assert query_words("Love love LOVE me") == ["love", "me"]
    many = " ".join(f"w{i}" for i in range(50))
    assert query_words(many) == [f"w{i}" for i in range(MAX_QUERY_WORDS)]
    assert query_words("😀" * 50 + " ok") == ["ok"]
    assert query_words("") == [] and query_words("  .*?  ") == []


def index_of(texts: dict[int, str]) -> WordIndex:
    index = WordIndex()
    for row, text in texts.items():
        index.add(row, words(text))
    return index


def test_rows_hold_a_word_starting_with_the_prefix_short_or_long() -> None:
    index = index_of({0: "Love Song", 1: "Lovely Day", 2: "Glove", 3: "Lo-fi", 4: "love"})
    assert index.rows("l").tolist() == [0, 1, 3, 4]
    assert index.rows("lo").tolist() == [0, 1, 3, 4]
    assert index.rows("lov").tolist() == [0, 1, 4]
    assert index.rows("love").tolist() == [0, 1, 4]
    assert index.rows("lovel").tolist() == [1]
    assert index.rows("lovely").tolist() == [1]
    assert index.rows("lovelyz").tolist() == []
    assert index.rows("ove").tolist() == []  # a prefix, not a substring
    assert index.rows("zz").tolist() == []
    assert index.rows("fi").tolist() == [3]
    assert index.rows("love").dtype == np.int32


def test_rows_follow_additions_and_removals_in_any_order() -> None:
    index = index_of({5: "alpha beta", 2: "alphabet", 9: "beta"})
    assert index.rows("alph").tolist() == [2, 5]
    assert index.rows("be").tolist() == [5, 9]
    index.remove(5, words("alpha beta"))
    assert index.rows("alph").tolist() == [2]
    assert index.rows("alpha").tolist() == [2]
    assert index.rows("be").tolist() == [9]
    index.add(3, words("Alpha"))
    index.add(3, words("Alpha"))  # twice: still once
    assert index.rows("alpha").tolist() == [2, 3]
    index.remove(2, words("alphabet"))
    index.remove(3, words("alpha"))
    assert index.rows("alp").tolist() == [] and index.rows("alpha").tolist() == []
    assert len(index) == 1  # "beta"


def test_a_result_is_a_copy_the_index_can_still_grow() -> None:
    index = index_of({0: "one"})
    held = index.rows("one")
    index.add(1, ["one"])  # an exported buffer would make this raise BufferError
    assert held.tolist() == [0] and index.rows("one").tolist() == [0, 1]
