"""The FMA reader parses FMA's published layout: multi-row headers, list literals, gaps."""

# ruff: noqa: E501  (the fixture is FMA's CSV verbatim: one line per row)

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl import fma
from etl.errors import MetadataError
from schemas.documents import TrackDoc
from schemas.features import FEATURE_COLUMNS, FEATURE_TRIPLES, N_FEATURES

# FMA's tracks.csv: two header rows (52 columns) plus the track_id row, HTML and commas
# in quoted fields, list literals, blank cells. Track 26 has a broken genre list.
TRACKS_CSV = """\
,album,album,album,album,album,album,album,album,album,album,album,album,album,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,artist,set,set,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track,track
,comments,date_created,date_released,engineer,favorites,id,information,listens,producer,tags,title,tracks,type,active_year_begin,active_year_end,associated_labels,bio,comments,date_created,favorites,id,latitude,location,longitude,members,name,related_projects,tags,website,wikipedia_page,split,subset,bit_rate,comments,composer,date_created,date_recorded,duration,favorites,genre_top,genres,genres_all,information,interest,language_code,license,listens,lyricist,number,publisher,tags,title
track_id,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,
2,0,2008-11-26 01:44:45,2009-01-05 00:00:00,,4,1,<p></p>,6073,,[],AWOL - A Way Of Life,7,Album,2006-01-01 00:00:00,,,"<p>A Way Of Life, A Collective of Hip-Hop from the Pacific Northwest</p>",0,2008-11-26 01:42:32,9,1,40.058324,New Jersey,-74.405661,"Sajje Morocco,Brownbum,ZawidaGod,Custodian of Records",AWOL,"The list of past projects is 2 long, check the web site.",['awol'],http://www.AzillionRecords.blogspot.com,,training,small,256000,0,,2008-11-26 01:48:12,2008-11-26 00:00:00,168,2,Hip-Hop,[21],[21],,4656,en,Attribution-NonCommercial-ShareAlike 3.0 International,1293,,3,,[],Food
3,0,2008-11-26 01:44:45,2009-01-05 00:00:00,,4,1,<p></p>,6073,,[],AWOL - A Way Of Life,7,Album,2006-01-01 00:00:00,,,"<p>A Way Of Life, A Collective of Hip-Hop from the Pacific Northwest</p>",0,2008-11-26 01:42:32,9,1,40.058324,New Jersey,-74.405661,"Sajje Morocco,Brownbum,ZawidaGod,Custodian of Records",AWOL,,['awol'],http://www.AzillionRecords.blogspot.com,,training,medium,256000,0,,2008-11-26 01:48:14,2008-11-26 00:00:00,237,1,Hip-Hop,[21],[21],,1470,en,Attribution-NonCommercial-ShareAlike 3.0 International,514,,4,,[],Electric Ave
5,0,2008-11-26 01:44:45,2009-01-05 00:00:00,,4,1,<p></p>,6073,,[],AWOL - A Way Of Life,7,Album,2006-01-01 00:00:00,,,,0,2008-11-26 01:42:32,9,1,,,,,AWOL,,['awol'],,,validation,large,256000,0,,2008-11-26 01:48:20,,206,6,Hip-Hop,"[21, 811]","[21, 811]",,1933,en,Attribution-NonCommercial-ShareAlike 3.0 International,1151,,6,,['hip-hop'],This World
10,0,2008-11-26 01:45:08,2008-02-06 00:00:00,,4,6,"<p>Kurt Vile, from Philly, <b>live</b> &amp; loud.</p>",47632,,[],Constant Hitmaker,2,Album,,,"Mexican Summer, Richie Records",,0,2008-11-26 01:42:55,74,6,39.952335,"Philadelphia, PA",-75.163789,,Kurt Vile,,['philly'],http://kurtvile.com,Kurt Vile,test,small,192000,0,Kurt Vile,2008-11-25 17:49:06,2008-11-26 00:00:00,161,178,Pop,[10],[10],,54881,en,Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International,50135,,1,,[],Freeway
20,0,2008-11-26 01:45:05,2009-01-06 00:00:00,,2,4,,1304,,[],,13,Album,,,,,0,2008-11-26 01:42:52,0,4,,,,,Nicky Cook,,[],,,training,large,256000,0,,2008-11-26 01:48:56,,,0,,"[76, 103]","[17, 10, 76, 103]",,978,en,Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International,361,,3,,[],
26,0,2008-11-26 01:45:08,,,0,4,,1304,,[],Niris,13,Album,,,,,0,2008-11-26 01:42:52,0,4,,,,,Nicky Cook,,[],,,training,large,256000,0,,2008-11-26 01:48:56,,207,0,Rock,"[12, oops","[12]",,978,,Attribution 3.0 International,361,,4,,[],Sunshine
30,0,2008-11-26 01:45:08,,,0,4,,1304,,[],Niris,13,Album,,,,,0,2008-11-26 01:42:52,0,4,,,,,Nicky Cook,,[],,,test,,256000,0,,2008-11-26 01:48:56,,-3,0,,,,,978,,,361,,5,,[],Untitled
"""

GENRES_CSV = """\
genre_id,#tracks,parent,title,top_level
1,8693,38,Avant-Garde,38
10,13845,0,Pop,10
12,32923,0,Rock,12
17,12706,0,Folk,17
21,8389,0,Hip-Hop,21
38,38154,0,Experimental,38
76,1204,10,Experimental Pop,10
103,3551,17,Singer-Songwriter,17
811,1528,21,Hip-Hop Beats,21
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    (meta / "tracks.csv").write_text(TRACKS_CSV)
    (meta / "genres.csv").write_text(GENRES_CSV)
    for rel in ("fma_small/000/000002.mp3", "fma_medium/000/000010.mp3", "fma_large/000/000005.mp3"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"\xff\xfb")
    (tmp_path / "fma_full/000").mkdir(parents=True)
    (tmp_path / "fma_full/000/000020.ogg").write_bytes(b"OggS")
    return tmp_path


def test_fixture_is_fma_shaped(root: Path) -> None:
    frame = fma.read_tracks(root)
    assert frame.shape == (7, 52)
    assert frame.index.name == "track_id"
    assert list(frame.columns.get_level_values(0).unique()) == ["album", "artist", "set", "track"]


def test_catalogue_fields_and_missing_values(root: Path) -> None:
    cat = fma.load_catalogue(root)
    by_id = {t.id: t for t in cat.tracks}
    assert sorted(by_id) == [2, 3, 5, 10, 20, 26, 30]
    food = by_id[2]
    assert (food.title, food.artist, food.album) == ("Food", "AWOL", "AWOL - A Way Of Life")
    assert (food.genres, food.genre_top, food.duration_s) == ((21,), "Hip-Hop", 168.0)
    assert (food.subset, food.split, food.audio_path) == ("small", "training", "fma_small/000/000002.mp3")
    assert by_id[5].genres == (21, 811)
    assert by_id[10].artist == "Kurt Vile" and by_id[10].subset == "small"
    untitled = by_id[20]  # blank title, album, genre_top, duration
    assert (untitled.title, untitled.album, untitled.genre_top, untitled.duration_s) == ("", "", None, 0.0)
    assert untitled.genres == (76, 103) and untitled.genres_all == (17, 10, 76, 103)
    last = by_id[30]  # blank genres and subset, negative duration
    assert (last.genres, last.genres_all, last.subset, last.duration_s) == ((), (), None, 0.0)
    assert [tid for tid, _ in cat.problems] == [26] and "oops" in cat.problems[0][1]
    assert by_id[26].genres == () and by_id[26].title == "Sunshine"


def test_document_fields_validate_as_track_doc(root: Path) -> None:
    for track in fma.load_catalogue(root).tracks:
        doc = TrackDoc.model_validate(track.document_fields())
        assert doc.id == track.id and doc.genres == list(track.genres) and doc.subset == track.subset
        assert doc.audio_path == track.audio_path


def test_audio_is_located_in_the_smallest_folder_holding_it(root: Path) -> None:
    cat = fma.load_catalogue(root)
    paths = {t.id: t.audio_path for t in cat.tracks}
    assert paths[2] == "fma_small/000/000002.mp3"
    assert paths[10] == "fma_medium/000/000010.mp3"  # small track, only the medium folder has it
    assert paths[5] == "fma_large/000/000005.mp3"
    assert paths[20] == "fma_full/000/000020.ogg"
    assert sorted(cat.missing_audio) == [3, 26, 30]
    only_small = fma.load_catalogue(root, audio_dirs=("fma_small",))
    assert sorted(only_small.missing_audio) == [3, 5, 10, 20, 26, 30]


@pytest.mark.parametrize(
    ("subset", "ids"),
    [
        ("small", [2, 10]),
        ("medium", [2, 3, 10]),
        ("large", [2, 3, 5, 10, 20, 26]),
        ("full", [2, 3, 5, 10, 20, 26, 30]),
    ],
)
def test_subsets_are_cumulative(root: Path, subset: str, ids: list[int]) -> None:
    assert sorted(t.id for t in fma.load_catalogue(root, subset=subset).tracks) == ids


def test_genres(root: Path) -> None:
    genres = fma.read_genres(root)
    assert genres[21] == fma.Genre(21, "Hip-Hop", 0, 21, 8389)
    assert genres[811].parent == 21 and genres[1].top_level == 38


def test_metadata_folder_itself_is_accepted(root: Path) -> None:
    assert len(fma.read_tracks(root / "fma_metadata")) == 7


def test_missing_or_wrong_files_are_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="CADENZA_FMA_DIR"):
        fma.load_catalogue(tmp_path / "nowhere")
    with pytest.raises(MetadataError, match=r"tracks\.csv"):
        fma.load_catalogue(tmp_path)
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    (meta / "tracks.csv").write_text("track_id,title\n2,Food\n")
    with pytest.raises(MetadataError, match="lacks column"):
        fma.load_catalogue(tmp_path)
    flat = pd.read_csv(io.StringIO("track_id,title\n2,Food\n"), index_col=0)
    with pytest.raises(MetadataError, match="two-level"):
        fma.tracks_from_frame(flat)


def test_audio_relpath() -> None:
    assert fma.audio_relpath(2) == "fma_large/000/000002.mp3"
    assert fma.audio_relpath(2, "fma_small") == "fma_small/000/000002.mp3"
    assert fma.audio_relpath(123456, "fma_full") == "fma_full/123/123456.mp3"
    assert fma.audio_relpath(99999, "fma_medium", ".ogg") == "fma_medium/099/099999.ogg"
    with pytest.raises(ValueError, match="6 digits"):
        fma.audio_relpath(1_000_000)


def test_in_subset_table() -> None:
    assert fma.in_subset("small", "small") and fma.in_subset("small", "large")
    assert not fma.in_subset("medium", "small") and not fma.in_subset("large", "medium")
    assert fma.in_subset(None, "full") and not fma.in_subset(None, "large")
    with pytest.raises(ValueError, match="unknown subset"):
        fma.in_subset("small", "tiny")


def test_parse_list_is_literal_only() -> None:
    assert fma.parse_list("[21, 45]") == [21, 45]
    assert fma.parse_list("['awol', 'hip hop']") == ["awol", "hip hop"]
    assert fma.parse_list("") == [] and fma.parse_list(float("nan")) == [] and fma.parse_list(None) == []
    for bad in ("__import__('os').system('true')", "[1, 2", "{1: 2}", "21"):
        with pytest.raises(ValueError, match="not a list literal"):
            fma.parse_list(bad)
    with pytest.raises(ValueError, match="non-integers"):
        fma.parse_ids("['rock']")


@given(st.lists(st.integers(0, 10**6), max_size=20))
def test_parse_ids_round_trips_python_list_text(ids: list[int]) -> None:
    assert fma.parse_ids(str(ids)) == tuple(ids)


def _features_frame(rng: np.random.Generator, ids: list[int]) -> pd.DataFrame:
    """A features.csv as FMA's features.py writes it (MultiIndex names, 10-digit floats)."""
    columns = pd.MultiIndex.from_tuples(FEATURE_TRIPLES, names=["feature", "statistics", "number"])
    frame = pd.DataFrame(rng.normal(size=(len(ids), N_FEATURES)), index=pd.Index(ids, name="track_id"))
    frame.columns = columns
    return frame


def test_features_csv_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = _features_frame(rng, [2, 3, 5])
    frame.iloc[1] = np.nan  # a track FMA failed to analyse
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    frame.to_csv(meta / "features.csv", float_format="%.10e")
    lines = (meta / "features.csv").read_text().splitlines()
    assert lines[0].startswith("feature,chroma_cens,chroma_cens,")
    assert lines[1].startswith("statistics,kurtosis,") and lines[2].startswith("number,01,02,")
    assert lines[3].strip(",") == "track_id"
    table = fma.read_features(tmp_path)
    assert table.matrix.shape == (3, N_FEATURES) and table.matrix.dtype == np.float32
    assert table.track_ids.tolist() == [2, 3, 5]
    np.testing.assert_allclose(table.matrix[[0, 2]], frame.to_numpy()[[0, 2]], rtol=1e-6)
    assert table.finite().track_ids.tolist() == [2, 5]
    mfcc = FEATURE_COLUMNS.index("mfcc_mean_01")
    assert table.matrix[0, mfcc] == np.float32(frame.loc[2, ("mfcc", "mean", "01")])


def test_features_columns_are_matched_by_name_not_position() -> None:
    frame = _features_frame(np.random.default_rng(1), [7])
    shuffled = frame[frame.columns[::-1]]
    np.testing.assert_array_equal(fma.feature_matrix(shuffled).matrix, fma.feature_matrix(frame).matrix)


def test_features_missing_column_or_bad_value_is_metadata_error() -> None:
    frame = _features_frame(np.random.default_rng(2), [7, 8])
    with pytest.raises(MetadataError, match="lacks 1 of 518"):
        fma.feature_matrix(frame.drop(columns=[("zcr", "std", "01")]))
    bad = frame.astype(object)
    bad.iloc[0, 0] = "n/a"
    with pytest.raises(MetadataError, match="non-numeric"):
        fma.feature_matrix(bad)
    with pytest.raises(MetadataError, match="three-level"):
        fma.feature_matrix(pd.DataFrame({"a": [1.0]}))
