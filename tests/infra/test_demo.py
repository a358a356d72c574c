"""`cadenza demo --catalogue demo|full`: the option, and the batch stages each runs (no stack)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from infra import demo
from infra.demo import FULL_TRACKS, SAMPLE_TRACKS, SYNTHETIC_ID_OFFSET, Catalogue, stages
from infra.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def argvs(settings: Settings) -> list[tuple[str, ...]]:
    return [s.argv for s in stages(settings)]


def test_the_default_demo_is_the_small_sample_with_audio(settings: Settings) -> None:
    sample = str((settings.data_dir / "sample-fma").resolve())
    assert argvs(settings) == [
        ("sample-data", sample, "--tracks", str(SAMPLE_TRACKS)),
        ("etl", "run", "--fma-dir", sample),
        ("model", "train", "--k-range", "6:12:2"),
    ]
    assert [s.spark for s in stages(settings)] == [False, True, True]


def test_the_full_catalogue_adds_the_rest_of_the_fma_without_audio_and_trains_k16(settings: Settings) -> None:
    full = stages(settings, Catalogue.full)
    assert [s.argv for s in full[:2]] == argvs(settings)[:2]  # the sample with audio, as in the demo
    assert full[2].argv == (
        "etl",
        "import-features",
        "--synthetic",
        str(FULL_TRACKS - SAMPLE_TRACKS),
        "--id-offset",
        str(SYNTHETIC_ID_OFFSET),
    )
    assert not full[2].spark
    assert full[3].argv == ("model", "train", "--k", "16", "--promote") and full[3].spark
    assert len(full) == 4


def test_the_full_catalogue_from_an_fma_root_imports_its_features_csv(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "fma"
    full = stages(settings, Catalogue.full, root)
    assert full[2].argv == ("etl", "import-features", "--fma-dir", str(root.resolve()))


def test_synthetic_ids_never_meet_the_sample_tracks() -> None:
    """A clash would leave the full catalogue short (import-features keeps a stored id)."""
    from etl.import_features import synthetic_rows

    largest_sample_id = 1 + 11 * (SAMPLE_TRACKS + 3)  # etl.sample_data: gaps of 1-11, 3 broken files
    assert int(synthetic_rows(10, id_offset=SYNTHETIC_ID_OFFSET).ids.min()) > largest_sample_id


def cli(*args: str) -> Result:
    from infra.cli import _load_plugins, app

    _load_plugins()
    return CliRunner().invoke(app, ["demo", *args])


def test_the_option_is_parsed_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Catalogue, Path | None]] = []
    monkeypatch.setattr(
        demo, "run_demo", lambda _settings, catalogue, fma_dir: calls.append((catalogue, fma_dir))
    )
    monkeypatch.setenv("CADENZA_DATA_DIR", str(tmp_path / "data"))

    assert cli().exit_code == 0
    assert cli("--catalogue", "full").exit_code == 0
    (tmp_path / "fma" / "fma_metadata").mkdir(parents=True)
    assert cli("--catalogue", "full", "--fma-dir", str(tmp_path / "fma")).exit_code == 0
    assert calls == [(Catalogue.demo, None), (Catalogue.full, None), (Catalogue.full, tmp_path / "fma")]

    refused = {
        "bogus": cli("--catalogue", "bogus"),
        "fma without full": cli("--fma-dir", str(tmp_path / "fma")),
        "no metadata": cli("--catalogue", "full", "--fma-dir", str(tmp_path)),
    }
    for name, result in refused.items():
        assert result.exit_code == 2, (name, result.output)
    assert "--catalogue full" in refused["fma without full"].output
    assert "fma_metadata" in refused["no metadata"].output
    assert len(calls) == 3
